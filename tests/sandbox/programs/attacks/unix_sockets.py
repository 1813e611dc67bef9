"""Case 19: Unix sockets across sandboxes. argv[1]: ``listen`` (bind three names, accept for
1.5 s, print how many connected) or ``connect`` (connect to them, the daemon's RPC socket
given as argv[2], and journald's socket)."""

import os
import socket
import sys
import time

from probe import outcome, say

NAMES = ("/tmp/probe.sock", os.path.abspath("probe.sock"), "\0pistond-probe")

if sys.argv[1] == "listen":
    servers = []
    for name in NAMES:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(name)
        server.listen(8)
        server.setblocking(False)
        servers.append(server)
    say("listening", len(servers))
    accepted = 0
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        for server in servers:
            try:
                server.accept()[0].close()
                accepted += 1
            except BlockingIOError:
                pass
        time.sleep(0.01)
    say("accepted", accepted)
else:
    def connect(name: str) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(name)

    labels = ("tmp", "box", "abstract")
    for label, name in zip(labels, NAMES):
        say(label, outcome(connect, name))
    say("rpc", outcome(connect, sys.argv[2]))
    say("journal", outcome(connect, "/run/systemd/journal/socket"))
