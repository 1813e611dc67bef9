"""Case 12: flood stderr. argv[1]: ``stderr`` (endless 4 KiB writes after one stdout line),
``stdout-first`` or ``stderr-first`` (the named stream crosses its cap first, then the other
one floods a moment later)."""

import os
import sys
import time

mode = sys.argv[1]
if mode == "stderr":
    sys.stdout.write("hello\n")
    sys.stdout.flush()
    while True:
        sys.stderr.write("x" * 4096)
first, second = (1, 2) if mode == "stdout-first" else (2, 1)
os.write(first, b"a" * 600)
os.write(second, b"b" * 600)
os.write(first, b"a" * 600)
time.sleep(0.5)
while True:
    os.write(second, b"b" * 4096)
