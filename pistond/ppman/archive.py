"""Package tarballs: creating them, and extracting untrusted ones safely.

Extraction checks every member before writing anything: names are relative and stay inside
(no ``..``, no absolute paths, no duplicates); only regular files, directories, symlinks and
hard links; symlinks resolve inside the archive (an absolute target is allowed under ``root/``
only, where it is read relative to that root filesystem, as the sandbox sees it); no member
lies beneath a link; hard links name an earlier regular file. Every member becomes owned by
root, and set-user-ID and set-group-ID bits are dropped.
"""

from __future__ import annotations

import posixpath
import stat
import tarfile
from typing import TYPE_CHECKING, Final

from pistond.errors import PackageError

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

ROOT_PREFIX: Final = "root"
_MODE_MASK: Final = 0o1777


def _clean(name: str) -> str:
    """The member name normalised, or raise if it is absolute, empty or climbs out."""
    if name.startswith("/") or "\\" in name or "\0" in name:
        raise PackageError(f"archive member {name!r} has an absolute or invalid path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        raise PackageError(f"archive member {name!r} escapes the package directory")
    return "/".join(parts)


def _inside(path: str, top: str) -> bool:
    return top in ("", path) or path.startswith(top + "/")


def _check_symlink(name: str, target: str) -> None:
    if not target or "\0" in target:
        raise PackageError(f"archive link {name!r} has an empty target")
    in_root = _inside(name, ROOT_PREFIX) and name != ROOT_PREFIX
    if target.startswith("/"):
        if not in_root:
            raise PackageError(f"archive link {name!r} points outside the package")
        resolved = posixpath.normpath(ROOT_PREFIX + "/" + target.lstrip("/"))
        top = ROOT_PREFIX
    else:
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
        top = ROOT_PREFIX if in_root else ""
    if resolved.startswith("../") or resolved == ".." or not _inside(resolved, top):
        raise PackageError(f"archive link {name!r} points outside the package")


def checked_members(archive: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """The members of ``archive``, normalised, after every safety check.

    Raises:
        PackageError: a member is unsafe; nothing has been written.
    """
    members = archive.getmembers()
    names: dict[str, tarfile.TarInfo] = {}
    links: set[str] = set()
    for member in members:
        name = _clean(member.name)
        if name in names:
            raise PackageError(f"archive member {name!r} appears twice")
        if member.issym():
            _check_symlink(name, member.linkname)
            links.add(name)
        elif member.islnk():
            target = _clean(member.linkname)
            if target not in names or not names[target].isreg():
                raise PackageError(f"archive hard link {name!r} does not name an earlier file")
            member.linkname = target
            links.add(name)
        elif not (member.isreg() or member.isdir()):
            raise PackageError(f"archive member {name!r} is a device, FIFO or other special file")
        member.name = name
        member.mode = member.mode & _MODE_MASK & ~(stat.S_ISUID | stat.S_ISGID)
        if member.islnk():
            # Attributes of a hard link member land on the shared inode: keep the file's.
            member.mode = names[member.linkname].mode
        member.uid = member.gid = 0
        member.uname = member.gname = "root"
        names[name] = member
    for name in names:
        parts = name.split("/")
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in links:
                raise PackageError(f"archive member {name!r} lies beneath a link")
    return members


def extract(path: Path, destination: Path) -> None:
    """Extract the gzip tarball ``path`` into the empty directory ``destination``.

    Raises:
        PackageError: the archive is unreadable or unsafe (see the module docstring).
    """
    try:
        with tarfile.open(path, "r:gz") as archive:
            members = checked_members(archive)
            archive.extractall(destination, members=members, numeric_owner=True)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise PackageError(f"cannot extract package archive: {exc.__class__.__name__}") from None


def create(path: Path, directory: Path, *, exclude: Iterable[str] = ()) -> None:
    """Write ``directory``'s contents to the gzip tarball ``path`` (names relative to it).

    Device nodes, FIFOs and sockets are left out; ``exclude`` names top-level entries to skip.
    """
    skipped = set(exclude)

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if (
            info.ischr()
            or info.isblk()
            or info.isfifo()
            or not (info.isreg() or info.isdir() or info.issym() or info.islnk())
        ):
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = int(info.mtime)
        return info

    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as archive:
        for child in sorted(directory.iterdir()):
            if child.name in skipped:
                continue
            archive.add(child, arcname=child.name, recursive=True, filter=keep)
