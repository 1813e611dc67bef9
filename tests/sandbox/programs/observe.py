"""Probe run inside a sandbox: prints one JSON object with what it observes.

Usage: observe.py PROBE [ARG...]; each probe is a function below.
"""

import errno
import json
import os
import resource
import socket
import stat
import sys


def _errname(exc):
    return errno.errorcode.get(exc.errno, str(exc.errno))


def identity():
    status = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            status[key] = value.strip()
    return {
        "resuid": list(os.getresuid()),
        "resgid": list(os.getresgid()),
        "groups": os.getgroups(),
        "status": {
            k: status[k]
            for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")
        },
    }


def processes():
    pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    return {
        "self": os.getpid(),
        "ppid": os.getppid(),
        "pids": pids,
        "pid1_visible": os.path.exists("/proc/1"),
    }


def mounts():
    result = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            result.append(
                {
                    "root": fields[3],
                    "point": fields[4],
                    "options": fields[5].split(","),
                    "fstype": fields[sep + 1],
                }
            )
    return result


def _try(fn):
    try:
        fn()
    except OSError as exc:
        return _errname(exc)
    return "ok"


def writes():
    def create(path):
        return lambda: os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))

    paths = [
        "/probe",
        "/usr/probe",
        "/etc/probe",
        "/etc/passwd",
        "/box/probe",
        "/tmp/probe",
        "/dev/shm/probe",
        "/dev/probe",
        "/proc/probe",
    ]
    return {path: _try(create(path)) for path in paths}


def mark(name):
    """Report which of /tmp/<name>, /dev/shm/<name>, /box/<name> exist, then create them."""
    found = {}
    for d in ("/tmp", "/dev/shm", "/box"):
        path = os.path.join(d, name)
        found[path] = os.path.exists(path)
        with open(path, "w") as f:
            f.write("bean")
    return found


def devices():
    entries = {}
    for name in sorted(os.listdir("/dev")):
        st = os.lstat(os.path.join("/dev", name))
        kind = (
            "link"
            if stat.S_ISLNK(st.st_mode)
            else "char"
            if stat.S_ISCHR(st.st_mode)
            else "dir"
            if stat.S_ISDIR(st.st_mode)
            else "other"
        )
        entries[name] = kind
    with open("/dev/null", "wb") as f:
        f.write(b"x")
    with open("/dev/zero", "rb") as f:
        zero = f.read(4).hex()
    with open("/dev/urandom", "rb") as f:
        random_len = len(f.read(16))
    with open("/dev/random", "rb") as f:
        random2_len = len(f.read(16))
    full = _try(lambda: open("/dev/full", "wb", buffering=0).write(b"x"))
    mknod = {
        d: _try(
            lambda d=d: os.mknod(os.path.join(d, "mem"), 0o600 | stat.S_IFCHR, os.makedev(1, 1))
        )
        for d in ("/tmp", "/box")
    }
    missing = {
        p: _try(lambda p=p: os.close(os.open(p, os.O_RDONLY)))
        for p in ("/dev/mem", "/dev/tty", "/dev/sda", "/dev/ptmx", "/dev/console")
    }
    return {
        "entries": entries,
        "zero": zero,
        "urandom": random_len,
        "random": random2_len,
        "full": full,
        "mknod": mknod,
        "missing": missing,
    }


def filesystems():
    return {
        "sys": os.path.exists("/sys"),
        "proc_self_pid": os.readlink("/proc/self") if os.path.islink("/proc/self") else None,
        "cgroup": open("/proc/self/cgroup").read().splitlines(),
        "core_pattern_write": _try(lambda: open("/proc/sys/kernel/core_pattern", "w").write("x")),
        "cwd": os.getcwd(),
    }


def network():
    names = [name for _, name in socket.if_nameindex()]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname(), timeout=2)
    client.close()
    listener.close()
    outside = socket.socket()
    try:
        outside.connect(("192.0.2.1", 80))
        reach = "ok"
    except OSError as exc:
        reach = _errname(exc)
    return {
        "interfaces": names,
        "loopback": "ok",
        "outside": reach,
        "hostname": socket.gethostname(),
    }


def fds():
    found = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            found[name] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
    return found


def netns():
    return {"netns": os.readlink("/proc/self/ns/net")}


def rlimits():
    names = ["CORE", "FSIZE", "NOFILE", "STACK", "MEMLOCK", "NPROC", "MSGQUEUE", "CPU"]
    limits = {name: list(resource.getrlimit(getattr(resource, "RLIMIT_" + name))) for name in names}
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        raise_hard = "ok"
    except (OSError, ValueError) as exc:
        raise_hard = type(exc).__name__
    return {"limits": limits, "raise_hard": raise_hard}


def escape():
    """Privilege escalation attempts: all must fail."""
    return {
        "setuid0": _try(lambda: os.setuid(0)),
        "setgroups": _try(lambda: os.setgroups([0])),
        "chroot": _try(lambda: os.chroot("/tmp")),
        "unshare": _try(lambda: os.unshare(os.CLONE_NEWUSER)) if hasattr(os, "unshare") else "n/a",
        "shadow": os.path.exists("/etc/shadow"),
        "proc1_environ": _try(lambda: open("/proc/1/environ").read()),
    }


def main():
    probe = globals()[sys.argv[1]]
    print(json.dumps(probe(*sys.argv[2:])), flush=True)


main()
