"""Case 9: plant links to host paths where the daemon looks after a stage; resolve them inside.

argv: the host canary path, the daemon's data dir, the RPC socket path. Links are named like
what the daemon could touch (results, carried files, cleanup walks); then each is resolved
and read from inside, printing ``<link> <realpath> <read outcome>``.
"""

import os
import sys

from probe import outcome, read_file, say

canary, data, rpc_socket = sys.argv[1:4]
targets = {
    "shadow": "/etc/shadow",
    "data": data,
    "init-root": "/proc/1/root",
    "socket": rpc_socket,
    "canary": canary,
}
box = os.path.dirname(os.getcwd())
for name, target in targets.items():
    for place in (f"{name}.link", f"a.out.{name}", f"nested/{name}", f"/tmp/{name}"):
        os.makedirs(os.path.dirname(place) or ".", exist_ok=True)
        os.symlink(target, place)
    say(name, f"{os.path.realpath(name + '.link')} {outcome(read_file, name + '.link')}")
# Replace the submitted main file and the box's own entries by links too.
os.replace(sys.argv[0], sys.argv[0] + ".orig")
os.symlink(canary, sys.argv[0])
os.symlink(canary, "stdout")
os.symlink(canary, "output")
os.symlink(data, "submission")
say("box-entries", outcome(os.symlink, canary, os.path.join(box, "result")))
say("canary-chmod", outcome(os.chmod, "canary.link", 0o777))
say("canary-write", outcome(lambda: open("canary.link", "a").write("pwned")))
