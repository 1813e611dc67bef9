"""Case 22, /proc part: open the memory of its own child and of PID 1 for writing."""

import os
import time

from probe import outcome, say

child = os.fork()
if child == 0:
    time.sleep(60)
    os._exit(0)
say("mem-child", outcome(lambda: os.close(os.open(f"/proc/{child}/mem", os.O_RDWR))))
say("mem-init", outcome(lambda: os.close(os.open("/proc/1/mem", os.O_RDWR))))
os.kill(child, 9)
