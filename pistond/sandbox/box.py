"""Box storage: each job's private, size- and inode-limited tmpfs under ``<data>/boxes/<slot>``.

A box is mounted when a job takes its slot and torn down when the job ends by one lazy
unmount: teardown never walks what the job created (the compile cache and test runs read a box
after its compile only with :func:`hostfs.read_tree`: beneath the box fd, bounded, no link
followed). The slot's mount point, an empty
directory of root's, stays for the slot's next job (making and removing it per job cost more
than the mount itself); the next daemon start removes them all.
The box root (``/box`` in the sandbox) belongs to root, mode 0755; the job writes in
``submission/``, which belongs to the box uid, mode 0700. Submitted files are written into it
symlink-safely (:mod:`pistond.sandbox.hostfs`) before any stage runs.
"""

from __future__ import annotations

import errno
import logging
import os
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import attrs
import trio

from pistond.errors import SandboxError
from pistond.sandbox import hostfs, libc

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence
    from pathlib import Path

    from pistond.config import DaemonConfig
    from pistond.models import SourceFile

logger = logging.getLogger(__name__)

SUBMISSION: Final = "submission"
"""The job's writable directory inside the box (``/box/submission`` in the sandbox)."""
UMOUNT_NOFOLLOW: Final = 0x8


def boxes_directory(config: DaemonConfig) -> Path:
    """Where box mount points live."""
    return config.data_directory / "boxes"


@attrs.define(eq=False)
class BoxMount:
    """One job's mounted box tmpfs (``pistond.sandbox.service.Box`` runs stages over it)."""

    slot: int
    uid: int
    """Owner of ``submission/``; also its gid."""
    path: Path
    """Host path of the box tmpfs (bound at ``/box`` in the sandbox)."""
    _root_fd: int

    @property
    def root_fd(self) -> int:
        """The box's root directory, opened without following links (owned by the box)."""
        return self._root_fd

    @property
    def submission_path(self) -> Path:
        """Host path of ``submission/``; for the spawn spec only, never to open files by."""
        return self.path / SUBMISSION

    def write_files(self, files: Sequence[SourceFile]) -> None:
        """Write the submitted files into ``submission/``, owned by the box uid.

        Each file is created beneath an fd of the box (``O_CREAT | O_EXCL | O_NOFOLLOW``, parents
        made one ``O_NOFOLLOW`` component at a time), so no link in the box is ever followed.

        Raises:
            SandboxError: a name is invalid, a file already exists, or the box is full.
        """
        with hostfs.opened_fd(
            hostfs.open_beneath(self._root_fd, (SUBMISSION,), os.O_RDONLY | os.O_DIRECTORY)
        ) as submission:
            for file in files:
                hostfs.write_new_file(
                    submission, file.name, file.content, uid=self.uid, gid=self.uid
                )

    def read_submission(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        skip: Callable[[str, bool], bool] | None = None,
    ) -> hostfs.BoxTree:
        """What ``submission/`` holds now, read without following links (see
        :func:`hostfs.read_tree`); call only while no stage runs.

        Raises:
            TreeTooLarge: it holds more than the bounds allow.
            OSError: it could not be read.
        """
        with hostfs.opened_fd(
            hostfs.open_beneath(self._root_fd, (SUBMISSION,), os.O_RDONLY | os.O_DIRECTORY)
        ) as submission:
            return hostfs.read_tree(
                submission, max_entries=max_entries, max_bytes=max_bytes, skip=skip
            )

    def write_submission(self, tree: hostfs.BoxTree) -> None:
        """Fill the empty ``submission/`` with ``tree``, owned by the box uid; call before any
        stage, instead of :meth:`write_files`.

        Raises:
            SandboxError: an entry could not be made.
        """
        with hostfs.opened_fd(
            hostfs.open_beneath(self._root_fd, (SUBMISSION,), os.O_RDONLY | os.O_DIRECTORY)
        ) as submission:
            hostfs.write_tree(submission, tree, uid=self.uid, gid=self.uid)


def _mount_options(config: DaemonConfig) -> str:
    return f"size={config.disk_size},nr_inodes={config.disk_inodes},mode=0755,uid=0,gid=0"


def _prepare_boxes_directory(config: DaemonConfig) -> int:
    """Open ``<data>/boxes`` (root, 0700) without following a link, creating it if needed."""
    boxes = boxes_directory(config)
    try:
        return hostfs.open_directory(str(boxes))
    except FileNotFoundError:
        boxes.parent.mkdir(parents=True, exist_ok=True)
        boxes.mkdir(mode=0o700, exist_ok=True)
    fd = hostfs.open_directory(str(boxes))
    os.fchmod(fd, 0o700)
    return fd


def mount_box(config: DaemonConfig, slot: int, uid: int) -> BoxMount:
    """Mount the tmpfs of box ``slot`` and create its ``submission/`` directory.

    Raises:
        SandboxError: the mount point is in use or the tmpfs could not be made.
    """
    if slot < 0 or uid <= 0:
        raise SandboxError("invalid box slot or uid")
    boxes_fd = _prepare_boxes_directory(config)
    name = str(slot)
    path = boxes_directory(config) / name
    mounted = False
    try:
        try:
            os.mkdir(name, 0o755, dir_fd=boxes_fd)
        except FileExistsError:
            # The slot's mount point, kept from its last job; a mount still on it (which only
            # a failed unmount leaves) is detached first, never walked.
            point = os.stat(name, dir_fd=boxes_fd, follow_symlinks=False)
            if point.st_dev != os.fstat(boxes_fd).st_dev:
                _unmount(path)
        libc.mount(
            "pistond-box",
            str(path),
            "tmpfs",
            libc.MS_NOSUID | libc.MS_NODEV,
            _mount_options(config),
            what="box mount",
        )
        mounted = True
        # One component with O_NOFOLLOW; openat2's RESOLVE_NO_XDEV would refuse the mount.
        root_fd = os.open(name, hostfs.DIRECTORY_FLAGS, dir_fd=boxes_fd)
        try:
            os.fchown(root_fd, 0, 0)
            os.fchmod(root_fd, 0o755)
            os.mkdir(SUBMISSION, 0o700, dir_fd=root_fd)
            with hostfs.opened_fd(
                hostfs.open_beneath(root_fd, (SUBMISSION,), os.O_RDONLY | os.O_DIRECTORY)
            ) as submission:
                os.fchown(submission, uid, uid)
                os.fchmod(submission, 0o700)
        except BaseException:
            os.close(root_fd)
            raise
    except OSError as exc:
        if mounted:
            _unmount(path)
        _remove_mount_point(boxes_fd, name)
        logger.error("box %d: cannot be set up: %s", slot, exc)
        raise SandboxError("the job's box could not be set up") from exc
    finally:
        os.close(boxes_fd)
    return BoxMount(slot=slot, uid=uid, path=path, root_fd=root_fd)


def unmount_box(box: BoxMount) -> None:
    """Tear a box down: close its fd and detach its tmpfs (the mount point stays)."""
    os.close(box._root_fd)
    libc.umount2(str(box.path), libc.MNT_DETACH | UMOUNT_NOFOLLOW, what="box unmount")


def _unmount(path: Path) -> None:
    """Detach every mount stacked on ``path``; a path with no mount is left as it is."""
    for _ in range(64):
        try:
            libc.umount2(str(path), libc.MNT_DETACH | UMOUNT_NOFOLLOW, what="box unmount")
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):
                return
            raise
    logger.error("box mount point has too many stacked mounts")


def _remove_mount_point(boxes_fd: int, name: str) -> None:
    try:
        os.rmdir(name, dir_fd=boxes_fd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.error("box mount point %s/%s not removed: %s", "boxes", name, exc)


@asynccontextmanager
async def open_box(config: DaemonConfig, slot: int, uid: int) -> AsyncIterator[BoxMount]:
    """Mount box ``slot`` for a job; always unmount it when the block ends.

    Args:
        config: gives the data directory, ``disk_size`` and ``disk_inodes``.
        slot: the job's box slot; names the mount point.
        uid: the slot's uid, owner of ``submission/``.

    Raises:
        SandboxError: the box could not be mounted.
    """
    await trio.lowlevel.checkpoint()
    box = mount_box(config, slot, uid)
    try:
        yield box
    finally:
        # Even a lazy detach may wait for an RCU grace period (often tens of microseconds, at
        # times a millisecond): in a worker thread, so the daemon's other jobs go on meanwhile.
        # Shielded: the box is always torn down before its slot is handed out again.
        with trio.CancelScope(shield=True):
            try:
                await trio.to_thread.run_sync(unmount_box, box)
            except OSError:
                logger.exception("box %d: its tmpfs could not be detached", slot)


def _unescape_mountinfo(field: str) -> str:
    """Undo mountinfo's octal escapes (``\\040`` for a space, ...)."""
    if "\\" not in field:
        return field
    raw = field.encode()
    out = bytearray()
    index = 0
    while index < len(raw):
        if raw[index : index + 1] == b"\\" and raw[index + 1 : index + 4].isdigit():
            out.append(int(raw[index + 1 : index + 4], 8))
            index += 4
        else:
            out.append(raw[index])
            index += 1
    return os.fsdecode(bytes(out))


def cleanup_stale_boxes(config: DaemonConfig) -> int:
    """Unmount the boxes a previous daemon left mounted and remove their mount points.

    Run at daemon start, before any job. Returns how many mounts were detached.
    """
    boxes = boxes_directory(config)
    prefix = str(boxes) + "/"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as info:
            points = [_unescape_mountinfo(line.split()[4]) for line in info if line.strip()]
    except OSError:
        logger.warning("cannot read the mount table; stale boxes not cleaned", exc_info=True)
        return 0
    stale = sorted(
        (point for point in points if point.startswith(prefix)),
        key=lambda point: point.count("/"),
        reverse=True,
    )
    detached = 0
    for point in stale:
        try:
            libc.umount2(point, libc.MNT_DETACH | UMOUNT_NOFOLLOW, what="stale box unmount")
            detached += 1
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOENT):
                logger.warning("stale box mount not detached: %s", exc)
    try:
        boxes_fd = hostfs.open_directory(str(boxes))
    except FileNotFoundError:
        return detached
    try:
        for name in os.listdir(boxes_fd):
            if name.isdigit():
                _remove_mount_point(boxes_fd, name)
    finally:
        os.close(boxes_fd)
    if detached:
        logger.info("detached %d stale box mounts", detached)
    return detached
