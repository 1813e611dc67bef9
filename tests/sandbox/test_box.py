"""box: a private capped tmpfs per job, written symlink-safely, torn down by unmount only."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from pistond.config import DaemonConfig
from pistond.errors import SandboxError
from pistond.models import SourceFile
from pistond.sandbox import box as boxmod
from pistond.sandbox import libc

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")

UID = 60_007


def _mounts() -> list[tuple[str, str]]:
    """(mount point, options) of every mount of this namespace."""
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        rows = [line.split() for line in info]
    return [(row[4], row[5] + "," + row[-1]) for row in rows]


def _content(path: Path) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def _mounted_under(path: Path) -> list[str]:
    prefix = str(path)
    return [point for point, _ in _mounts() if point.startswith(prefix)]


@pytest.fixture
def config(tmp_path: Path) -> Iterator[DaemonConfig]:
    config = DaemonConfig(data_directory=tmp_path / "data", disk_size=1024 * 1024, disk_inodes=64)
    yield config
    for point in reversed(_mounted_under(config.data_directory)):
        libc.umount2(point, libc.MNT_DETACH)


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    path = tmp_path / "canary"
    path.write_bytes(b"host secret")
    return path


async def test_open_box_mounts_capped_tmpfs(config: DaemonConfig) -> None:
    """The box is a nosuid, nodev tmpfs with the configured size and inodes, root 0755."""
    async with boxmod.open_box(config, 7, UID) as box:
        options = dict(_mounts())[str(box.path)]
        assert "nosuid" in options
        assert "nodev" in options
        assert "size=1024k" in options
        assert "nr_inodes=64" in options
        stat = box.path.stat()
        assert (stat.st_uid, stat.st_mode & 0o7777) == (0, 0o755)
        sub = box.submission_path.stat()
        assert (sub.st_uid, sub.st_gid, sub.st_mode & 0o7777) == (UID, UID, 0o700)
    assert _mounted_under(config.data_directory) == []
    # The slot's mount point stays for its next job: an empty directory of root's.
    point = config.data_directory / "boxes" / "7"
    assert list(point.iterdir()) == []
    assert (point.stat().st_uid, point.stat().st_mode & 0o7777) == (0, 0o755)


async def test_box_write_files_owned_by_box_uid(config: DaemonConfig) -> None:
    """Submitted files land in submission/, nested ones too, owned by the box uid."""
    files = [SourceFile("main.py", b"print(1)", True), SourceFile("lib/util.py", b"x=1", True)]
    async with boxmod.open_box(config, 0, UID) as box:
        box.write_files(files)
        assert (box.submission_path / "lib/util.py").read_bytes() == b"x=1"
        assert (box.submission_path / "main.py").stat().st_uid == UID
        assert (box.submission_path / "lib").stat().st_uid == UID


async def test_box_write_files_ignores_planted_links(
    config: DaemonConfig, canary: Path, tmp_path: Path
) -> None:
    """Links planted at a file's path or its parent are never followed: the canary holds."""
    outside = tmp_path / "outside"
    outside.mkdir()
    async with boxmod.open_box(config, 1, UID) as box:
        (box.submission_path / "main.py").symlink_to(canary)
        (box.submission_path / "lib").symlink_to(outside)
        with pytest.raises(SandboxError):
            box.write_files([SourceFile("main.py", b"evil", True)])
        with pytest.raises(SandboxError):
            box.write_files([SourceFile("lib/x.py", b"evil", True)])
    assert _content(canary) == b"host secret"
    assert list(outside.iterdir()) == []


async def test_box_write_files_stops_at_disk_size(config: DaemonConfig) -> None:
    """A submission larger than the box fails with a clear error, not a host-side effect."""
    async with boxmod.open_box(config, 2, UID) as box:
        with pytest.raises(SandboxError, match="box is full"):
            box.write_files([SourceFile("big.bin", b"\0" * (2 * 1024 * 1024), False)])


async def test_box_teardown_does_not_walk_job_trees(
    config: DaemonConfig, tmp_path: Path, canary: Path
) -> None:
    """Deep trees and links to outside are discarded with the tmpfs; their targets survive."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_bytes(b"keep")
    async with boxmod.open_box(config, 3, UID) as box:
        deep = box.submission_path
        for _ in range(40):
            deep = deep / "d"
        deep.mkdir(parents=True)
        (deep / "escape").symlink_to(outside)
        (box.submission_path / "canary").symlink_to(canary)
        (box.submission_path / "root").symlink_to("/")
    assert _content(outside / "keep") == b"keep"
    assert _content(canary) == b"host secret"
    assert _mounted_under(config.data_directory) == []
    assert list((config.data_directory / "boxes" / "3").iterdir()) == []


async def test_box_teardown_with_open_file_in_box(config: DaemonConfig) -> None:
    """A busy box is still detached at once (lazy unmount), leaving its mount point empty."""
    async with boxmod.open_box(config, 4, UID) as box:
        file = (box.submission_path / "held").open("wb")
    try:
        assert _mounted_under(config.data_directory) == []
    finally:
        file.close()


def test_cleanup_stale_boxes_unmounts_leftovers(config: DaemonConfig) -> None:
    """Boxes left mounted by a previous daemon are detached and their mount points removed."""
    left = [boxmod.mount_box(config, slot, UID + slot) for slot in (5, 6)]
    for box in left:
        os.close(box._root_fd)
    # A second mount stacked on one point, as a crash mid-setup could leave.
    libc.mount("stale", str(left[0].path), "tmpfs", 0, "size=4k")
    assert len(_mounted_under(config.data_directory)) == 3
    assert boxmod.cleanup_stale_boxes(config) == 3
    assert _mounted_under(config.data_directory) == []
    assert list((config.data_directory / "boxes").iterdir()) == []


def test_mount_box_reuses_stale_mount_point(config: DaemonConfig) -> None:
    """Mounting a slot whose point is still mounted detaches the old tmpfs first."""
    first = boxmod.mount_box(config, 8, UID)
    (first.submission_path / "old").write_bytes(b"old")
    os.close(first._root_fd)
    second = boxmod.mount_box(config, 8, UID)
    try:
        assert not (second.submission_path / "old").exists()
        assert len(_mounted_under(config.data_directory)) == 1
    finally:
        boxmod.unmount_box(second)
    assert _mounted_under(config.data_directory) == []
