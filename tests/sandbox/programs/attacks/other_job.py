"""Further case: reading another job's files. argv[1]: ``hold`` (write a marker file in the
box and /tmp, hold 1.5 s) or ``hunt`` (look for it; argv[2] is the marker, argv[3] the host
path of the boxes directory)."""

import os
import sys
import time

from probe import outcome, say

if sys.argv[1] == "hold":
    marker = sys.argv[2]
    for path in ("marker.txt", "/tmp/marker.txt", "/dev/shm/marker.txt"):
        with open(path, "w") as file:
            file.write(marker)
    say("holding", "yes")
    time.sleep(1.5)
    sys.exit(0)
needle, boxes = sys.argv[2].encode(), sys.argv[3]
found = []
for top in ("/", "/box", "/tmp", "/dev/shm"):
    for root, dirs, files in os.walk(top):
        if root == "/":
            dirs[:] = [d for d in dirs if d not in ("proc", "usr", "box", "tmp", "dev")]
        for name in files:
            path = os.path.join(root, name)
            try:
                with open(path, "rb") as file:
                    if needle in file.read(1 << 20):
                        found.append(path)
            except OSError:
                pass
for slot in range(64):
    for guess in (f"{boxes}/{slot}/submission/marker.txt", f"/box/../{slot}/submission/marker.txt"):
        if outcome(os.stat, guess) == "ok":
            found.append(guess)
for pid in os.listdir("/proc"):
    if pid.isdigit() and outcome(os.stat, f"/proc/{pid}/cwd/marker.txt") == "ok":
        if os.getpid() != int(pid):
            found.append(f"/proc/{pid}/cwd")
say("found", ",".join(found) or "nothing")
