"""Case 2: fill the disk. argv[1]: ``big`` (one 218 MB write, the error re-raised), ``fallocate``
(10 GiB posix_fallocate) or ``many`` (files under the size cap until the box is full)."""

import os
import sys

from probe import errname, outcome, say

mode = sys.argv[1]
if mode == "big":
    try:
        # The same 218 MB stream as Piston's fallocate.py, in 851 KB pieces: the one-string
        # form would hit the 128 MiB memory cap (ML) before any byte reached the disk.
        piece = "I love beans\n" * 2**16
        with open("beans.txt", "w") as file:
            for _ in range(2**8):
                file.write(piece)
    except OSError as exc:
        say("write", errname(exc))
        say("size", os.stat("beans.txt").st_size)
        raise
    say("write", "ok")
elif mode == "fallocate":
    fd = os.open("huge", os.O_CREAT | os.O_WRONLY, 0o644)
    say("fallocate", outcome(os.posix_fallocate, fd, 0, 10 * 2**30))
    say("size", os.fstat(fd).st_size)
elif mode == "many":
    chunk = b"x" * 900_000
    written = 0
    count = 0
    result = "ok"
    while True:
        try:
            fd = os.open(f"f{count}", os.O_CREAT | os.O_WRONLY, 0o644)
            try:
                view = memoryview(chunk)
                while view:
                    done = os.write(fd, view)
                    written += done
                    view = view[done:]
            finally:
                os.close(fd)
        except OSError as exc:
            result = errname(exc)
            break
        count += 1
    say("many", result)
    say("bytes", written)
