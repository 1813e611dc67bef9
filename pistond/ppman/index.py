"""Piston's package index: ``language,version,sha256,url`` lines; fetching, caching, downloads.

URLs may be ``file://``, ``http://`` or ``https://``. Downloads are hashed while they stream to
disk and refused on a checksum mismatch before anything is extracted.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final

import attrs

from pistond.errors import PackageError
from pistond.ppman.metadata import NAME_PATTERN
from pistond.semver import parse_version

if TYPE_CHECKING:
    from collections.abc import Iterable

logger = logging.getLogger(__name__)

SCHEMES: Final = ("file", "http", "https")
FETCH_TIMEOUT: Final = 30
MAX_INDEX_SIZE: Final = 8 * 1024 * 1024
CHUNK: Final = 1024 * 1024
_SHA256: Final = re.compile(r"[0-9a-f]{64}")


@attrs.frozen
class IndexEntry:
    """One line of an index."""

    language: str
    """The package name."""
    version: str
    sha256: str
    url: str

    def line(self) -> str:
        """The index line for this entry."""
        return f"{self.language},{self.version},{self.sha256},{self.url}"


def parse_index(text: str, *, source: str = "index") -> list[IndexEntry]:
    """Parse index text; empty lines are skipped, malformed lines are logged and skipped."""
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = line.split(",", 3)
        if len(parts) != 4:
            logger.warning("%s:%d: not language,version,sha256,url; skipped", source, number)
            continue
        language, version, sha256, url = (part.strip() for part in parts)
        if (
            not NAME_PATTERN.fullmatch(language)
            or parse_version(version) is None
            or not _SHA256.fullmatch(sha256.lower())
            or urllib.parse.urlsplit(url).scheme not in SCHEMES
        ):
            logger.warning("%s:%d: invalid entry; skipped", source, number)
            continue
        entries.append(IndexEntry(language, version, sha256.lower(), url))
    return entries


def _open(url: str) -> BinaryIO:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise PackageError(f"unsupported URL scheme {scheme!r}")
    try:
        if scheme == "file":
            return Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path)).open("rb")
        response: BinaryIO = urllib.request.urlopen(url, timeout=FETCH_TIMEOUT)
        return response
    except OSError as exc:
        raise PackageError(f"cannot fetch {_redact(url)}: {_reason(exc)}") from None


def _redact(url: str) -> str:
    """The URL without credentials or query (safe to show to clients)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def _reason(exc: OSError) -> str:
    reason = getattr(exc, "reason", None) or exc.strerror or exc.__class__.__name__
    return str(reason)


def fetch_index(url: str) -> list[IndexEntry]:
    """Download and parse the index at ``url``.

    Raises:
        PackageError: the index cannot be fetched or is too large.
    """
    with _open(url) as stream:
        data = stream.read(MAX_INDEX_SIZE + 1)
    if len(data) > MAX_INDEX_SIZE:
        raise PackageError(f"index {_redact(url)} is larger than {MAX_INDEX_SIZE} bytes")
    return parse_index(data.decode("utf-8", "replace"), source=_redact(url))


@attrs.define(eq=False)
class IndexCache:
    """Indexes fetched at most once per ``max_age`` seconds (Piston refetches on every call)."""

    max_age: float = 60.0
    _entries: dict[str, tuple[float, list[IndexEntry]]] = attrs.field(factory=dict)

    def get(self, urls: Iterable[str]) -> list[IndexEntry]:
        """Entries of every index in ``urls``; an index that fails is logged and left out."""
        entries: list[IndexEntry] = []
        now = time.monotonic()
        for url in urls:
            cached = self._entries.get(url)
            if cached is None or now - cached[0] > self.max_age:
                try:
                    cached = (now, fetch_index(url))
                except PackageError as exc:
                    logger.warning("package index unavailable: %s", exc.message)
                    if cached is None:
                        continue
                self._entries[url] = cached
            entries.extend(cached[1])
        return entries

    def clear(self) -> None:
        """Forget every cached index."""
        self._entries.clear()


def download(url: str, destination: Path, sha256: str) -> None:
    """Stream ``url`` to ``destination``, then verify its sha256.

    Raises:
        PackageError: the download failed, or ``Checksum miss-match want: <expected> got:
            <actual>`` (Piston's text); the file is removed in both cases.
    """
    digest = hashlib.sha256()
    try:
        with _open(url) as stream, destination.open("xb") as out:
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except OSError as exc:
        destination.unlink(missing_ok=True)
        raise PackageError(f"cannot download {_redact(url)}: {_reason(exc)}") from None
    except PackageError:
        destination.unlink(missing_ok=True)
        raise
    actual = digest.hexdigest()
    if actual != sha256.lower():
        destination.unlink(missing_ok=True)
        raise PackageError(f"Checksum miss-match want: {sha256} got: {actual}")


def sha256_file(path: Path) -> str:
    """The sha256 of a file, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        shutil.copyfileobj(file, _Hasher(digest), CHUNK)
    return digest.hexdigest()


@attrs.define
class _Hasher:
    digest: hashlib._Hash

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return len(data)
