"""Further case: set the clocks, enter a time namespace, write timens offsets."""

import ctypes
import time

from probe import errno_of, outcome, say, write_file

CLOCK_REALTIME, CLONE_NEWTIME = 0, 0x80
SYS = {"clock_settime": 227, "settimeofday": 164, "adjtimex": 159, "unshare": 272}
future = (ctypes.c_long * 2)(int(time.time()) + 86400 * 365, 0)
say("clock_settime", errno_of(SYS["clock_settime"], CLOCK_REALTIME, ctypes.addressof(future)))
say("settimeofday", errno_of(SYS["settimeofday"], ctypes.addressof(future), 0))
timex = (ctypes.c_long * 26)(0x0001)  # ADJ_OFFSET
say("adjtimex", errno_of(SYS["adjtimex"], ctypes.addressof(timex)))
say("unshare-newtime", errno_of(SYS["unshare"], CLONE_NEWTIME))
say("timens_offsets", outcome(write_file, "/proc/self/timens_offsets", b"monotonic 86400 0\n"))
