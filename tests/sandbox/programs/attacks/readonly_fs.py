"""Case 17: write to the read-only filesystem: system paths, the interpreter, the package's
``run`` script and its directory (found through the parent's command line).

One line per target: ``<path> create append truncate chmod rename unlink remount``, each the
errno name (or ``ok``); a directory target creates, renames and unlinks an entry inside.
"""

import os
import subprocess
import sys

from probe import outcome, say

targets = ["/", "/usr", "/etc/passwd", "/etc/ld.so.preload", "/bin", "/lib"]
targets.append(os.path.realpath(sys.executable))
with open(f"/proc/{os.getppid()}/cmdline", "rb") as file:
    for arg in file.read().decode().split("\0"):
        if arg.startswith("/") and os.path.isfile(arg) and arg not in targets:
            targets += [arg, os.path.dirname(arg)]


def remount(path: str) -> None:
    done = subprocess.run(
        ["mount", "-o", "remount,rw", path], capture_output=True, check=False, timeout=1
    )
    if done.returncode != 0:
        raise PermissionError(1, "mount failed")


for target in targets:
    directory = os.path.isdir(target)
    entry = os.path.join(target, "pistond-was-here") if directory else target
    results = [
        outcome(lambda: os.close(os.open(entry, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644))),
        outcome(lambda: os.close(os.open(entry, os.O_WRONLY | os.O_APPEND))),
        outcome(os.truncate, entry, 0),
        outcome(os.chmod, target, 0o777),
        outcome(os.rename, entry, entry + ".moved"),
        outcome(os.unlink, entry),
        outcome(remount, target),
    ]
    say(target, " ".join(results))
