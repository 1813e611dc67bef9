"""hostfs: box contents are reached beneath a directory fd and no link is ever followed."""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

import pytest

from pistond.errors import SandboxError
from pistond.sandbox import hostfs

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

UID = os.getuid()
GID = os.getgid()


@pytest.fixture
def box(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    root = tmp_path / "box"
    root.mkdir()
    fd = hostfs.open_directory(str(root))
    try:
        yield root, fd
    finally:
        os.close(fd)


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    path = tmp_path / "canary"
    path.write_bytes(b"host secret")
    path.chmod(0o600)
    return path


@pytest.fixture(params=[True, False], ids=["openat2", "walk"])
def resolver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run a test with openat2 and with the component-wise fallback."""
    if not request.param:
        monkeypatch.setattr(hostfs._openat2, "available", False)
    return bool(request.param)


@pytest.mark.parametrize(
    "name",
    ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/", "x\0y", ".", "a/" * 65 + "b", "x" * 256],
)
def test_split_name_rejects_unsafe_names(name: str) -> None:
    """Absolute, empty, '..', NUL, empty-component, too deep and too long names are refused."""
    with pytest.raises(SandboxError):
        hostfs.split_name(name)


def test_split_name_keeps_components() -> None:
    """A nested relative name splits into its components; '.' components are dropped."""
    assert hostfs.split_name("src/./main.c") == ("src", "main.c")


def test_write_new_file_creates_parents_owned(box: tuple[Path, int], resolver: bool) -> None:
    """A nested file is written with its parents, with the requested owner and modes."""
    root, fd = box
    hostfs.write_new_file(fd, "a/b/c.txt", b"data", uid=UID, gid=GID)
    assert (root / "a/b/c.txt").read_bytes() == b"data"
    assert (root / "a/b/c.txt").stat().st_mode & 0o777 == 0o644
    assert (root / "a").stat().st_mode & 0o777 == 0o755


def test_write_new_file_refuses_link_at_file(
    box: tuple[Path, int], canary: Path, resolver: bool
) -> None:
    """A symlink planted at the file's path is not followed: the canary is unchanged."""
    root, fd = box
    (root / "main.py").symlink_to(canary)
    before = canary.stat()
    with pytest.raises(SandboxError, match="already exists"):
        hostfs.write_new_file(fd, "main.py", b"evil", uid=UID, gid=GID)
    assert canary.read_bytes() == b"host secret"
    assert canary.stat().st_mtime_ns == before.st_mtime_ns


def test_write_new_file_refuses_link_at_parent(
    box: tuple[Path, int], tmp_path: Path, resolver: bool
) -> None:
    """A symlinked parent directory pointing outside is not followed."""
    root, fd = box
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "lib").symlink_to(outside)
    with pytest.raises(SandboxError, match=r"symbolic link|not a directory"):
        hostfs.write_new_file(fd, "lib/evil.py", b"evil", uid=UID, gid=GID)
    assert list(outside.iterdir()) == []


def test_write_new_file_refuses_dangling_link(
    box: tuple[Path, int], tmp_path: Path, resolver: bool
) -> None:
    """A dangling link is not followed into creating its target."""
    root, fd = box
    target = tmp_path / "created-by-attack"
    (root / "out").symlink_to(target)
    with pytest.raises(SandboxError):
        hostfs.write_new_file(fd, "out", b"evil", uid=UID, gid=GID)
    assert not target.exists()


def test_open_beneath_refuses_links_on_the_way(
    box: tuple[Path, int], tmp_path: Path, resolver: bool
) -> None:
    """Opening through a linked directory fails with ELOOP instead of leaving the box."""
    root, fd = box
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"s")
    (root / "d").symlink_to(outside)
    with pytest.raises(OSError, match=r"Not a directory|Too many levels") as caught:
        hostfs.open_beneath(fd, ("d", "secret"), os.O_RDONLY)
    assert caught.value.errno in (errno.ELOOP, errno.ENOTDIR)


def test_open_beneath_reads_inside(box: tuple[Path, int], resolver: bool) -> None:
    """A plain nested file inside the box opens normally."""
    root, fd = box
    (root / "d").mkdir()
    (root / "d/f").write_bytes(b"inside")
    with hostfs.opened_fd(hostfs.open_beneath(fd, ("d", "f"), os.O_RDONLY)) as file:
        assert os.read(file, 100) == b"inside"


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
def test_write_new_file_chowns_to_box_uid(box: tuple[Path, int]) -> None:
    """The file and the directories made for it belong to the box uid."""
    root, fd = box
    hostfs.write_new_file(fd, "pkg/mod.py", b"x", uid=60123, gid=60123)
    assert (root / "pkg/mod.py").stat().st_uid == 60123
    assert (root / "pkg").stat().st_gid == 60123
