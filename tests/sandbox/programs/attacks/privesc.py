"""Case 10: climb to root. Prints every attempt's outcome, then the process's credentials."""

import ctypes
import os
import shutil
import stat
import subprocess

from probe import errno_of, outcome, probe, say, write_file

SYS_CAPSET = 126


def run(argv: list[str], timeout: float = 0.5) -> str:
    try:
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        return "absent"
    except subprocess.TimeoutExpired:
        return "timeout"
    return "fail" if done.returncode != 0 else "ok:" + done.stdout.decode().strip()


say("sudo", run(["sudo", "-n", "id", "-u"]))
say("su", run(["su", "-c", "id -u"]))
setuid_files = []
# Where Debian keeps its setuid and setgid files (find / -perm -4000 would walk all of /usr,
# too slow for the wall limit): the bin directories, and /usr/lib and /usr/libexec two deep.
for top in ("/usr/bin", "/usr/sbin", "/usr/lib", "/usr/libexec", "/etc", "/box", "/tmp"):
    for root, dirs, files in os.walk(top):
        if root.count("/") >= 4:
            dirs[:] = []
        for name in files:
            path = os.path.join(root, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode) and info.st_mode & (stat.S_ISUID | stat.S_ISGID):
                setuid_files.append(path)
nosuid = all(os.statvfs(path).f_flag & os.ST_NOSUID for path in setuid_files)
# Run each one: with nosuid and no_new_privs they run as the box uid (no euid change).
children = []
for path in setuid_files:
    try:
        children.append(subprocess.Popen(
            [path, "--version"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ))
    except OSError:
        continue  # not executable by the box uid (setgid helpers of other groups)
for child in children:
    try:
        child.wait(0.3)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
say("setuid-files", f"{len(setuid_files)} nosuid={'yes' if nosuid else 'no'}")
probe("setuid0", os.setuid, 0)
probe("seteuid0", os.seteuid, 0)
probe("setgroups0", os.setgroups, [0])
header = (ctypes.c_uint32 * 2)(0x20080522, 0)
data = (ctypes.c_uint32 * 6)(0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
say("capset", errno_of(SYS_CAPSET, ctypes.addressof(header), ctypes.addressof(data)))
shutil.copy("/usr/bin/id", "id-copy")
probe("chmod-setuid", os.chmod, "id-copy", 0o4755)
say("copied-id", run(["./id-copy", "-u"]))
probe("uid_map", write_file, "/proc/self/uid_map", b"0 0 1\n")
probe("attr-current", write_file, "/proc/self/attr/current", b"unconfined\n")
say("id", run(["id", "-u"]))
status = dict(
    line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line
)
for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"):
    say(key, status[key].strip())
say("euid", os.geteuid())
