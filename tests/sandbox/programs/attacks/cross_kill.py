"""Case 34: kill everything in reach (printing the pids and groups it could signal): kill of every pid, killpg of every group, pidfd_open
plus pidfd_send_signal, and last kill(-1). Its own process and parent (the run script) are
left out of the sweeps, so the table is printed before kill(-1) ends the run script."""

import os
import signal
import time

from probe import outcome, say, syscall

SYS_PIDFD_OPEN, SYS_PIDFD_SEND_SIGNAL = 434, 424
with open("/proc/sys/kernel/pid_max") as file:
    LIMIT = min(int(file.read()), 65536) + 1
me, parent = os.getpid(), os.getppid()
child = os.fork()
if child == 0:
    while True:
        time.sleep(60)
say("child", child)
say("init-before", outcome(os.kill, 1, 0))
say("kill-init", outcome(os.kill, 1, signal.SIGKILL))
hit = []
for pid in range(1, LIMIT):
    if pid not in (me, parent) and outcome(os.kill, pid, signal.SIGKILL) == "ok":
        hit.append(pid)
groups = []
for pgid in range(2, LIMIT):  # killpg(1) is kill(-1): tried last
    if pgid != os.getpgid(0) and outcome(os.killpg, pgid, signal.SIGKILL) == "ok":
        groups.append(pgid)
pidfds = []
for pid in range(1, 4096):
    if pid in (me, parent):
        continue
    try:
        fd = syscall(SYS_PIDFD_OPEN, pid, 0)
    except OSError:
        continue
    if outcome(syscall, SYS_PIDFD_SEND_SIGNAL, fd, signal.SIGKILL, 0, 0) == "ok":
        pidfds.append(pid)
    os.close(fd)
say("killed", ",".join(str(p) for p in hit) or "none")
say("groups", ",".join(str(g) for g in groups) or "none")
say("pidfd", ",".join(str(p) for p in pidfds) or "none")
say("init-after", outcome(os.kill, 1, 0))
say("kill-all", outcome(os.kill, -1, signal.SIGKILL))
