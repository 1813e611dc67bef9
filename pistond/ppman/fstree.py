"""Host-side file-tree operations of the builder; none of them follows a symlink.

Removal unmounts anything still mounted beneath a tree first and never crosses a mount point;
deduplication hard-links identical files across package roots.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

logger = logging.getLogger(__name__)

DEDUP_MIN_SIZE: Final = 4096
_CHUNK: Final = 1024 * 1024


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or beneath ``path``, deepest first."""
    prefix = os.path.realpath(path)
    points = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
            for line in mountinfo:
                point = line.split()[4].encode().decode("unicode_escape")
                if point == prefix or point.startswith(prefix + "/"):
                    points.append(point)
    except OSError:
        return []
    return sorted(points, key=len, reverse=True)


def remove_tree(path: Path) -> None:
    """Delete ``path`` recursively; detach mounts beneath it first; missing is fine.

    Raises:
        OSError: a mount beneath it cannot be detached (nothing is deleted then).
    """
    if not os.path.lexists(path):
        return
    for point in _mounts_under(path):
        result = subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)
        if result.returncode != 0:
            raise OSError(f"cannot unmount {point} before removing {path}")
    if path.is_symlink() or not path.is_dir():
        path.unlink()
        return
    device = path.lstat().st_dev

    def walk_error(function: object, name: str, exc_info: object) -> None:
        logger.warning("cannot remove %s", name)

    # rmtree never follows symlinks; the device check guards against a mount appearing late.
    for entry in path.iterdir():
        if entry.lstat().st_dev != device:
            raise OSError(f"{entry} is on another file system; not removed")
    shutil.rmtree(path, onerror=walk_error)


def tree_size(path: Path) -> int:
    """Bytes used by the regular files under ``path`` (each inode counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for entry in walk_files(path):
        info = entry.lstat()
        key = (info.st_dev, info.st_ino)
        if key not in seen:
            seen.add(key)
            total += info.st_size
    return total


def walk_files(path: Path) -> Iterator[Path]:
    """Regular files under ``path``, not following symlinks."""
    for directory, _dirs, files in os.walk(path, followlinks=False):
        for name in files:
            entry = Path(directory) / name
            if stat.S_ISREG(entry.lstat().st_mode):
                yield entry


def strip_special_bits(path: Path) -> int:
    """Drop set-user-ID and set-group-ID bits and remove device nodes under ``path``.

    Roots are mounted nosuid in the sandbox anyway; this keeps the data directory from holding
    set-user-ID root binaries a host user could run. Returns how many entries changed.
    """
    changed = 0
    for directory, dirs, files in os.walk(path, followlinks=False):
        for name in [*dirs, *files]:
            entry = os.path.join(directory, name)
            info = os.lstat(entry)
            if (
                stat.S_ISCHR(info.st_mode)
                or stat.S_ISBLK(info.st_mode)
                or stat.S_ISFIFO(info.st_mode)
                or stat.S_ISSOCK(info.st_mode)
            ):
                os.unlink(entry)
                changed += 1
            elif not stat.S_ISLNK(info.st_mode) and info.st_mode & (stat.S_ISUID | stat.S_ISGID):
                os.chmod(entry, stat.S_IMODE(info.st_mode) & ~(stat.S_ISUID | stat.S_ISGID))
                changed += 1
    return changed


def chown_tree(path: Path, uid: int, gid: int) -> None:
    """Give ``path`` and everything under it to ``uid``/``gid``; symlinks themselves, not targets.

    Raises:
        OSError: an entry could not be changed.
    """
    os.lchown(path, uid, gid)
    for directory, dirs, files in os.walk(path, followlinks=False):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(directory, name), uid, gid)


def hardlink_copy(source: Path, destination: Path) -> None:
    """Copy the tree ``source`` to ``destination`` with hard links for files (``cp -al``).

    Raises:
        OSError: the copy failed.
    """
    result = subprocess.run(
        ["cp", "-a", "--link", "--no-dereference", str(source), str(destination)],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise OSError(f"hard-linked copy failed: {result.stderr.decode(errors='replace').strip()}")


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _key(path: Path) -> tuple[int, int, int, int] | None:
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode) or info.st_size < DEDUP_MIN_SIZE:
        return None
    return (info.st_size, stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)


def deduplicate(new_root: Path, other_roots: Iterable[Path]) -> int:
    """Replace files of ``new_root`` by hard links to identical files in ``other_roots``.

    Files match on size, mode, owner and sha256 (at least 4 KiB; same file system only). Roots
    are read-only once published, so sharing inodes between them is safe. Returns the bytes
    saved.
    """
    device = new_root.lstat().st_dev
    wanted: dict[tuple[int, int, int, int], list[Path]] = {}
    for entry in walk_files(new_root):
        key = _key(entry)
        if key is not None:
            wanted.setdefault(key, []).append(entry)
    if not wanted:
        return 0
    known: dict[tuple[tuple[int, int, int, int], str], Path] = {}
    for root in other_roots:
        if not root.is_dir() or root.lstat().st_dev != device:
            continue
        for entry in walk_files(root):
            key = _key(entry)
            if key in wanted:
                known.setdefault((key, _digest(entry)), entry)
    known_keys = {key for key, _digest_hex in known}
    saved = 0
    for key, entries in wanted.items():
        if key not in known_keys:
            continue
        for entry in entries:
            original = known.get((key, _digest(entry)))
            if original is None or original.lstat().st_ino == entry.lstat().st_ino:
                continue
            temporary = entry.with_name(f".{entry.name}.dedup")
            os.link(original, temporary)
            os.replace(temporary, entry)
            saved += key[0]
    return saved
