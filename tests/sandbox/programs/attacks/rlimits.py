"""Case 15: raise every rlimit; then act past the configured ones.

One line per resource: ``NAME <raise hard> <soft up to hard> <prlimit self raise>
<prlimit on PID 1>``; then the follow-up actions of cases 2 and 27.
"""

import os
import resource

from probe import errname, outcome, say

INF = resource.RLIM_INFINITY
for name in ("NOFILE", "NPROC", "FSIZE", "CORE", "CPU", "STACK", "MEMLOCK", "MSGQUEUE"):
    which = getattr(resource, f"RLIMIT_{name}")
    soft, hard = resource.getrlimit(which)
    raise_hard = outcome(resource.setrlimit, which, (INF, INF))
    soft_to_hard = outcome(resource.setrlimit, which, (hard, hard))
    prlimit_self = outcome(resource.prlimit, 0, which, (INF, INF))
    prlimit_init = outcome(resource.prlimit, 1, which, (hard, hard))
    say(name, f"{raise_hard} {soft_to_hard} {prlimit_self} {prlimit_init}")
try:
    with open("big.bin", "wb") as file:
        for _ in range(4):
            file.write(b"x" * 2**20)
            file.flush()
    say("fsize-write", "ok")
except OSError as exc:
    say("fsize-write", errname(exc))
fds = []
try:
    while True:
        fds.append(os.open("/dev/null", os.O_RDONLY))
except OSError as exc:
    say("nofile", f"{errname(exc)} {len(fds) + 3}")
