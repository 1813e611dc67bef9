"""Further case: TIOCSTI injection on fds 0-2 and /dev/tty (bubblewrap CVE-2017-5226)."""

import fcntl
import os
import termios

from probe import outcome, say

for fd in (0, 1, 2):
    say(f"tiocsti-{fd}", outcome(fcntl.ioctl, fd, termios.TIOCSTI, b"x"))
say("dev-tty", outcome(os.open, "/dev/tty", os.O_RDWR))
say("sid-leader", os.getsid(0) == os.getpid() or os.getsid(0) != os.getpgid(0))
