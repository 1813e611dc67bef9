"""The compile cache: keys, the entry format's checks, the store's bounds, restarts, races."""

from __future__ import annotations

import json
import os
import stat
from typing import TYPE_CHECKING

import attrs
import pytest
import trio
import trio.testing
from pistond_packages.layout import PackageLayout
from pistond_packages.metadata import MetadataError, load_metadata, metadata_from_json
from pistond_packages.runtime import package_runtimes

from pistond.compilecache import CachedCompile, CompileCache, RuntimeRef, compile_key
from pistond.compilecache.entry import CorruptEntry, decode, encode
from pistond.config import load_config
from pistond.models import ExecuteRequest, SourceFile
from pistond.runtimes import Runtime
from pistond.sandbox.hostfs import BoxTree, EntryKind, TreeEntry
from pistond.sandbox.spec import RootView, StageLimits, StageSpec
from pistond.testing.fake_sandbox import stage_result

if TYPE_CHECKING:
    from pathlib import Path

C = Runtime(
    language="c",
    version="14.2.0",
    aliases=(),
    package="gcc",
    compiled=True,
    root=RootView(path="/pkg/root"),
    compile_argv=("/bin/bash", "/piston/packages/gcc/14.2.0/compile"),
    run_argv=("/bin/bash", "/piston/packages/gcc/14.2.0/run"),
    identity="build-1",
)
CPP = attrs.evolve(C, language="c++")
LIMITS = StageLimits(
    wall_time_ms=10_000,
    cpu_time_ms=10_000,
    memory_bytes=None,
    max_processes=64,
    max_open_files=2048,
    max_file_size=10_000_000,
    output_max_size=1024,
)
CONFIG = load_config({})


def request(*files: SourceFile, main: str = "main.c") -> ExecuteRequest:
    return ExecuteRequest(
        language="c",
        version="*",
        files=files or (SourceFile("main.c", b"int main(){}", is_text=True),),
        main=main,
        stdin=b"",
        args=(),
        limits={},
    )


def spec(limits: StageLimits = LIMITS, *names: str) -> StageSpec:
    return StageSpec(
        argv=(*(C.compile_argv or ()), *(names or ("main.c",))),
        env={"HOME": "/tmp", "PISTON_LANGUAGE": "c"},
        root=C.root,
        limits=limits,
    )


def compiled(content: bytes = b"\x7fELF") -> CachedCompile:
    tree = BoxTree(
        0o700,
        (
            TreeEntry("main.c", EntryKind.FILE, 0o644, 1, b"int main(){}"),
            TreeEntry("a.out", EntryKind.FILE, 0o755, 2, content),
        ),
    )
    return CachedCompile(result=stage_result(stderr="warning\n"), tree=tree)


def key_of(runtime: Runtime = C, **changes: object) -> str | None:
    base = request()
    job_request = attrs.evolve(base, **changes) if changes else base
    return compile_key(runtime, spec(), job_request, CONFIG)


def test_compile_key_changes_with_every_input() -> None:
    """Any change of a file byte, a file name, text/binary, main, runtime version, installed
    identity, language or a compile limit gives another key; equal inputs the same key."""
    base = key_of()
    assert base == key_of()
    assert base is not None
    others = [
        key_of(files=(SourceFile("main.c", b"int main(){ }", is_text=True),)),
        key_of(files=(SourceFile("prog.c", b"int main(){}", is_text=True),)),
        key_of(files=(SourceFile("main.c", b"int main(){}", is_text=False),)),
        key_of(main="other.c"),
        key_of(attrs.evolve(C, version="14.2.1")),
        key_of(attrs.evolve(C, identity="build-2")),
        key_of(attrs.evolve(C, compile_scratch=("*.o",))),
        key_of(CPP),
        compile_key(C, spec(attrs.evolve(LIMITS, wall_time_ms=9_999)), request(), CONFIG),
        compile_key(C, spec(LIMITS, "main.c", "util.h"), request(), CONFIG),
        compile_key(C, spec(), request(), load_config({"PISTON_DISK_SIZE": "1000000"})),
    ]
    assert len({base, *others}) == len(others) + 1


def test_compile_key_needs_an_installed_identity() -> None:
    """A runtime without an identity (a plugin that gives none) is never cached."""
    assert key_of(attrs.evolve(C, identity=None)) is None
    assert RuntimeRef.of(attrs.evolve(C, identity=None)) is None


def test_entry_round_trip_and_every_corruption_is_refused() -> None:
    """An entry decodes to what was encoded; a flipped byte, a truncation, another key or
    another format version is CorruptEntry."""
    key = "a" * 64
    data = encode(key, {"language": "c"}, compiled())
    assert decode(data, key) == compiled()
    flipped = bytearray(data)
    flipped[-3] ^= 0x01
    broken = [
        bytes(flipped),
        data[: len(data) // 2],
        data[:10],
        b"",
        data.replace(b"PDCC\x00\x00\x00\x01", b"PDCC\x00\x00\x00\x02", 1),
    ]
    for bad in broken:
        with pytest.raises(CorruptEntry):
            decode(bad, key)
    with pytest.raises(CorruptEntry, match="another key"):
        decode(data, "b" * 64)


async def open_cache(tmp_path: Path, *runtimes: Runtime, size: int = 1 << 20) -> CompileCache:
    config = load_config(
        {"PISTON_DATA_DIRECTORY": str(tmp_path), "PISTON_COMPILE_CACHE_SIZE": str(size)}
    )
    return await CompileCache.open(config, runtimes or (C, CPP))


async def fill(cache: CompileCache, key: str, runtime: Runtime = C, **kwargs: bytes) -> None:
    ref = RuntimeRef.of(runtime)
    assert ref is not None
    async with cache.claim(key, ref) as claim:
        assert claim.cached is None
        await claim.fulfil(compiled(**kwargs))


async def lookup(cache: CompileCache, key: str, runtime: Runtime = C) -> CachedCompile | None:
    ref = RuntimeRef.of(runtime)
    assert ref is not None
    async with cache.claim(key, ref) as claim:
        return claim.cached


async def test_cache_miss_then_hit_stored_root_only(tmp_path: Path) -> None:
    """A fulfilled claim is a hit next time; entries live in root's 0700 directories as 0600
    files, outside every box; status counts hits, misses, stores and bytes."""
    cache = await open_cache(tmp_path)
    key = "1" * 64
    await fill(cache, key)
    assert await lookup(cache, key) == compiled()
    stats = cache.statistics()
    assert (stats.enabled, stats.hits, stats.misses, stats.stores, stats.entries) == (
        True,
        1,
        1,
        1,
        1,
    )
    root = tmp_path / "compile-cache"
    (entry,) = [path for path in root.rglob("*") if path.name == key]
    assert stats.bytes == entry.stat().st_size
    for path in (root, entry.parent):
        info = path.stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (os.geteuid(), 0o700)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600


async def test_cache_entries_are_never_shared_across_runtimes(tmp_path: Path) -> None:
    """An entry is looked up under its own runtime's directory only: the same key stored for C
    is a separate entry from C++'s, and removing one package keeps the other's."""
    cache = await open_cache(tmp_path, C, CPP, attrs.evolve(C, package="other", language="x"))
    key = "2" * 64
    await fill(cache, key, C)
    await fill(cache, "3" * 64, attrs.evolve(C, package="other", language="x"))
    directories = {path.parent for path in (tmp_path / "compile-cache").rglob("?" * 64)}
    assert len(directories) == 2
    cache.remove_package("gcc", "14.2.0")
    assert await lookup(cache, key) is None
    assert cache.statistics().entries == 1


async def test_cache_corrupt_or_truncated_entry_is_a_miss_and_dropped(tmp_path: Path) -> None:
    """An entry whose bytes changed on disk fails its hash check: a miss, counted, deleted."""
    cache = await open_cache(tmp_path)
    for index, damage in enumerate(
        [
            lambda data: data[:-1],
            lambda data: data[:-40] + bytes(40),
            lambda data: b"",
        ]
    ):
        key = str(index) * 64
        await fill(cache, key)
        (path,) = (tmp_path / "compile-cache").rglob(key)
        path.write_bytes(damage(path.read_bytes()))
        assert await lookup(cache, key) is None
        assert not path.exists()
    stats = cache.statistics()
    assert (stats.corrupt, stats.entries, stats.bytes) == (3, 0, 0)


async def test_cache_eviction_keeps_the_bound_least_recently_used_first(tmp_path: Path) -> None:
    """Beyond PISTON_COMPILE_CACHE_SIZE the least recently used entries go first."""
    size = len(encode("0" * 64, {"language": "c", "version": "14.2.0"}, compiled(b"x" * 1000)))
    cache = await open_cache(tmp_path, size=size * 4 + 10)
    keys = [str(index) * 64 for index in range(4)]
    for key in keys:
        await fill(cache, key, content=b"x" * 1000)
    assert await lookup(cache, keys[0]) is not None  # now the most recently used
    await fill(cache, "9" * 64, content=b"x" * 1000)
    stats = cache.statistics()
    assert stats.bytes <= size * 4 + 10
    assert (stats.entries, stats.evictions) == (4, 1)
    assert await lookup(cache, keys[1]) is None
    assert await lookup(cache, keys[0]) is not None


async def test_cache_entries_larger_than_a_quarter_are_not_stored(tmp_path: Path) -> None:
    """An entry over a quarter of the cache is not stored (it would evict everything else)."""
    cache = await open_cache(tmp_path, size=4000)
    await fill(cache, "5" * 64, content=b"x" * 2000)
    assert cache.statistics().entries == 0
    assert await lookup(cache, "5" * 64) is None


async def test_cache_survives_a_restart_and_drops_reinstalled_runtimes(tmp_path: Path) -> None:
    """A new daemon finds the entries of installed runtimes in LRU order; the directory of a
    runtime that is gone or was reinstalled (another identity) is deleted."""
    first = await open_cache(tmp_path)
    await fill(first, "6" * 64, C)
    await fill(first, "7" * 64, CPP)
    (tmp_path / "compile-cache" / "tmp" / "entry-partial").write_bytes(b"half")
    reinstalled = attrs.evolve(CPP, identity="build-2")
    second = await open_cache(tmp_path, C, reinstalled)
    assert second.statistics().entries == 1
    assert await lookup(second, "6" * 64) == compiled()
    assert await lookup(second, "7" * 64, reinstalled) is None
    assert list((tmp_path / "compile-cache" / "tmp").iterdir()) == []
    assert len(list((tmp_path / "compile-cache").iterdir())) == 2  # tmp and C's


async def test_cache_directory_not_the_daemons_leaves_the_cache_off(tmp_path: Path) -> None:
    """A cache directory owned by another user (or a link) is not used: the cache is off."""
    root = tmp_path / "compile-cache"
    root.mkdir()
    os.chown(root, 12345, 12345)
    cache = await open_cache(tmp_path)
    assert not cache.enabled
    os.chown(root, 0, 0)
    root.rmdir()
    (tmp_path / "elsewhere").mkdir()
    root.symlink_to(tmp_path / "elsewhere")
    assert not (await open_cache(tmp_path)).enabled


async def test_cache_size_zero_is_off() -> None:
    """PISTON_COMPILE_CACHE_SIZE=0 disables the cache: nothing is looked up or stored."""
    cache = await CompileCache.open(load_config({"PISTON_COMPILE_CACHE_SIZE": "0"}), [C])
    assert not cache.enabled
    assert cache.statistics().enabled is False


async def test_cache_identical_claims_compile_once(tmp_path: Path) -> None:
    """While one claim compiles a key, identical claims wait and get its compile (hits)."""
    cache = await open_cache(tmp_path)
    ref = RuntimeRef.of(C)
    assert ref is not None
    key = "8" * 64
    got: list[CachedCompile | None] = []

    async def follower() -> None:
        async with cache.claim(key, ref) as claim:
            got.append(claim.cached)

    async with trio.open_nursery() as nursery, cache.claim(key, ref) as leader:
        assert leader.cached is None
        for _ in range(3):
            nursery.start_soon(follower)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        await leader.fulfil(compiled())
    assert got == [compiled()] * 3
    assert (cache.statistics().hits, cache.statistics().misses) == (3, 1)


async def test_cache_followers_compile_themselves_when_the_leader_fails(tmp_path: Path) -> None:
    """A claim that ends without a compile (failed or cancelled) lets each waiter compile."""
    cache = await open_cache(tmp_path)
    ref = RuntimeRef.of(C)
    assert ref is not None
    key = "9" * 64
    got: list[CachedCompile | None] = []

    async def follower() -> None:
        async with cache.claim(key, ref) as claim:
            got.append(claim.cached)

    async with trio.open_nursery() as nursery, cache.claim(key, ref) as leader:
        assert leader.cached is None
        nursery.start_soon(follower)
        nursery.start_soon(follower)
        await trio.testing.wait_all_tasks_blocked()
    assert got == [None, None]
    assert cache.statistics().misses == 3


def _installed(directory: Path, metadata: dict[str, object]) -> Runtime:
    layout = PackageLayout.of(directory, "gcc", "14.2.0")
    layout.directory.mkdir(parents=True, exist_ok=True)
    layout.metadata.write_text(json.dumps(metadata))
    (layout.directory / "run").write_text("#!/bin/bash\n")
    (layout.directory / "compile").write_text('#!/bin/bash\ngcc "$@"\n')
    layout.pkg_info.write_text("{}")
    layout.env_file.write_text("PATH=/usr/bin:/bin\n")
    layout.marker.write_text("1700000000000")
    (runtime,) = package_runtimes(layout, load_metadata(layout.metadata))
    return runtime


def test_installed_identity_changes_with_a_reinstall_and_scratch_is_read(tmp_path: Path) -> None:
    """The built-in plugin's identity changes with the install stamp and the compile script;
    metadata's compile_scratch reaches the runtime; bad patterns are refused."""
    metadata: dict[str, object] = {
        "language": "gcc",
        "version": "14.2.0",
        "compile_scratch": ["*.o", "build/*"],
    }
    first = _installed(tmp_path, metadata)
    assert first.identity is not None
    assert first.compile_scratch == ("*.o", "build/*")
    assert _installed(tmp_path, metadata).identity == first.identity
    layout = PackageLayout.of(tmp_path, "gcc", "14.2.0")
    layout.marker.write_text("1700000000001")
    reinstalled = package_runtimes(layout, load_metadata(layout.metadata))[0]
    (layout.directory / "compile").write_text('#!/bin/bash\nclang "$@"\n')
    rebuilt = package_runtimes(layout, load_metadata(layout.metadata))[0]
    assert len({first.identity, reinstalled.identity, rebuilt.identity}) == 3
    for bad in (["../x"], ["/abs"], "*.o", [""]):
        with pytest.raises(MetadataError, match="compile_scratch"):
            metadata_from_json({**metadata, "compile_scratch": bad}, source="m.json")
