"""Case 1: fork in an endless loop, ignoring errors (Piston's fork.py)."""

import os

while True:
    try:
        os.fork()
    except OSError:
        pass
