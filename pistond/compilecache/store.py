"""The compile cache's directory: entries on disk, their index, the size bound and LRU eviction.

Layout under ``<data>/compile-cache/`` (root's, mode 0700, never bound into a sandbox)::

    tmp/                      entries being written (emptied at start)
    <runtime id>/runtime.json the runtime's language, version, package and identity
    <runtime id>/<key>        one entry (mode 0600), see pistond.compilecache.entry

Each runtime (language, version, package and installed identity) has a directory of its own,
so entries are never shared across runtimes and an uninstall removes its runtimes' directories
whole. An entry is written to ``tmp/`` and renamed into place, so a reader sees a whole file or
none; its hash is checked on every read. The least recently used entry (by modification time,
which a hit refreshes) is evicted first; the index is rebuilt from the directory at start, so
entries survive restarts. Only the daemon's thread of control touches this directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import tempfile
from collections import OrderedDict
from typing import TYPE_CHECKING, Final

import attrs

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from pistond.runtimes import Runtime

logger = logging.getLogger(__name__)

TMP: Final = "tmp"
RUNTIME_FILE: Final = "runtime.json"
_KEY: Final = re.compile(r"[0-9a-f]{64}")


@attrs.frozen
class RuntimeRef:
    """The runtime an entry belongs to, as its directory records it."""

    language: str
    version: str
    package: str | None
    identity: str

    @classmethod
    def of(cls, runtime: Runtime) -> RuntimeRef | None:
        """The reference of ``runtime``; None for one without an identity (never cached)."""
        if runtime.identity is None:
            return None
        return cls(runtime.language, runtime.version, runtime.package, runtime.identity)

    @property
    def directory_name(self) -> str:
        """The runtime's directory in the store."""
        text = json.dumps(attrs.astuple(self))
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def belongs_to(self, package: str, version: str) -> bool:
        """Whether this runtime is one of package ``package`` at ``version``."""
        return (self.package or self.language) == package and self.version == version


@attrs.define
class _Indexed:
    runtime: str
    """The runtime's directory name."""
    size: int


@attrs.define(eq=False)
class CacheStore:
    """The entries under ``root``, at most ``max_bytes`` of them in all.

    Not thread-safe: the cache calls it from one task at a time (file reads and writes of big
    entries go to a worker thread, index changes never do).
    """

    root: Path
    max_bytes: int
    _index: OrderedDict[str, _Indexed] = attrs.field(factory=OrderedDict)
    """Every entry, least recently used first."""
    _runtimes: dict[str, RuntimeRef] = attrs.field(factory=dict)
    _removed: set[str] = attrs.field(factory=set)
    """Runtime directories removed by an uninstall: an entry written for one meanwhile (in a
    worker thread) is deleted instead of indexed."""
    size: int = 0
    """Bytes of every entry on disk."""
    evictions: int = 0

    @property
    def entries(self) -> int:
        """How many entries the store holds."""
        return len(self._index)

    def size_of(self, key: str) -> int | None:
        """The size of entry ``key`` on disk; None when the store has no such entry."""
        indexed = self._index.get(key)
        return None if indexed is None else indexed.size

    def open(self, runtimes: Iterable[Runtime]) -> None:
        """Make or check the directory, drop what no installed runtime owns, index the rest.

        Raises:
            OSError: the directory cannot be made, or is not root's own (a link, or owned by
                another user): the cache must then stay off.
        """
        self.root.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            self.root.mkdir(mode=0o700)
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            info = os.fstat(fd)
            if info.st_uid != os.geteuid():
                raise OSError(f"{self.root} belongs to uid {info.st_uid}, not to the daemon")
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)
        _remove(self.root / TMP)
        (self.root / TMP).mkdir(mode=0o700)
        current = {ref.directory_name: ref for ref in map(RuntimeRef.of, runtimes) if ref}
        found: list[tuple[int, str, _Indexed]] = []
        for directory in sorted(self.root.iterdir()):
            if directory.name == TMP:
                continue
            ref = current.get(directory.name)
            if ref is None or _read_runtime(directory) != ref:
                _remove(directory)
                continue
            self._runtimes[directory.name] = ref
            for path in directory.iterdir():
                if not _KEY.fullmatch(path.name):
                    continue
                info = path.lstat()
                if not stat.S_ISREG(info.st_mode):
                    _remove(path)
                    continue
                found.append((info.st_mtime_ns, path.name, _Indexed(directory.name, info.st_size)))
        for _, key, indexed in sorted(found, key=lambda item: (item[0], item[1])):
            self._index[key] = indexed
            self.size += indexed.size
        self.evict()
        logger.info("compile cache: %d entries, %d bytes", len(self._index), self.size)

    def path(self, key: str) -> Path | None:
        """The file of entry ``key``; None when the store has no such entry."""
        indexed = self._index.get(key)
        if indexed is None:
            return None
        return self.root / indexed.runtime / key

    def touch(self, key: str) -> None:
        """Mark ``key`` as just used (here and on disk, so the order survives a restart)."""
        path = self.path(key)
        if path is None:
            return
        self._index.move_to_end(key)
        with contextlib.suppress(OSError):
            os.utime(path)

    def reserve(self, runtime: RuntimeRef) -> None:
        """Register ``runtime`` before one of its entries is written (so that an uninstall
        during the write removes what it writes)."""
        self._runtimes.setdefault(runtime.directory_name, runtime)

    def write(self, runtime: RuntimeRef, key: str, data: bytes) -> None:
        """Write entry ``key`` of ``runtime`` whole (tmp file, then rename); safe in a thread
        (after :meth:`reserve`).

        Raises:
            OSError: the entry could not be written.
        """
        directory = self.root / runtime.directory_name
        if not directory.is_dir():
            directory.mkdir(mode=0o700, exist_ok=True)
            _write_atomically(self.root / TMP, directory / RUNTIME_FILE, _runtime_json(runtime))
        _write_atomically(self.root / TMP, directory / key, data)

    def add(self, runtime: RuntimeRef, key: str, size: int) -> list[str]:
        """Index entry ``key`` (just written) and evict to the bound; the evicted keys."""
        name = runtime.directory_name
        if name in self._removed:
            _remove(self.root / name)
            return []
        old = self._index.pop(key, None)
        if old is not None:
            self.size -= old.size
        self._index[key] = _Indexed(name, size)
        self.size += size
        return self.evict(keep=key)

    def evict(self, keep: str | None = None) -> list[str]:
        """Remove least recently used entries until the store fits its bound."""
        evicted: list[str] = []
        while self.size > self.max_bytes and self._index:
            key = next(iter(self._index))
            if key == keep:
                self._index.move_to_end(key)
                if len(self._index) == 1:
                    break
                continue
            self.discard(key)
            self.evictions += 1
            evicted.append(key)
        return evicted

    def discard(self, key: str) -> None:
        """Forget entry ``key`` and delete its file (a corrupt or evicted entry)."""
        path = self.path(key)
        indexed = self._index.pop(key, None)
        if indexed is not None:
            self.size -= indexed.size
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def remove_package(self, package: str, version: str) -> int:
        """Delete every entry of the runtimes of ``package`` at ``version``; how many."""
        names = {name for name, ref in self._runtimes.items() if ref.belongs_to(package, version)}
        doomed = [key for key, indexed in self._index.items() if indexed.runtime in names]
        for key in doomed:
            indexed = self._index.pop(key)
            self.size -= indexed.size
        for name in names:
            del self._runtimes[name]
            self._removed.add(name)
            _remove(self.root / name)
        return len(doomed)


def _runtime_json(runtime: RuntimeRef) -> bytes:
    return json.dumps(attrs.asdict(runtime), sort_keys=True).encode()


def _read_runtime(directory: Path) -> RuntimeRef | None:
    try:
        data = json.loads((directory / RUNTIME_FILE).read_bytes())
        return RuntimeRef(**data)
    except (OSError, ValueError, TypeError):
        return None


def _write_atomically(tmp: Path, path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a private file in ``tmp`` and a rename."""
    fd, name = tempfile.mkstemp(dir=tmp, prefix="entry-")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.rename(name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise


def _remove(path: Path) -> None:
    """Delete a file or a whole directory of the store (the daemon's own; links not followed)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("compile cache: %s not removed: %s", path.name, exc.strerror)
