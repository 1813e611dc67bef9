"""Case 27: open descriptors until EMFILE (/dev/null, pipes, socketpairs), then in every
process the pids limit allows. Prints ``<kind> <errno> <descriptors open>``."""

import os
import socket
import time

from probe import errname, say


def exhaust() -> list[str]:
    results = []
    held: list[object] = []
    for kind in ("devnull", "pipe", "socketpair"):
        try:
            while True:
                if kind == "devnull":
                    held.append(os.open("/dev/null", os.O_RDONLY))
                elif kind == "pipe":
                    held.append(os.pipe())
                else:
                    held.append(socket.socketpair())
        except OSError as exc:
            results.append(f"{kind} {errname(exc)} {len(os.listdir('/proc/self/fd'))}")
        for item in held:
            if isinstance(item, int):
                os.close(item)
            elif isinstance(item, tuple):
                os.close(item[0])
                os.close(item[1])
            else:
                item[0].close()
                item[1].close()
        held.clear()
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
