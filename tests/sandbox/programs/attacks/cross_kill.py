"""Case 34: kill everything in reach. kill(-1), kill of every pid, killpg of every group,
pidfd_open plus pidfd_send_signal; prints which pids (other than its own) it could signal."""

import os
import signal
import time

from probe import errname, outcome, say, syscall

SYS_PIDFD_OPEN, SYS_PIDFD_SEND_SIGNAL = 434, 424
LIMIT = 65536
me = os.getpid()
child = os.fork()
if child == 0:
    while True:
        time.sleep(60)
say("parent", os.getppid())
say("init-before", outcome(os.kill, 1, 0))
say("kill-init", outcome(os.kill, 1, signal.SIGKILL))
say("kill-all", outcome(os.kill, -1, signal.SIGKILL))
hit = []
for pid in range(2, LIMIT):
    if pid != me and outcome(os.kill, pid, signal.SIGKILL) != "ESRCH":
        hit.append(pid)
groups = []
for pgid in range(2, LIMIT):
    if pgid != os.getpgid(0) and outcome(os.killpg, pgid, signal.SIGKILL) != "ESRCH":
        groups.append(pgid)
pidfds = []
for pid in range(1, 4096):
    try:
        fd = syscall(SYS_PIDFD_OPEN, pid, 0)
    except OSError:
        continue
    if pid != me and outcome(syscall, SYS_PIDFD_SEND_SIGNAL, fd, signal.SIGKILL, 0, 0) == "ok":
        pidfds.append(pid)
    os.close(fd)
say("killed", ",".join(str(p) for p in hit) or "none")
say("killed-own-child", "yes" if child in hit else "no")
say("groups", ",".join(str(g) for g in groups) or "none")
say("pidfd", ",".join(str(p) for p in pidfds) or "none")
say("init-after", outcome(os.kill, 1, 0))
