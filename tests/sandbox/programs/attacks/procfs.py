"""Case 18: what /proc tells. One line per probe; mountinfo as its root and mount point fields."""

import os

from probe import outcome, read_file, say, write_file

pids = sorted((int(p) for p in os.listdir("/proc") if p.isdigit()))
say("pids", ",".join(map(str, pids)))
uids: set[str] = set()
for pid in pids:
    for name in ("cmdline", "environ", "status"):
        outcome(read_file, f"/proc/{pid}/{name}")
    for name in ("cwd", "root"):
        outcome(os.readlink, f"/proc/{pid}/{name}")
    try:
        status = read_file(f"/proc/{pid}/status").decode()
    except OSError:
        continue
    uids.update(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
say("uids", ",".join(sorted(uids)))
try:
    lines = read_file("/proc/kallsyms", 4096).decode().splitlines()[:-1]
    say("kallsyms", "zero" if all(set(line.split()[0]) == {"0"} for line in lines) else "nonzero")
except OSError as exc:
    say("kallsyms", exc.strerror)
try:
    lines = read_file("/proc/modules", 4096).decode().splitlines()
    say("modules", "zero" if all(line.split()[-1] == "0x0000000000000000" for line in lines) else "nonzero")
except OSError as exc:
    say("modules", exc.strerror)
mounts = [line.split() for line in read_file("/proc/self/mountinfo").decode().splitlines()]
say("mount-roots", ",".join(sorted({fields[3] for fields in mounts})))
say("box-root", next(fields[3] for fields in mounts if fields[4] == "/box"))
say("cgroup", ",".join(sorted({line.split(":", 2)[2] for line in read_file("/proc/self/cgroup").decode().splitlines()})))
say("kcore", outcome(read_file, "/proc/kcore", 16))
say("sched_debug", outcome(read_file, "/proc/sched_debug", 16))
say("sysrq-trigger", outcome(write_file, "/proc/sysrq-trigger", b"h"))
say("core_pattern", outcome(write_file, "/proc/sys/kernel/core_pattern", b"|/bin/sh"))
