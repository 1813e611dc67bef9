"""Cases 20 and 21: System V IPC across sandboxes. argv[1]: ``hold`` (first look, then create
a shared memory segment, a message queue and a semaphore set under key 0x5049 holding a
secret, and hold them 1.5 s) or ``seek`` (look only). Looking means: get by key without
IPC_CREAT, enumerate every index with SHM_STAT / MSG_STAT / SEM_STAT, read /proc/sysvipc."""

import ctypes
import sys
import time

from probe import errno_of, say

libc = ctypes.CDLL(None, use_errno=True)
KEY = 0x5049
IPC_CREAT = 0o1000
IPC_NOWAIT = 0o4000
SHM_STAT, MSG_STAT, SEM_STAT = 13, 11, 18
SYS = {"shmget": 29, "shmat": 30, "shmctl": 31, "semget": 64, "semop": 65, "semctl": 66,
       "msgget": 68, "msgsnd": 69, "msgrcv": 70, "msgctl": 71}
SECRET = b"pistond-sysv-secret"
kinds = sys.argv[2:] or ["shm", "msg", "sem"]


def look() -> None:
    buffer = ctypes.create_string_buffer(512)
    if "shm" in kinds:
        say("shmget", errno_of(SYS["shmget"], KEY, 0, 0))
    if "msg" in kinds:
        say("msgget", errno_of(SYS["msgget"], KEY, 0, 0))
    if "sem" in kinds:
        say("semget", errno_of(SYS["semget"], KEY, 0, 0))
    found = []
    for kind, call, command in (("shm", "shmctl", SHM_STAT), ("msg", "msgctl", MSG_STAT),
                                ("sem", "semctl", SEM_STAT)):
        if kind not in kinds:
            continue
        for index in range(256):
            if errno_of(SYS[call], index, 0, command, ctypes.addressof(buffer)) == "ok":
                found.append(f"{kind}{index}")
        with open(f"/proc/sysvipc/{kind}") as file:
            found += [f"{kind}-proc" for line in file.read().splitlines()[1:] if line.strip()]
    say("found", ",".join(found) or "nothing")


look()
if sys.argv[1] == "hold":
    from probe import syscall

    if "shm" in kinds:
        shm = syscall(SYS["shmget"], KEY, 4096, IPC_CREAT | 0o666)
        address = syscall(SYS["shmat"], shm, 0, 0)
        ctypes.memmove(address, SECRET, len(SECRET))
    if "msg" in kinds:
        queue = syscall(SYS["msgget"], KEY, IPC_CREAT | 0o666)
        message = ctypes.create_string_buffer(8 + len(SECRET))
        ctypes.memmove(ctypes.addressof(message), (1).to_bytes(8, "little") + SECRET, 8 + len(SECRET))
        syscall(SYS["msgsnd"], queue, ctypes.addressof(message), len(SECRET), IPC_NOWAIT)
    if "sem" in kinds:
        semaphores = syscall(SYS["semget"], KEY, 1, IPC_CREAT | 0o666)
        operation = (ctypes.c_short * 3)(0, 1, 0)
        syscall(SYS["semop"], semaphores, ctypes.addressof(operation), 1)
    say("holding", "yes")
    time.sleep(1.5)
