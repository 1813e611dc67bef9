"""Case 17: write to the read-only filesystem: system paths, the interpreter, the package's
``run`` script and its directory (argv[1:], the package's paths inside the sandbox).

One line per target: ``<path> create,append,truncate,chmod,rename,unlink,remount``, each the
errno name, ``ok``, or ``-`` where the operation does not apply (append and truncate to a
directory; everything but create to a path that does not exist). ``create`` makes a new file
in the target directory (or the file's directory); ``unlink`` of a directory is rmdir.
"""

import os
import subprocess
import sys

from probe import outcome

targets = ["/", "/usr", "/etc", "/etc/passwd", "/etc/ld.so.preload", "/bin", "/lib"]
targets.append(os.path.realpath(sys.executable))
targets += sys.argv[1:]


def remount(path: str) -> None:
    done = subprocess.run(
        ["mount", "-o", "remount,rw", path], capture_output=True, check=False, timeout=1
    )
    if done.returncode != 0:
        raise PermissionError(1, "mount failed")


def create(directory: str) -> None:
    path = os.path.join(directory, "pistond-was-here")
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644))


for target in targets:
    exists = os.path.lexists(target)
    is_dir = os.path.isdir(target)
    directory = target if is_dir else os.path.dirname(target)
    applies_file = exists and not is_dir
    results = [
        outcome(create, directory),
        outcome(lambda: os.close(os.open(target, os.O_WRONLY | os.O_APPEND))) if applies_file else "-",
        outcome(os.truncate, target, 0) if applies_file else "-",
        outcome(os.chmod, target, 0o777) if exists else "-",
        outcome(os.rename, target, target.rstrip("/") + ".moved") if exists else "-",
        outcome(os.rmdir if is_dir else os.unlink, target) if exists else "-",
        outcome(remount, directory),
    ]
    print(target, ",".join(results), flush=True)
