"""Further case: the file-lock covert channel (isolate 2.4). argv[1]: ``hold`` (take an
exclusive flock on the interpreter for 1.5 s) or ``probe`` (try the same lock, non-blocking)."""

import fcntl
import os
import sys
import time

from probe import outcome, say

fd = os.open(os.path.realpath(sys.executable), os.O_RDONLY)
if sys.argv[1] == "hold":
    say("lock", outcome(fcntl.flock, fd, fcntl.LOCK_EX))
    time.sleep(1.5)
else:
    say("lock", outcome(fcntl.flock, fd, fcntl.LOCK_EX | fcntl.LOCK_NB))
