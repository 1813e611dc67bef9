"""The compile cache: a repeated program skips its compile stage, safely.

The job manager asks :meth:`CompileCache.claim` for a compile's key before it compiles. The
claim either holds a cached compile (its result and the box it left, restored into the new
job's box instead of the submitted files), or the right to compile: a compile that exits 0 with
status null is then handed back with :meth:`Claim.fulfil`, stored, and given at once to every
identical request that waited meanwhile (identical requests in flight compile once).

What makes this safe (docs/protocol.md, "Compile cache"):

- entries are written only here, from what a sandboxed compile left in its own box (read with
  :func:`pistond.sandbox.hostfs.read_tree`: bounded, beneath the box fd, links kept as links,
  special files left out), under the key the daemon computed from the request before the
  compile ran (:mod:`pistond.compilecache.key`): a job cannot choose or reach another key;
- they live under the data directory (root's, 0700), never inside or bound into a sandbox;
  a hit copies them into the new box, so a job changing its copy changes nothing here;
- every read checks the entry's SHA-256; a corrupt or truncated entry is deleted and is a miss;
- each runtime (installed identity included) has a directory of its own, removed whole when
  the package is uninstalled.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import attrs
import trio

from pistond.compilecache.entry import CachedCompile, CorruptEntry, decode, encode
from pistond.compilecache.key import compile_key
from pistond.compilecache.store import CacheStore, RuntimeRef
from pistond.models import CompileCacheStats

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable

    from pistond.config import DaemonConfig
    from pistond.runtimes import Runtime

__all__ = [
    "MAX_TREE_BYTES",
    "MAX_TREE_ENTRIES",
    "CachedCompile",
    "Claim",
    "CompileCache",
    "RuntimeRef",
    "compile_key",
]

logger = logging.getLogger(__name__)

MAX_TREE_BYTES: Final = 16 * 1024 * 1024
"""Most bytes (file contents and link targets) of a box kept after a compile; more: not cached."""
MAX_TREE_ENTRIES: Final = 10_000
"""Most files, directories and links of a box kept after a compile; more: not cached."""
INLINE_BYTES: Final = 256 * 1024
"""Entries up to this size are read and written without a worker thread (faster than the
hand-off); larger ones go to a thread so the daemon's loop never waits on the disk."""


@attrs.define(eq=False)
class _Flight:
    """A compile in progress that identical requests wait for."""

    done: trio.Event = attrs.field(factory=trio.Event)
    compiled: CachedCompile | None = None


@attrs.define(eq=False)
class Claim:
    """The outcome of :meth:`CompileCache.claim`: a cached compile, or the right to compile."""

    cached: CachedCompile | None
    """The compile to restore (a hit); None: compile, then :meth:`fulfil` on success."""
    _cache: CompileCache
    _key: str
    _runtime: RuntimeRef
    _flight: _Flight | None

    async def fulfil(self, compiled: CachedCompile) -> None:
        """Hand over a successful compile: identical requests waiting get it at once, and it
        is stored (unless it is larger than an entry may be). Storage failures are logged."""
        if self._flight is not None:
            self._flight.compiled = compiled
            self._flight.done.set()
        await self._cache.store(self._key, self._runtime, compiled)


@attrs.define(eq=False)
class CompileCache:
    """Compile results by key, on disk, within a size bound; counters for ``status``."""

    max_bytes: int
    """``PISTON_COMPILE_CACHE_SIZE``."""
    disk: CacheStore | None = None
    """The entries; None when the cache is off (size 0, or its directory is unusable)."""
    hits: int = 0
    misses: int = 0
    stores: int = 0
    corrupt: int = 0
    _flights: dict[str, _Flight] = attrs.field(factory=dict)

    @classmethod
    async def open(cls, config: DaemonConfig, runtimes: Iterable[Runtime]) -> CompileCache:
        """The cache of ``config`` with the entries a previous daemon left for ``runtimes``.

        Entries of runtimes no longer installed (or reinstalled) are deleted. A directory that
        cannot be used (not root's own, unwritable) is logged and leaves the cache off.
        """
        if config.compile_cache_size == 0:
            return cls(max_bytes=0)
        store = CacheStore(
            root=config.data_directory / "compile-cache", max_bytes=config.compile_cache_size
        )
        installed = list(runtimes)
        try:
            await trio.to_thread.run_sync(store.open, installed)
        except OSError as exc:
            logger.error("compile cache off: its directory cannot be used: %s", exc)
            return cls(max_bytes=config.compile_cache_size)
        return cls(max_bytes=config.compile_cache_size, disk=store)

    @property
    def enabled(self) -> bool:
        """Whether compiles are looked up and stored."""
        return self.disk is not None

    @asynccontextmanager
    async def claim(self, key: str, runtime: RuntimeRef) -> AsyncIterator[Claim]:
        """The cached compile of ``key``, or the right to compile it, for the block's length.

        While one request compiles ``key``, identical ones wait here and then get its result
        (a hit); if it fails (or is cancelled), each of them compiles on its own.
        """
        flight = self._flights.get(key)
        if flight is not None:
            await flight.done.wait()
            if flight.compiled is not None:
                self.hits += 1
                yield Claim(flight.compiled, self, key, runtime, None)
                return
            self.misses += 1
            yield Claim(None, self, key, runtime, None)
            return
        flight = _Flight()
        self._flights[key] = flight
        try:
            cached = await self._lookup(key)
            if cached is not None:
                self.hits += 1
                flight.compiled = cached
                flight.done.set()
                yield Claim(cached, self, key, runtime, None)
            else:
                self.misses += 1
                yield Claim(None, self, key, runtime, flight)
        finally:
            flight.done.set()
            if self._flights.get(key) is flight:
                del self._flights[key]

    async def _lookup(self, key: str) -> CachedCompile | None:
        store = self.disk
        if store is None:
            return None
        size, path = store.size_of(key), store.path(key)
        if size is None or path is None:
            return None
        try:
            if size <= INLINE_BYTES:
                data = path.read_bytes()
            else:
                data = await trio.to_thread.run_sync(path.read_bytes)
        except FileNotFoundError:
            store.discard(key)
            return None
        except OSError as exc:
            logger.warning("compile cache: entry %s unreadable: %s", key[:12], exc.strerror)
            return None
        try:
            compiled = decode(data, key)
        except CorruptEntry as exc:
            logger.warning("compile cache: entry %s dropped: %s", key[:12], exc)
            self.corrupt += 1
            store.discard(key)
            return None
        store.touch(key)
        return compiled

    async def store(self, key: str, runtime: RuntimeRef, compiled: CachedCompile) -> None:
        """Write the entry of ``key`` (unless the cache is off or the entry too large)."""
        store = self.disk
        if store is None:
            return
        description = {"language": runtime.language, "version": runtime.version}
        if compiled.tree.size > INLINE_BYTES:
            data = await trio.to_thread.run_sync(encode, key, description, compiled)
        else:
            data = encode(key, description, compiled)
        if len(data) > store.max_bytes // 4:
            logger.debug("compile cache: entry %s (%d bytes) too large", key[:12], len(data))
            return
        store.reserve(runtime)
        try:
            if len(data) > INLINE_BYTES:
                await trio.to_thread.run_sync(store.write, runtime, key, data)
            else:
                store.write(runtime, key, data)
        except OSError as exc:
            logger.warning("compile cache: entry %s not written: %s", key[:12], exc)
            return
        self.stores += 1
        evicted = store.add(runtime, key, len(data))
        if evicted:
            logger.debug("compile cache: %d entries evicted", len(evicted))

    def remove_package(self, package: str, version: str) -> None:
        """Delete the entries of every runtime of ``package`` at ``version`` (uninstalled)."""
        if self.disk is None:
            return
        removed = self.disk.remove_package(package, version)
        logger.info("compile cache: %d entries of %s-%s removed", removed, package, version)

    def statistics(self) -> CompileCacheStats:
        """The counters of ``status``."""
        store = self.disk
        return CompileCacheStats(
            enabled=store is not None,
            max_bytes=self.max_bytes,
            bytes=0 if store is None else store.size,
            entries=0 if store is None else store.entries,
            hits=self.hits,
            misses=self.misses,
            stores=self.stores,
            evictions=0 if store is None else store.evictions,
            corrupt=self.corrupt,
        )
