"""Piston index: parsing, caching, downloads verified by sha256 before use."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import pytest

from pistond.errors import PackageError
from pistond.ppman.index import IndexCache, IndexEntry, download, fetch_index, parse_index

if TYPE_CHECKING:
    from pathlib import Path

SHA = "a" * 64


def test_index_parse_lines() -> None:
    """language,version,sha256,url lines parse; blank and malformed lines are skipped."""
    text = (
        f"python,3.12.0,{SHA},https://example.invalid/python-3.12.0.pkg.tar.gz\n\n"
        "broken line\n"
        f"gcc,10.2,{SHA},https://x/y\n"
        f"node,20.11.1,{SHA.upper()},file:///srv/node.pkg.tar.gz\n"
        f"evil,1.0.0,{SHA},ftp://x/y\n"
    )
    assert parse_index(text) == [
        IndexEntry("python", "3.12.0", SHA, "https://example.invalid/python-3.12.0.pkg.tar.gz"),
        IndexEntry("node", "20.11.1", SHA, "file:///srv/node.pkg.tar.gz"),
    ]
    assert parse_index(text)[0].line().startswith("python,3.12.0,")


def test_index_fetch_file_url_and_cache(tmp_path: Path) -> None:
    """A file:// index is fetched and cached; an unreachable one is left out."""
    index = tmp_path / "index"
    index.write_text(f"lua,5.4.4,{SHA},file:///srv/lua.pkg.tar.gz\n")
    assert [e.language for e in fetch_index(index.as_uri())] == ["lua"]
    cache = IndexCache(max_age=3600)
    assert len(cache.get([index.as_uri(), (tmp_path / "missing").as_uri()])) == 1
    index.write_text("")
    assert len(cache.get([index.as_uri()])) == 1
    cache.clear()
    assert cache.get([index.as_uri()]) == []


def test_index_download_wrong_sha256_refused(tmp_path: Path) -> None:
    """A checksum mismatch is refused with Piston's message and leaves no file."""
    archive = tmp_path / "pkg.tar.gz"
    archive.write_bytes(b"payload")
    actual = hashlib.sha256(b"payload").hexdigest()
    target = tmp_path / "download"
    with pytest.raises(PackageError) as caught:
        download(archive.as_uri(), target, SHA)
    assert caught.value.message == f"Checksum miss-match want: {SHA} got: {actual}"
    assert not target.exists()
    download(archive.as_uri(), target, actual)
    assert target.read_bytes() == b"payload"


def test_index_download_errors_hide_paths(tmp_path: Path) -> None:
    """A failed download names the URL without credentials and removes the partial file."""
    target = tmp_path / "download"
    with pytest.raises(PackageError, match=r"cannot fetch file:///nonexistent/pkg\.tar\.gz"):
        download("file:///nonexistent/pkg.tar.gz", target, SHA)
    with pytest.raises(PackageError, match="unsupported URL scheme"):
        download("ftp://user:secret@host/x", target, SHA)
    assert not target.exists()
