"""Case 28: pipes grown to 1 MiB and filled unread, socketpairs with large buffers filled;
repeated in every process the pids limit allows. Prints how growth stopped."""

import fcntl
import os
import socket

from probe import errname, say

F_SETPIPE_SZ = 1031


def fill(fd: int) -> int:
    os.set_blocking(fd, False)
    total = 0
    chunk = b"x" * 65536
    try:
        while True:
            total += os.write(fd, chunk)
    except BlockingIOError:
        pass
    return total


def exhaust() -> str:
    held: list[object] = []
    stopped = "none"
    try:
        while True:
            read_end, write_end = os.pipe()
            held += [read_end, write_end]
            try:
                fcntl.fcntl(write_end, F_SETPIPE_SZ, 1 << 20)
            except OSError as exc:
                stopped = f"setpipe {errname(exc)}"
                break
            fill(write_end)
    except OSError as exc:
        stopped = f"pipe {errname(exc)}"
    try:
        for _ in range(64):
            left, right = socket.socketpair()
            held += [left, right]
            left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 24)
            fill(left.fileno())
    except OSError as exc:
        stopped += f" socketpair {errname(exc)}"
    return f"{stopped} fds={len(held)}"


say("parent", exhaust())
children = []
for _ in range(31):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        exhaust()
        os._exit(0)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
say("children", len(children))
