"""The sandbox's filesystem: a new root, read-only binds, the box, fresh /tmp, /dev and /proc.

Two parts, both as root in a mount namespace of the sandbox's own:

- :func:`prepare_root`, the static part (everything below but the box, ``/tmp``, ``/dev/shm``
  and ``/proc``): the new root is assembled on a staging tmpfs mounted over ``/tmp`` (only in
  this private mount namespace), then ``pivot_root`` makes it ``/`` and the old root is
  detached. The fork server has a helper do this ahead of need (:func:`root_key` says which
  sandboxes can use it; each prepared namespace serves one sandbox only); PID 1 does it itself
  when none is ready.
- :func:`finish_root`, in PID 1: the box (a detached copy of its mount, taken with
  ``open_tree`` before PID 1 left the host's mount namespace, never through a symlink) at
  ``/box``, fresh ``/tmp`` and ``/dev/shm`` tmpfs, and ``/proc`` of the sandbox's PID namespace.

Every bind source is opened (``O_PATH``) before anything is mounted and bound through
``/proc/self/fd``, so later mounts cannot hide a source.

- ``RootView.path`` set: that directory is bound read-only, nosuid, nodev as ``/``; it must
  already hold the mount points ``/box``, ``/tmp``, ``/dev`` and ``/proc`` (and the targets of
  its binds), since nothing is created in a read-only root.
- ``RootView.path`` None (host runtimes): a small tmpfs root holding a read-only bind of the
  host's ``/usr``, the host's ``/bin``, ``/lib``, ``/lib64``, ``/sbin`` links mirrored (or bound
  where they are real directories), and a curated ``/etc`` (generated passwd, group, hosts,
  nsswitch.conf; read-only binds of the few host files programs need; never shadow files and
  never the whole ``/etc``). The tmpfs root is made read-only once built.

Binds are not recursive: submounts of a source never appear in the sandbox. Everything is
nosuid; everything but ``/box``, ``/tmp`` and ``/dev/shm`` is read-only; only the five device
nodes of ``/dev`` allow device access.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from typing import TYPE_CHECKING, Final

from pistond.sandbox import libc
from pistond.sandbox.spec import RootPlan, root_plan

if TYPE_CHECKING:
    from pistond.sandbox.spec import Bind, SpawnSpec

STAGING: Final = "/tmp"
"""Host directory the new root is assembled on (covered only inside the sandbox's namespace)."""

DEVICES: Final = ("null", "zero", "full", "random", "urandom")
DEV_LINKS: Final = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
)
HOST_LINKS: Final = ("bin", "lib", "lib32", "lib64", "libx32", "sbin")
"""Top-level host entries mirrored into a host-view root (symlinks on merged-/usr systems)."""
ETC_ENTRIES: Final = (
    "alternatives",
    "ca-certificates.conf",
    "debian_version",
    "gai.conf",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "os-release",
    "ssl/certs",
    "ssl/openssl.cnf",
    "timezone",
)
"""Host ``/etc`` entries a host-view root gets (read-only), when the host has them."""
ETC_PREFIXES: Final = ("java-", "python3")
"""Host ``/etc`` directories bound too: runtime configuration that /usr symlinks point into."""
ETC_NETWORK_ENTRIES: Final = ("resolv.conf",)
"""Added only when the sandbox shares the host's network."""

_RO: Final = libc.MS_RDONLY
_BASE: Final = libc.MS_NOSUID | libc.MS_NODEV
_RO_REMOUNT: Final = libc.MS_REMOUNT | libc.MS_BIND | libc.MS_RDONLY


def build_root(spec: SpawnSpec, ready_fd: int = -1) -> None:
    """Make the sandbox's filesystem and pivot into it (DESIGN.md step 3).

    Args:
        spec: the sandbox.
        ready_fd: a mount namespace made by :func:`prepare_root` for this spec's
            :func:`root_key`, never used before: entered instead of building the static part.
            Without it, the caller must already be in a private mount namespace of its own.

    Raises:
        OSError: a mount step failed; its message names the step by its sandbox path.
    """
    box = open_box_tree(spec.box_path)
    try:
        if ready_fd >= 0:
            libc.setns(ready_fd, libc.CLONE_NEWNS)
            os.close(ready_fd)
        else:
            prepare_root(root_plan(spec))
        finish_root(spec, box)
    finally:
        os.close(box)


def root_key(spec: SpawnSpec) -> RootPlan:
    """What :func:`prepare_root` builds from: sandboxes with equal keys get equal roots."""
    return root_plan(spec)


def open_box_tree(box_path: str) -> int:
    """A detached copy of the box mount (never through a symlink), to attach at ``/box``."""
    flags = os.O_PATH | os.O_CLOEXEC | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        fd = os.open(box_path, flags)
    except OSError as exc:
        raise OSError(exc.errno, f"bind source of box: {exc.strerror}") from None
    try:
        return libc.open_tree(
            fd,
            "",
            libc.OPEN_TREE_CLONE | libc.OPEN_TREE_CLOEXEC | libc.AT_EMPTY_PATH,
            what="bind /box",
        )
    finally:
        os.close(fd)


def prepare_root(plan: RootPlan) -> None:
    """The static part of a sandbox's filesystem, then pivot_root into it.

    Run as root in a new mount namespace of its own: everything but the box, ``/tmp``,
    ``/dev/shm`` and ``/proc`` (the root, its binds, the curated ``/etc``, the read-only
    ``/dev``). The fork server has this done ahead of need in a helper process, whose mount
    namespace the next sandbox with the same :func:`root_key` then enters; the native
    launcher's templates (:mod:`pistond.sandbox.templates`) are built by it too.
    """
    # systemd makes / a shared mount: without this, every mount below would propagate back
    # into the host's namespace (and the host's later mounts into the sandbox).
    libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE, what="private /")
    with _Sources() as sources:
        root = plan.root
        runtime = None if root.path is None else sources.open(root.path, "root", directory=True)
        bind_fds = [sources.open(bind.source, bind.target) for bind in root.binds]
        devices = {name: sources.open(f"/dev/{name}", f"/dev/{name}") for name in DEVICES}
        if runtime is None:
            _host_view(plan, sources)
        else:
            _check_mount_points(runtime)
            _bind(runtime, STAGING, writable=False, what="/")
        for bind, fd in zip(root.binds, bind_fds, strict=True):
            _user_bind(bind, fd, create=runtime is None)
        _dev(devices, make_nodes=plan.shared)
    if root.path is None:
        # Only now: the tmpfs root had to stay writable for its mount points, links and /etc.
        libc.mount(None, STAGING, None, libc.MS_REMOUNT | _RO | _BASE, what="read-only /")
    _pivot()


def finish_root(spec: SpawnSpec, box: int) -> None:
    """The per-sandbox part, in the pivoted root: the box at ``/box``, fresh tmpfs and /proc."""
    # The box is a detached tree (open_tree's clone): its flags are set before it is attached,
    # so it is never visible with setuid or device access; private, so that no mount event
    # propagates between it and the daemon's box mount.
    libc.mount_setattr(
        box,
        "",
        libc.AT_EMPTY_PATH,
        libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV,
        propagation=libc.MS_PRIVATE,
        what="remount /box",
    )
    libc.move_mount(box, "", libc.AT_FDCWD, "/box", libc.MOVE_MOUNT_F_EMPTY_PATH, what="bind /box")
    _scratch_tmpfs("/tmp", spec)
    _scratch_tmpfs("/dev/shm", spec)
    _proc()
    os.chdir("/")


_MOUNT_POINTS: Final = (
    ("box", "bind /box"),
    ("tmp", "tmpfs /tmp"),
    ("dev", "tmpfs /dev"),
    ("proc", "mount /proc"),
)


def _check_mount_points(root: str) -> None:
    """A runtime root must hold the fixed mount points (nothing is created in a read-only root)."""
    for name, what in _MOUNT_POINTS:
        if not _is_real_directory(root, name):
            raise OSError(errno.ENOENT, f"{what}: {os.strerror(errno.ENOENT)}")


def _is_real_directory(root: str, name: str) -> bool:
    """Whether ``root/name`` is a directory reached without following any symlink below root.

    ``root`` itself may be a ``/proc/self/fd`` path (the opened runtime root), so it is followed.
    """
    flags = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(root, flags & ~os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        for part in name.split("/"):
            following = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = following
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


class _Sources:
    """O_PATH descriptors of every mount source, closed when the root is built."""

    def __init__(self) -> None:
        self._fds: list[int] = []

    def __enter__(self) -> _Sources:
        return self

    def __exit__(self, *_exc: object) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def open(self, path: str, what: str, *, directory: bool = False, follow: bool = True) -> str:
        """Open ``path`` now; returns the ``/proc/self/fd`` path to bind from."""
        flags = os.O_PATH | os.O_CLOEXEC
        if directory:
            flags |= os.O_DIRECTORY
        if not follow:
            flags |= os.O_NOFOLLOW
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            raise OSError(exc.errno, f"bind source of {what}: {exc.strerror}") from None
        self._fds.append(fd)
        return f"/proc/self/fd/{fd}"


def _inside(path: str) -> str:
    """The staging path of ``path`` inside the sandbox."""
    return STAGING + "/" + path.lstrip("/")


def _bind(source: str, target: str, *, writable: bool, what: str, dev: bool = False) -> None:
    """Bind ``source`` on ``target``, then remount it nosuid (nodev unless ``dev``), maybe ro."""
    # Two calls because the kernel ignores every flag but MS_REC on a new bind: the per-mount
    # flags (read-only, nosuid, nodev) only take on a remount of the bind. Not MS_REC, so the
    # source's submounts stay out of the sandbox.
    libc.mount(source, target, None, libc.MS_BIND, what=f"bind {what}")
    flags = libc.MS_REMOUNT | libc.MS_BIND | libc.MS_NOSUID
    # A device node must not be nodev, so it is at least noexec.
    flags |= libc.MS_NOEXEC if dev else libc.MS_NODEV
    if not writable:
        flags |= libc.MS_RDONLY
    libc.mount(None, target, None, flags, what=f"remount {what}")


def _tmpfs(target: str, options: str, *, what: str, flags: int = _BASE) -> None:
    libc.mount("tmpfs", target, "tmpfs", flags, options, what=f"tmpfs {what}")


def _user_bind(bind: Bind, source: str, *, create: bool) -> None:
    """One of ``RootView.binds``; its mount point is created in a tmpfs root when missing."""
    target = _inside(bind.target)
    if create and not os.path.lexists(target):
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if os.path.isdir(source):
                os.mkdir(target)
            else:
                os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
        except OSError as exc:
            raise OSError(exc.errno, f"mount point {bind.target}: {exc.strerror}") from None
    _bind(source, target, writable=bind.writable, what=bind.target)


def _host_view(plan: RootPlan, sources: _Sources) -> None:
    """A tmpfs root with the host's /usr, its top-level links and a curated /etc."""
    usr = sources.open("/usr", "/usr", directory=True)
    etc = {name: _etc_source(name, sources) for name in _etc_names(plan)}
    size = "size=16m,nr_inodes=16384" if plan.shared else "size=1m,nr_inodes=4096"
    _tmpfs(STAGING, f"{size},mode=0755", what="/")
    for name in ("usr", "etc", "box", "tmp", "dev", "proc"):
        os.mkdir(_inside(name), 0o755)
    _bind(usr, _inside("/usr"), writable=False, what="/usr")
    for name in HOST_LINKS:
        host = "/" + name
        if os.path.islink(host):
            os.symlink(os.readlink(host), _inside(name))
        elif os.path.isdir(host):
            os.mkdir(_inside(name), 0o755)
            _bind(
                sources.open(host, host, directory=True), _inside(name), writable=False, what=host
            )
    _write_etc(plan)
    for name, source in etc.items():
        if source is not None:
            _place_etc(name, source, copy=plan.shared)


def _etc_names(plan: RootPlan) -> list[str]:
    names = list(ETC_ENTRIES)
    with contextlib.suppress(OSError):
        names += sorted(
            entry
            for entry in os.listdir("/etc")
            if entry.startswith(ETC_PREFIXES) and os.path.isdir(os.path.join("/etc", entry))
        )
    if plan.network:
        names += ETC_NETWORK_ENTRIES
    return names


def _etc_source(name: str, sources: _Sources) -> str | None:
    """How to place /etc/<name>: ``link:<target>`` for a symlink, a bind source, or None."""
    host = os.path.join("/etc", name)
    if os.path.islink(host):
        return "link:" + os.readlink(host)
    if not os.path.exists(host):
        return None
    return sources.open(host, "/etc/" + name)


def _place_etc(name: str, source: str, *, copy: bool) -> None:
    """One curated /etc entry: a symlink as it is; a file or directory bound read-only, or
    with ``copy`` copied into the (later read-only) tmpfs root, links kept as links."""
    target = _inside("/etc/" + name)
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    if source.startswith("link:"):
        os.symlink(source.removeprefix("link:"), target)
        return
    if copy:
        # Only template builders copy: the fork server (and every sandbox it forks) keeps
        # shutil and its compression modules out of its memory.
        import shutil  # noqa: PLC0415

        try:
            if os.path.isdir(source):
                shutil.copytree(source, target, symlinks=True)
            else:
                shutil.copy2(source, target)
        except OSError as exc:
            raise OSError(exc.errno, f"copy /etc/{name}: {exc.strerror}") from None
        return
    if os.path.isdir(source):
        os.mkdir(target, 0o755)
    else:
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    _bind(source, target, writable=False, what="/etc/" + name)


def _write_etc(plan: RootPlan) -> None:
    """The generated /etc files: only root, the box user (one entry per box uid) and nobody."""
    users = "".join(f"box:x:{uid}:{uid}:box:/box:/bin/sh\n" for uid in plan.box_uids)
    groups = "".join(f"box:x:{uid}:\n" for uid in plan.box_uids)
    files = {
        "passwd": (
            "root:x:0:0:root:/root:/usr/sbin/nologin\n"
            f"{users}"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
        "group": f"root:x:0:\n{groups}nogroup:x:65534:\n",
        "hosts": (
            "127.0.0.1\tlocalhost\n"
            f"127.0.1.1\t{plan.hostname}\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n"
        ),
        "hostname": plan.hostname + "\n",
        "nsswitch.conf": (
            "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
            "networks: files\nprotocols: files\nservices: files\n"
        ),
    }
    for name, content in files.items():
        with open(_inside("/etc/" + name), "w", encoding="utf-8") as file:
            file.write(content)


def _scratch_tmpfs(path: str, spec: SpawnSpec) -> None:
    options = f"size={spec.tmp_size},nr_inodes={spec.tmp_inodes},mode=1777"
    _tmpfs(path, options, what=path)


def _dev(devices: dict[str, str], *, make_nodes: bool) -> None:
    """A read-only /dev with the five harmless devices, the fd links and a /dev/shm mount point.

    Each device is a read-write bind of the host's node, or with ``make_nodes`` a node made in
    place with the host node's device number (no mount). Either way the tmpfs allows device
    access (nothing else of the sandbox does), and being read-only it gets no new node.
    """
    dev = _inside("/dev")
    # The one mount without nodev (device nodes must work), hence noexec, and read-only below.
    _tmpfs(
        dev, "size=64k,nr_inodes=64,mode=0755", what="/dev", flags=libc.MS_NOSUID | libc.MS_NOEXEC
    )
    for name, source in devices.items():
        target = f"{dev}/{name}"
        if make_nodes and _make_node(source, target, name):
            continue
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o666))
        _bind(source, target, writable=True, what=f"/dev/{name}", dev=True)
    for name, target in DEV_LINKS:
        os.symlink(target, f"{dev}/{name}")
    os.mkdir(f"{dev}/shm", 0o1777)
    libc.mount(
        None,
        dev,
        None,
        libc.MS_REMOUNT | _RO | libc.MS_NOSUID | libc.MS_NOEXEC,
        what="read-only /dev",
    )


def _make_node(source: str, target: str, name: str) -> bool:
    """Make ``target`` a node with the host node's device number; False where the kernel
    refuses (no CAP_MKNOD, as in a container), and the caller binds the host's node instead."""
    host = os.stat(source)
    if not stat.S_ISCHR(host.st_mode):
        raise OSError(errno.EINVAL, f"/dev/{name}: not a character device")
    try:
        os.mknod(target, stat.S_IFCHR | 0o666, host.st_rdev)
    except PermissionError:
        return False
    os.chmod(target, 0o666)  # mknod's mode is cut by the umask
    return True


def _proc() -> None:
    """A fresh /proc of the new PID namespace, with /proc/sys and sysrq-trigger read-only.

    ``hidepid=2`` hides the processes of other uids: the program sees its own processes only,
    not PID 1 (root), whose command line is the fork server's.
    """
    proc = "/proc"
    flags = libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC
    libc.mount("proc", proc, "proc", flags, "hidepid=2", what="mount /proc")
    for name in ("sys", "sysrq-trigger"):
        path = f"{proc}/{name}"
        if os.path.exists(path):
            # A bind of the path onto itself makes it a mount of its own, which alone can
            # then be remounted read-only.
            libc.mount(path, path, None, libc.MS_BIND, what=f"bind /proc/{name}")
            libc.mount(None, path, None, _RO_REMOUNT | flags, what=f"remount /proc/{name}")


def _pivot() -> None:
    """Make the staging root ``/`` and detach the old root entirely (a slow call: the kernel
    waits for an RCU grace period, which is why the fork server has roots made ahead)."""
    os.chdir(STAGING)
    # pivot_root(".", ".") stacks the old root on the new one at the same place (no put_old
    # directory is needed in a read-only root); the lazy unmount of "." then takes the old root
    # away with everything under it, leaving the new root as "/".
    libc.pivot_root(".", ".")
    libc.umount2(".", libc.MNT_DETACH, what="detach old root")
    os.chdir("/")
