"""Case 27: open descriptors until EMFILE (/dev/null, pipes, socketpairs), then in every
process the pids limit allows. Prints ``<kind> <errno> <descriptors open at the error>``."""

import os
import socket
import time

from probe import errname, say


def exhaust() -> list[str]:
    results = []
    baseline = len(os.listdir("/proc/self/fd")) - 1  # without the listing's own descriptor
    for kind in ("devnull", "pipe", "socketpair"):
        held: list[int] = []
        try:
            while True:
                if kind == "devnull":
                    held.append(os.open("/dev/null", os.O_RDONLY))
                elif kind == "pipe":
                    held.extend(os.pipe())
                else:
                    held.extend(s.detach() for s in socket.socketpair())
        except OSError as exc:
            results.append(f"{kind} {errname(exc)} {baseline + len(held)}")
        for fd in held:
            os.close(fd)
    return results


for line in exhaust():
    say(*line.split(" ", 1))
children = []
while True:
    try:
        pid = os.fork()
    except OSError as exc:
        say("fork", errname(exc))
        break
    if pid == 0:
        fds = []
        try:
            while True:
                fds.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        time.sleep(1)
        os._exit(0)
    children.append(pid)
say("children", len(children))
for pid in children:
    os.waitpid(pid, 0)
