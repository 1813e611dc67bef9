"""Case 5: leave a file behind for the next job (Piston's file_persistance.py, extended).

Prints ``<dir>/bean exists`` for each bean found; creation results go to stderr.
"""

import os
import sys

for directory in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", os.getcwd()):
    path = os.path.join(directory, "bean")
    if os.path.exists(path):
        print(f"{path} exists")
        continue
    try:
        with open(path, "w") as file:
            file.write("beans")
        print(f"{path} created", file=sys.stderr)
    except OSError as exc:
        print(f"{path} {exc.strerror}", file=sys.stderr)
