"""Case 29, Python part: raise RLIMIT_CORE, set dumpable, write core_pattern, abort a child,
look for core files, then abort."""

import ctypes
import os
import resource

from probe import outcome, say, write_file

PR_SET_DUMPABLE = 4
say("raise-core", outcome(resource.setrlimit, resource.RLIMIT_CORE, (2**30, 2**30)))
say("dumpable", ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 1, 0, 0, 0))
say("core_pattern", outcome(write_file, "/proc/sys/kernel/core_pattern", b"core"))
pid = os.fork()
if pid == 0:
    os.abort()
_, status = os.waitpid(pid, 0)
say("child", f"signal={os.WTERMSIG(status)} core={'yes' if os.WCOREDUMP(status) else 'no'}")
cores = [
    name
    for directory in (".", "/tmp")
    for name in os.listdir(directory)
    if name == "core" or name.startswith("core.")
]
say("core-files", ",".join(cores) or "none")
os.abort()
