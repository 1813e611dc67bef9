"""hostfs: box contents are reached beneath a directory fd and no link is ever followed."""

from __future__ import annotations

import errno
import os
import socket
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


def _tree(fd: int, **bounds: int) -> hostfs.BoxTree:
    return hostfs.read_tree(
        fd, max_entries=bounds.get("entries", 100), max_bytes=bounds.get("bytes", 1 << 20)
    )


def test_read_tree_keeps_files_dirs_and_links_never_what_links_point_to(
    box: tuple[Path, int], canary: Path
) -> None:
    """Files (content, mode, mtime), directories and links come back in name order; a link's
    target is kept as text and never read, even where it points at a host file."""
    root, fd = box
    (root / "a.out").write_bytes(b"\x7fELF")
    (root / "a.out").chmod(0o755)
    os.utime(root / "a.out", ns=(1_000_000_000, 1_000_000_000))
    (root / "lib").mkdir(mode=0o750)
    (root / "lib" / "x.o").write_bytes(b"obj")
    (root / "leak").symlink_to(canary)
    (root / "lib" / "up").symlink_to("../a.out")
    os.chmod(root, 0o711)
    tree = _tree(fd)
    assert tree.mode == 0o711
    assert [(e.path, e.kind, e.mode, e.content) for e in tree.entries] == [
        ("a.out", hostfs.EntryKind.FILE, 0o755, b"\x7fELF"),
        ("leak", hostfs.EntryKind.SYMLINK, 0o777, os.fsencode(canary)),
        ("lib", hostfs.EntryKind.DIRECTORY, 0o750, b""),
        ("lib/up", hostfs.EntryKind.SYMLINK, 0o777, b"../a.out"),
        ("lib/x.o", hostfs.EntryKind.FILE, 0o644, b"obj"),
    ]
    assert tree.entries[0].mtime_ns == 1_000_000_000
    assert b"host secret" not in b"".join(entry.content for entry in tree.entries)


def test_read_tree_leaves_out_special_files_and_setid_bits(box: tuple[Path, int]) -> None:
    """FIFOs and sockets are left out (never opened: a FIFO would block); set-id bits dropped."""
    root, fd = box
    os.mkfifo(root / "fifo")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(root / "sock"))
        (root / "suid").write_bytes(b"x")
        (root / "suid").chmod(0o4755)
        tree = _tree(fd)
    assert [(entry.path, entry.mode) for entry in tree.entries] == [("suid", 0o755)]


@pytest.mark.parametrize(
    ("bounds", "layout"),
    [
        ({"entries": 2}, ["a", "b", "c"]),
        ({"bytes": 5}, ["big"]),
    ],
    ids=["entries", "bytes"],
)
def test_read_tree_refuses_more_than_its_bounds(
    box: tuple[Path, int], bounds: dict[str, int], layout: list[str]
) -> None:
    """A tree with more entries or bytes than allowed raises TreeTooLarge."""
    root, fd = box
    for name in layout:
        (root / name).write_bytes(b"123456")
    with pytest.raises(hostfs.TreeTooLarge):
        _tree(fd, **bounds)


def test_read_tree_refuses_deep_nesting_and_skips_what_it_is_told(box: tuple[Path, int]) -> None:
    """More than 64 levels raise TreeTooLarge; skip() leaves entries out, directories whole."""
    root, fd = box
    deep = root.joinpath(*["d"] * 65)
    deep.mkdir(parents=True)
    with pytest.raises(hostfs.TreeTooLarge, match="deeply"):
        _tree(fd)
    (root / "keep").write_bytes(b"k")
    (root / "x.o").write_bytes(b"o")
    tree = hostfs.read_tree(
        fd,
        max_entries=10,
        max_bytes=10,
        skip=lambda path, is_directory: path == "d" or path.endswith(".o"),
    )
    assert [entry.path for entry in tree.entries] == ["keep"]


def test_write_tree_restores_a_read_tree(box: tuple[Path, int], tmp_path: Path) -> None:
    """write_tree recreates files (content, mode, mtime), directories and links exactly."""
    root, fd = box
    (root / "bin").mkdir()
    (root / "bin" / "prog").write_bytes(b"#!/bin/sh\n")
    (root / "bin" / "prog").chmod(0o700)
    os.utime(root / "bin" / "prog", ns=(5, 5))
    (root / "link").symlink_to("/etc/shadow")
    tree = _tree(fd)
    target = tmp_path / "restored"
    target.mkdir()
    with hostfs.opened_fd(hostfs.open_directory(str(target))) as out:
        hostfs.write_tree(out, tree, uid=UID, gid=GID)
        assert _tree(out) == tree
    assert os.readlink(target / "link") == "/etc/shadow"
    assert (target / "bin" / "prog").stat().st_mtime_ns == 5


@pytest.mark.parametrize("path", ["../escape", "/abs", "a//b", ""])
def test_write_tree_refuses_unsafe_paths(box: tuple[Path, int], path: str) -> None:
    """A tree entry whose path leaves the directory is refused before anything is made."""
    _, fd = box
    entry = hostfs.TreeEntry(path, hostfs.EntryKind.FILE, 0o644, 0, b"x")
    with pytest.raises(SandboxError):
        hostfs.write_tree(fd, hostfs.BoxTree(0o700, (entry,)), uid=UID, gid=GID)


def test_write_tree_never_follows_a_link_it_made(
    box: tuple[Path, int], tmp_path: Path, resolver: bool
) -> None:
    """An entry beneath a link the tree itself holds is refused; nothing lands outside."""
    _, fd = box
    outside = tmp_path / "outside"
    outside.mkdir()
    tree = hostfs.BoxTree(
        0o700,
        (
            hostfs.TreeEntry("dir", hostfs.EntryKind.SYMLINK, 0o777, 0, os.fsencode(outside)),
            hostfs.TreeEntry("dir/planted", hostfs.EntryKind.FILE, 0o644, 0, b"x"),
        ),
    )
    with pytest.raises(SandboxError, match="could not be restored"):
        hostfs.write_tree(fd, tree, uid=UID, gid=GID)
    assert list(outside.iterdir()) == []


def test_open_in_root_follows_links_as_the_sandbox_would(tmp_path: Path) -> None:
    """An absolute link target and ``..`` resolve inside the root; the host's file of the same
    name is never what opens."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "name").write_text("inside")
    (tmp_path / "name").write_text("host")
    (root / "abs").symlink_to("/etc/name")
    (root / "up").symlink_to("../../../etc/name")
    (root / "escape").symlink_to(str(tmp_path / "name"))
    for path in ("/abs", "up", "/etc/../etc/name"):
        fd = hostfs.open_in_root(str(root), path)
        assert fd is not None
        with os.fdopen(fd) as file:
            assert file.read() == "inside"
    with pytest.raises(FileNotFoundError):
        hostfs.open_in_root(str(root), "/escape")
