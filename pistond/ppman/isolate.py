"""Build-time commands inside a package root: a small namespace jail for the package manager.

Recipe commands (``environment`` for ``.env``, ``[build] warm``) never run on the host as they
are. :func:`run_isolated` starts this module as a helper process that unshares mount, PID,
network, IPC and UTS namespaces, forks (the child is PID 1 and dies with the helper), builds
a root (the package's root filesystem, or a read-only host view of ``/usr`` and a curated
``/etc`` when it has none), mounts fresh ``/proc``, ``/tmp`` and a minimal ``/dev``, binds the
package directory read-only at its Piston path, chroots, drops to the given uid with no groups
and execs with exactly the given environment. There is no network.

``.env`` runs as ``nobody`` over a read-only root. ``warm`` runs as root over a writable root
(the not-yet-published build copy) so that caches land in the image, still without network.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
from typing import IO, TYPE_CHECKING, Any, Final

import attrs

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from pistond.sandbox.spec import Bind

CLONE_NEWNS: Final = 0x00020000
CLONE_NEWUTS: Final = 0x04000000
CLONE_NEWIPC: Final = 0x08000000
CLONE_NEWPID: Final = 0x20000000
CLONE_NEWNET: Final = 0x40000000
MS_RDONLY: Final = 1
MS_NOSUID: Final = 2
MS_NODEV: Final = 4
MS_NOEXEC: Final = 8
MS_REMOUNT: Final = 32
MS_BIND: Final = 4096
MS_REC: Final = 16384
MS_PRIVATE: Final = 1 << 18
PR_SET_PDEATHSIG: Final = 1
NOBODY: Final = 65534
HOST_LINKS: Final = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
HOST_ETC: Final = (
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "passwd",
    "group",
    "nsswitch.conf",
    "localtime",
    "ssl",
)
DEVICES: Final = ("null", "zero", "full", "random", "urandom")
DEFAULT_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class IsolationError(RuntimeError):
    """Raised by :func:`run_isolated` when the helper cannot start or times out."""


@attrs.frozen
class IsolatedCommand:
    """A command to run in a jail over a package root."""

    argv: tuple[str, ...]
    root: str | None
    """The root filesystem; None for the read-only host view."""
    staging: str
    """An empty host directory used as the jail's mount point."""
    binds: tuple[Bind, ...] = ()
    """Read-only binds; their targets must exist in a read-only root."""
    writable_root: bool = False
    cwd: str = "/"
    env: Mapping[str, str] = attrs.field(factory=lambda: {"PATH": DEFAULT_PATH})
    uid: int = NOBODY

    def to_json(self) -> str:
        """The wire form passed to the helper."""
        return json.dumps(attrs.asdict(self, value_serializer=_plain))


def _plain(_instance: object, _field: object, value: Any) -> Any:
    return dict(value) if hasattr(value, "items") else value


def _command(command: IsolatedCommand) -> list[str]:
    return [sys.executable, "-I", "-m", "pistond.ppman.isolate", command.to_json()]


def _start(command: IsolatedCommand, *, stderr: int) -> subprocess.Popen[bytes]:
    """Start the jail helper for ``command`` in its own session, stdout piped.

    Raises:
        IsolationError: the helper could not start.
    """
    try:
        return subprocess.Popen(
            _command(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
            env={"PATH": DEFAULT_PATH},
        )
    except OSError as exc:
        raise IsolationError(f"cannot start the build jail: {exc}") from None


def run_isolated(
    command: IsolatedCommand,
    *,
    timeout: float,
    on_line: Callable[[str], None] | None = None,
) -> tuple[int, bytes]:
    """Run ``command`` in the jail; return its exit status and its stdout.

    stderr lines go to ``on_line`` (or are dropped). A command still running after
    ``timeout`` seconds is killed with its whole namespace.

    Raises:
        IsolationError: the helper could not start, or the command timed out.
    """
    process = _start(command, stderr=subprocess.PIPE)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise IsolationError(f"{command.argv[0]} timed out after {timeout:.0f} s") from None
    if on_line is not None:
        for line in stderr.decode("utf-8", "replace").splitlines():
            on_line(line[:1000])
    return process.returncode, stdout


def stream_isolated(
    command: IsolatedCommand, *, timeout: float, on_line: Callable[[str], None]
) -> int:
    """Run ``command`` in the jail with stdout and stderr merged into ``on_line`` as they come.

    Raises:
        IsolationError: the helper could not start, or the command timed out.
    """
    process = _start(command, stderr=subprocess.STDOUT)
    expired = threading.Event()

    def kill() -> None:
        expired.set()
        os.killpg(process.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        stream: IO[bytes] | None = process.stdout
        assert stream is not None
        for raw in stream:
            on_line(raw.decode("utf-8", "replace").rstrip("\n")[:1000])
        returncode = process.wait()
    finally:
        timer.cancel()
    if expired.is_set():
        raise IsolationError(f"{command.argv[0]} timed out after {timeout:.0f} s")
    return returncode


# ---- the helper process (runs as root, single-threaded) -------------------------------------

_libc: Any = None


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def _bind(source: str, target: str, *, writable: bool = False) -> None:
    _mount(source, target, None, MS_BIND | MS_REC)
    flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV
    _mount(None, target, None, flags if writable else flags | MS_RDONLY)


def _mount_point(path: str, *, directory: bool = True) -> None:
    if os.path.lexists(path):
        return
    if directory:
        os.makedirs(path, mode=0o755)
    else:
        with open(path, "x"):
            pass


def _host_view(new_root: str) -> None:
    _mount("tmpfs", new_root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=8m")
    os.mkdir(f"{new_root}/usr")
    _bind("/usr", f"{new_root}/usr")
    for name in HOST_LINKS:
        host = f"/{name}"
        if os.path.islink(host):
            os.symlink(os.readlink(host), f"{new_root}/{name}")
        elif os.path.isdir(host):
            os.mkdir(f"{new_root}/{name}")
            _bind(host, f"{new_root}/{name}")
    os.mkdir(f"{new_root}/etc")
    for name in HOST_ETC:
        host = f"/etc/{name}"
        if os.path.exists(host):
            _mount_point(f"{new_root}/etc/{name}", directory=os.path.isdir(host))
            _bind(host, f"{new_root}/etc/{name}")
    for name in ("proc", "dev", "tmp"):
        os.mkdir(f"{new_root}/{name}")


def _child(spec: dict[str, Any]) -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    new_root = spec["staging"]
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    if spec["root"] is None:
        _host_view(new_root)
    else:
        _bind(spec["root"], new_root, writable=spec["writable_root"])
    for bind in spec["binds"]:
        target = new_root + bind["target"]
        if spec["root"] is None or spec["writable_root"]:
            _mount_point(target, directory=os.path.isdir(bind["source"]))
        _bind(bind["source"], target)
    _mount("proc", f"{new_root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _mount("tmpfs", f"{new_root}/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=256m")
    _mount("tmpfs", f"{new_root}/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k")
    for name in DEVICES:
        _mount_point(f"{new_root}/dev/{name}", directory=False)
        _mount(f"/dev/{name}", f"{new_root}/dev/{name}", None, MS_BIND)
    os.symlink("/proc/self/fd", f"{new_root}/dev/fd")
    if spec["root"] is None:
        _mount(None, new_root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chroot(new_root)
    os.chdir(spec["cwd"])
    uid = spec["uid"]
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    os.execve(spec["argv"][0], spec["argv"], spec["env"])


def _helper_main(argv: list[str]) -> int:
    global _libc  # noqa: PLW0603 (the helper process loads libc once)
    _libc = ctypes.CDLL(None, use_errno=True)
    spec = json.loads(argv[1])
    _check(
        _libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS),
        "unshare",
    )
    pid = os.fork()
    if pid == 0:
        try:
            _child(spec)
        except BaseException as exc:
            os.write(2, f"build jail: {exc}\n".encode())
        os._exit(127)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(_helper_main(sys.argv))
