"""Further case: invalid UTF-8, NUL bytes and a multi-byte character split across writes and
across the 1024-byte cap."""

import os
import time

os.write(1, b"\xff\xfe|")
os.write(1, b"nul\x00byte|")
euro = "\u20ac".encode()
os.write(1, euro[:1])
time.sleep(0.05)
os.write(1, euro[1:] + b"|")
filler = 1024 - 3 - 9 - 4 - 1
os.write(1, b"a" * filler + euro)
os.write(2, b"\xc3")
