"""Steps that run while pistond is built (from setup.py, see command.py); not part of the
installed package."""
