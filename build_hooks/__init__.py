"""Steps that run while pistond is built (from setup.py); not part of the installed package."""
