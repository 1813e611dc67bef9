"""Case 16: resist the end. argv[1]: ``ignore`` (ignore the polite signals, sleep), ``stop``
(SIGSTOP itself) or ``setsid`` (a child in its own session ignores signals and spins)."""

import os
import signal
import sys
import time

POLITE = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


def ignore() -> None:
    for signum in POLITE:
        signal.signal(signum, signal.SIG_IGN)


mode = sys.argv[1]
if mode == "ignore":
    ignore()
    print("ignoring", flush=True)
    while True:
        time.sleep(60)
elif mode == "stop":
    print("stopping", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)
    print("resumed", flush=True)
elif mode == "setsid":
    if os.fork() == 0:
        os.setsid()
        ignore()
        while True:
            pass
    ignore()
    print("forked", flush=True)
    while True:
        time.sleep(60)
