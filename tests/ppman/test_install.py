"""Index installs and uninstalls: pack, publish an index, install by sha256, remove atomically."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from pistond.errors import PackageError
from pistond.ppman.build import Builder
from pistond.ppman.index import IndexEntry, sha256_file
from pistond.ppman.install import install_from_index, uninstall
from pistond.ppman.layout import PackageLayout
from pistond.ppman.pack import pack
from pistond.ppman.recipes import load_recipe

pytestmark = pytest.mark.usefixtures("needs_jail")


def test_install_packed_package_from_index(
    tmp_path: Path, recipe: Callable[..., Path], host_bash: str
) -> None:
    """A packed package installs on another data directory from its index line, .env recomputed."""
    source = recipe(tmp_path / "recipes", "bash", "host", host_bash)
    built = Builder(tmp_path / "a", lambda _l: None).build(load_recipe(source), "5.2.15")
    archive, entry = pack(built, tmp_path / "served", (tmp_path / "served").as_uri())
    assert archive.name == "bash-5.2.15.pkg.tar.gz"
    assert entry.line() == f"bash,5.2.15,{sha256_file(archive)},{archive.as_uri()}"
    lines: list[str] = []
    layout = install_from_index(tmp_path / "b", entry, lines.append)
    assert layout.is_installed()
    assert layout.env_file.read_text() == built.env_file.read_text()
    assert "checksum verified; extracting" in lines
    with pytest.raises(PackageError, match="Already installed"):
        install_from_index(tmp_path / "b", entry, lines.append)
    uninstall(tmp_path / "b", layout)
    assert not (tmp_path / "b" / "bash").exists()
    with pytest.raises(PackageError, match="is not installed"):
        uninstall(tmp_path / "b", layout)


def test_install_wrong_sha256_leaves_nothing(tmp_path: Path) -> None:
    """A tarball whose sha256 differs from the index is refused before extraction."""
    archive = tmp_path / "x-1.0.0.pkg.tar.gz"
    archive.write_bytes(b"not even a tarball")
    entry = IndexEntry("x", "1.0.0", "0" * 64, archive.as_uri())
    with pytest.raises(PackageError, match=r"^Checksum miss-match want: 0{64} got: "):
        install_from_index(tmp_path / "data", entry, lambda _l: None)
    assert not (tmp_path / "data" / "x").exists()
    assert list((tmp_path / "data" / ".build").iterdir()) == []


def test_install_escaping_link_refused(tmp_path: Path) -> None:
    """An archive with a link escaping the package is refused and leaves nothing."""
    archive = tmp_path / "x-1.0.0.pkg.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        link = tarfile.TarInfo("evil")
        link.type = tarfile.SYMTYPE
        link.linkname = "../../../etc"
        tar.addfile(link)
        data = b"{}"
        member = tarfile.TarInfo("metadata.json")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    entry = IndexEntry("x", "1.0.0", sha256_file(archive), archive.as_uri())
    with pytest.raises(PackageError, match="points outside"):
        install_from_index(tmp_path / "data", entry, lambda _l: None)
    assert not (tmp_path / "data" / "x").exists()
    assert list((tmp_path / "data" / ".build").iterdir()) == []


def test_install_metadata_must_match_entry(
    tmp_path: Path, recipe: Callable[..., Path], host_bash: str
) -> None:
    """An archive whose metadata names another package or version is refused."""
    source = recipe(tmp_path / "recipes", "bash", "host", host_bash)
    built = Builder(tmp_path / "a", lambda _l: None).build(load_recipe(source), "5.2.15")
    archive, entry = pack(built, tmp_path / "served", "file:///unused")
    lying = IndexEntry("bash", "9.9.9", entry.sha256, archive.as_uri())
    with pytest.raises(PackageError, match=r"holds bash-5\.2\.15, not bash-9\.9\.9"):
        install_from_index(tmp_path / "b", lying, lambda _l: None)
    assert not PackageLayout.of(tmp_path / "b", "bash", "9.9.9").directory.exists()
