"""Case 25: new namespaces. unshare, clone with CLONE_NEWUSER, clone3, setns, ``unshare -r``;
had any worked, try to map uid 0 and write to /usr."""

import ctypes
import os
import subprocess

from probe import errno_of, outcome, probe, say, write_file

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000
SIGCHLD = 17
SYS_CLONE, SYS_CLONE3, SYS_UNSHARE, SYS_SETNS = 56, 435, 272, 308

say("unshare-user-mnt", errno_of(SYS_UNSHARE, CLONE_NEWUSER | CLONE_NEWNS))
say("unshare-user", errno_of(SYS_UNSHARE, CLONE_NEWUSER))
say("unshare-net", errno_of(SYS_UNSHARE, CLONE_NEWNET))


def clone(flags: int) -> None:
    pid = ctypes.CDLL(None, use_errno=True).syscall(SYS_CLONE, ctypes.c_ulong(flags), 0, 0, 0, 0)
    if pid == 0:
        os._exit(0)
    if pid < 0:
        raise OSError(ctypes.get_errno(), "clone")
    os.waitpid(pid, 0)


probe("clone-newuser", clone, CLONE_NEWUSER | SIGCHLD)
probe("clone-newpid", clone, CLONE_NEWPID | SIGCHLD)
args = (ctypes.c_uint64 * 11)(CLONE_NEWUSER, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
say("clone3-newuser", errno_of(SYS_CLONE3, ctypes.addressof(args), ctypes.sizeof(args)))
plain = (ctypes.c_uint64 * 11)(0, 0, 0, 0, SIGCHLD, 0, 0, 0, 0, 0, 0)
say("clone3-plain", errno_of(SYS_CLONE3, ctypes.addressof(plain), ctypes.sizeof(plain)))
for name in ("user", "mnt", "pid", "net"):
    say(f"open-init-ns-{name}", outcome(os.open, f"/proc/1/ns/{name}", os.O_RDONLY))
    fd = os.open(f"/proc/self/ns/{name}", os.O_RDONLY)
    say(f"setns-self-{name}", errno_of(SYS_SETNS, fd, 0))
    os.close(fd)
done = subprocess.run(["unshare", "-r", "id", "-u"], capture_output=True, check=False)
say("unshare-tool", "fail" if done.returncode else "ok:" + done.stdout.decode().strip())
say("uid_map", outcome(write_file, "/proc/self/uid_map", b"0 0 1\n"))
say("write-usr", outcome(os.open, "/usr/pistond-was-here", os.O_CREAT | os.O_WRONLY, 0o644))
