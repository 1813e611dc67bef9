"""Safe extraction of package tarballs: nothing escapes, nothing special, no set-user-ID."""

from __future__ import annotations

import io
import stat
import tarfile
from pathlib import Path

import pytest

from pistond.errors import PackageError
from pistond.ppman.archive import create, extract


def make_tar(path: Path, members: list[tarfile.TarInfo], data: bytes = b"x") -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for member in members:
            if member.isreg():
                member.size = len(data)
                archive.addfile(member, io.BytesIO(data))
            else:
                archive.addfile(member)
    return path


def info(
    name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644
) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = link
    member.mode = mode
    return member


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        ([info("/etc/passwd")], "absolute"),
        ([info("../outside")], "escapes"),
        ([info("a/../../outside")], "escapes"),
        ([info("escape", tarfile.SYMTYPE, "../../etc")], "points outside"),
        ([info("abs", tarfile.SYMTYPE, "/etc/passwd")], "points outside"),
        ([info("root/x", tarfile.SYMTYPE, "/../../etc")], "points outside"),
        ([info("root/x", tarfile.SYMTYPE, "../../etc")], "points outside"),
        ([info("hard", tarfile.LNKTYPE, "/etc/shadow")], "absolute"),
        ([info("hard", tarfile.LNKTYPE, "missing")], "does not name an earlier file"),
        ([info("dev", tarfile.CHRTYPE)], "device"),
        ([info("fifo", tarfile.FIFOTYPE)], "device"),
        ([info("a"), info("a")], "appears twice"),
        ([info("root/etc", tarfile.SYMTYPE, "/usr"), info("root/etc/passwd")], "beneath a link"),
    ],
)
def test_archive_unsafe_members_refused(
    tmp_path: Path, members: list[tarfile.TarInfo], reason: str
) -> None:
    """Each unsafe member refuses the whole archive before anything is written."""
    destination = tmp_path / "out"
    destination.mkdir()
    archive = make_tar(tmp_path / "pkg.tar.gz", members)
    with pytest.raises(PackageError, match=reason):
        extract(archive, destination)
    assert list(destination.iterdir()) == []


def test_archive_root_symlinks_and_modes(tmp_path: Path) -> None:
    """Absolute links inside root/ are kept (the sandbox reads them in the root); setuid drops."""
    destination = tmp_path / "out"
    destination.mkdir()
    archive = make_tar(
        tmp_path / "pkg.tar.gz",
        [
            info("root", tarfile.DIRTYPE, mode=0o755),
            info("root/usr", tarfile.DIRTYPE, mode=0o755),
            info("root/usr/su", mode=0o4755),
            info("root/bin", tarfile.SYMTYPE, "usr"),
            info("root/sh", tarfile.SYMTYPE, "/usr/su"),
            info("root/usr/again", tarfile.LNKTYPE, "root/usr/su"),
            info("run", mode=0o755),
        ],
    )
    extract(archive, destination)
    su = destination / "root" / "usr" / "su"
    assert stat.S_IMODE(su.stat().st_mode) == 0o755
    assert (destination / "root" / "sh").readlink() == Path("/usr/su")
    assert (destination / "root" / "usr" / "again").stat().st_ino == su.stat().st_ino


def test_archive_create_roundtrip_skips_excluded(tmp_path: Path) -> None:
    """create() writes relative names, leaves out excluded entries, and extracts back."""
    source = tmp_path / "pkg"
    (source / "root" / "usr").mkdir(parents=True)
    (source / "run").write_text("echo\n")
    (source / ".env").write_text("PATH=/bin\n")
    (source / "root" / "usr" / "f").write_text("data")
    create(tmp_path / "p.tar.gz", source, exclude=(".env",))
    with tarfile.open(tmp_path / "p.tar.gz") as archive:
        names = sorted(archive.getnames())
    assert names == ["root", "root/usr", "root/usr/f", "run"]
    out = tmp_path / "out"
    out.mkdir()
    extract(tmp_path / "p.tar.gz", out)
    assert (out / "root" / "usr" / "f").read_text() == "data"
