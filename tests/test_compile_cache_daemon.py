"""The compile cache and tests against a real daemon: hits, misses, poisoning attempts, bounds.

Besides the host's gcc, the daemon gets a ``hostile`` host runtime whose compile stage runs the
submitted file as a bash script (compile-time code execution, as Crystal macros, Zig comptime
or Rust build scripts have) and whose run stage runs the ``out.sh`` that compile left. Its
programs play a compile that tries to poison the cache.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio

from pistond.client import open_client
from pistond.models import StageStatus, Verdict
from pistond.resources import RECIPES, shipped
from pistond.testing.daemon import DaemonProcess

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pistond.models import JobResult

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root"),
    pytest.mark.slow,
]

HOSTILE = {
    "metadata.json": '{"language": "hostile", "version": "host"}\n',
    "source.toml": '[host]\nbinaries = ["/bin/bash"]\nversion_command = ["/bin/echo", "1.0.0"]\n',
    "environment": "export PATH=/usr/bin:/bin\n",
    "compile": '#!/usr/bin/env bash\n/bin/bash "$1" && test -f out.sh\n',
    "run": '#!/usr/bin/env bash\nshift\nexec /bin/bash ./out.sh "$@"\n',
}
CACHE_SIZE = 400_000


def recipes(directory: Path) -> Path:
    """A recipes directory with the shipped host gcc and python, and the hostile runtime."""
    shipped_recipes = shipped(RECIPES)
    assert shipped_recipes is not None
    for package in ("gcc", "python"):
        shutil.copytree(shipped_recipes / package / "host", directory / package / "host")
    hostile = directory / "hostile" / "host"
    hostile.mkdir(parents=True)
    for name, text in HOSTILE.items():
        (hostile / name).write_text(text)
    return directory


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache-daemon")


@pytest.fixture(scope="module")
def settings(home: Path) -> dict[str, str]:
    return {
        "PISTON_RECIPES_DIRECTORY": str(recipes(home / "recipes")),
        "PISTON_COMPILE_CACHE_SIZE": str(CACHE_SIZE),
        "PISTON_MAX_CONCURRENT_JOBS": "8",
    }


@pytest.fixture(scope="module")
def daemon(home: Path, settings: dict[str, str]) -> Iterator[DaemonProcess]:
    with DaemonProcess.start(home / "daemon", settings) as running:
        yield running


def hostile(compile_script: str, run_script: str = "echo ran") -> dict[str, Any]:
    """A hostile program: ``compile_script`` runs at compile time and writes ``out.sh``."""
    marker = uuid.uuid4().hex  # a key of its own
    source = f"# {marker}\n{compile_script}\ncat > out.sh <<'RUN'\n{run_script}\nRUN\n"
    return {"language": "hostile", "version": "*", "files": [{"name": "p.sh", "content": source}]}


def c_program(body: str = 'puts("hello");') -> dict[str, Any]:
    source = f"#include <stdio.h>\n#include <stdlib.h>\n/* {uuid.uuid4().hex} */\n"
    source += f"int main(void) {{ {body} return 0; }}\n"
    return {"language": "c", "version": "*", "files": [{"name": "main.c", "content": source}]}


async def execute(daemon: DaemonProcess, params: dict[str, Any]) -> JobResult:
    async with open_client(daemon.socket) as client:
        with trio.fail_after(60):
            return await client.execute_request(params)


def run(daemon: DaemonProcess, params: dict[str, Any]) -> JobResult:
    return trio.run(execute, daemon, params)


def status(daemon: DaemonProcess) -> Any:
    async def read() -> Any:
        async with open_client(daemon.socket) as client:
            return (await client.status()).compile_cache

    return trio.run(read)


def stdout(result: JobResult) -> str:
    assert result.run is not None, result
    return result.run.stdout


def test_daemon_cache_hit_runs_the_same_program(daemon: DaemonProcess) -> None:
    """An identical C request skips its compile (cached, same figures) and runs the binary."""
    params = c_program()
    cold, warm = run(daemon, params), run(daemon, params)
    assert cold.compile is not None
    assert warm.compile is not None
    assert (cold.compile.cached, warm.compile.cached) == (False, True)
    assert warm.compile.wall_time == cold.compile.wall_time
    assert stdout(cold) == stdout(warm) == "hello\n"


def test_daemon_request_opting_out_compiles_again(daemon: DaemonProcess) -> None:
    """``compile_cache=False`` through the typed client compiles a program the cache holds."""
    source = c_program()["files"][0]["content"]

    async def twice() -> tuple[JobResult, JobResult]:
        async with open_client(daemon.socket) as client:
            with trio.fail_after(60):
                first = await client.execute("c", "*", [("main.c", source)])
                again = await client.execute("c", "*", [("main.c", source)], compile_cache=False)
        return first, again

    first, again = trio.run(twice)
    assert first.compile is not None
    assert again.compile is not None
    assert (first.compile.cached, again.compile.cached) == (False, False)
    assert stdout(again) == "hello\n"


def test_daemon_cache_misses_on_a_byte_or_a_name(daemon: DaemonProcess) -> None:
    """Changing one byte of the source, or the file's name, compiles again."""
    params = c_program()
    run(daemon, params)
    source = params["files"][0]["content"]
    byte = {**params, "files": [{"name": "main.c", "content": source.replace("hello", "hellp")}]}
    name = {**params, "files": [{"name": "prog.c", "content": source}]}
    for changed in (byte, name):
        result = run(daemon, changed)
        assert result.compile is not None
        assert not result.compile.cached
    assert stdout(run(daemon, byte)) == "hellp\n"


def test_daemon_failed_compiles_are_never_cached(daemon: DaemonProcess) -> None:
    """A compile error compiles again every time; the opt-out never hits."""
    broken = c_program("this is not C;")
    for _ in range(2):
        result = run(daemon, broken)
        assert result.compile is not None
        assert result.compile.status is StageStatus.RUNTIME_ERROR
        assert not result.compile.cached
        assert result.run is None
    opted = {**c_program(), "compile_cache": False}
    assert [run(daemon, opted).compile.cached for _ in range(2)] == [False, False]  # type: ignore[union-attr]


def test_daemon_cache_keeps_links_as_links_and_leaves_out_special_files(
    daemon: DaemonProcess,
) -> None:
    """What a compile left is restored as it was: a link to a host secret stays a link (the
    entry never holds the host file's bytes), a FIFO is left out."""
    params = hostile(
        "ln -s /etc/shadow leak; mkfifo pipe; mkdir -p sub; echo kept > sub/file",
        "readlink leak; [ -p pipe ] && echo fifo || echo no-fifo; cat sub/file;"
        " ls -l leak | cut -c1",
    )
    cold, warm = run(daemon, params), run(daemon, params)
    assert stdout(cold) == "/etc/shadow\nfifo\nkept\nl\n"
    assert stdout(warm) == "/etc/shadow\nno-fifo\nkept\nl\n"
    shadow = Path("/etc/shadow").read_bytes()
    secret = next(line for line in shadow.splitlines() if b":" in line)
    for entry in (daemon.data_directory / "compile-cache").rglob("*"):
        if entry.is_file():
            assert secret not in entry.read_bytes()


def test_daemon_compile_cannot_reach_the_cache(daemon: DaemonProcess) -> None:
    """A compile looking for the cache finds nothing and can write nothing outside its box."""
    cache = daemon.data_directory / "compile-cache"
    params = hostile(
        f"ls {cache} 2>&1 | head -1; find / -xdev -name 'compile-cache' 2>/dev/null; "
        f"touch /piston/planted 2>/dev/null || echo read-only; echo done"
    )
    result = run(daemon, params)
    assert result.compile is not None
    assert result.compile.status is None
    assert result.compile.stdout.splitlines() == [
        f"ls: cannot access '{cache}': No such file or directory",
        "read-only",
        "done",
    ]


def test_daemon_a_job_changing_its_copy_changes_no_entry(daemon: DaemonProcess) -> None:
    """A run stage that rewrites what the cached compile left does not alter the entry: the
    next hit runs the original."""
    params = hostile("echo compiled", "echo original; echo 'echo poisoned' > out.sh")
    assert [stdout(run(daemon, params)) for _ in range(3)] == ["original\n"] * 3


def test_daemon_files_planted_by_one_compile_never_reach_another_key(
    daemon: DaemonProcess,
) -> None:
    """What one compile leaves belongs to its own key: another program misses and its box
    holds nothing of it."""
    planter = hostile("echo planted > bonus; for i in 1 2 3; do cp bonus bonus$i; done")
    run(daemon, planter)
    other = run(daemon, hostile("true", "ls"))
    assert other.compile is not None
    assert not other.compile.cached
    assert stdout(other).split() == ["out.sh", "p.sh"]


def test_daemon_too_large_a_box_is_not_cached(daemon: DaemonProcess) -> None:
    """A compile leaving more than the bounds (entries or bytes) is run again next time."""
    for script in (
        "touch f{1..10001}",
        "head -c 9000000 /dev/zero > a; head -c 9000000 /dev/zero > b",
    ):
        params = hostile(script, "ls | wc -l")
        results = [run(daemon, params) for _ in range(2)]
        assert [result.compile.cached for result in results] == [False, False]  # type: ignore[union-attr]


def test_daemon_identical_requests_in_flight_compile_once(daemon: DaemonProcess) -> None:
    """Four identical requests at once: one compile stage runs, three are served by it."""
    params = hostile("sleep 1; echo compiled-once", "echo ran")
    results: list[JobResult] = []

    async def race() -> None:
        async def one() -> None:
            results.append(await execute(daemon, params))

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(one)

    trio.run(race)
    cached = sorted(result.compile.cached for result in results)  # type: ignore[union-attr]
    assert cached == [False, True, True, True]
    assert all(stdout(result) == "ran\n" for result in results)


def test_daemon_eviction_keeps_the_size_bound(daemon: DaemonProcess) -> None:
    """Entries beyond PISTON_COMPILE_CACHE_SIZE evict the least recently used."""
    before = status(daemon)
    for _ in range(30):
        run(daemon, hostile("head -c 20000 /dev/urandom > blob"))
    after = status(daemon)
    assert after.bytes <= CACHE_SIZE
    assert after.evictions > before.evictions
    on_disk = sum(
        path.stat().st_size
        for path in (daemon.data_directory / "compile-cache").rglob("*")
        if path.is_file() and len(path.name) == 64
    )
    assert on_disk == after.bytes


def test_daemon_corrupt_entry_is_a_miss(daemon: DaemonProcess) -> None:
    """An entry altered on disk fails its hash check: the request compiles, corrupt counts."""
    params = c_program('puts("intact");')
    run(daemon, params)
    before = status(daemon)
    newest = max(
        (path for path in (daemon.data_directory / "compile-cache").rglob("?" * 64)),
        key=lambda path: path.stat().st_mtime_ns,
    )
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    result = run(daemon, params)
    assert result.compile is not None
    assert not result.compile.cached
    assert stdout(result) == "intact\n"
    assert status(daemon).corrupt == before.corrupt + 1


def test_daemon_tests_compile_once_with_verdicts_and_fresh_boxes(daemon: DaemonProcess) -> None:
    """A C program with 5 tests compiles once; each test runs in a box the others never
    touched; verdicts compare stdout with expected_output."""
    body = (
        'int a, b; if (scanf("%d %d", &a, &b) != 2) return 3;'
        ' FILE *seen = fopen("state", "r"); if (seen) { puts("leaked"); return 0; }'
        ' fclose(fopen("state", "w")); printf("%d\\n", a + b);'
    )
    params = {
        **c_program(body),
        "tests": [
            {"name": "small", "stdin": "1 2", "expected_output": "3\n"},
            {"stdin": "2 2", "expected_output": "5\n"},
            {"stdin": "-1 1", "expected_output": "0\n"},
            {"stdin": "x", "expected_output": "0\n"},
            {"stdin": "40 2", "expected_output": "42   \n\n", "name": "loose"},
        ],
        "compare": "trailing_whitespace",
    }
    result = run(daemon, params)
    assert result.compile is not None
    assert result.run is None
    assert result.tests is not None
    assert [test.verdict for test in result.tests] == [
        Verdict.ACCEPTED,
        Verdict.WRONG_ANSWER,
        Verdict.ACCEPTED,
        None,
        Verdict.ACCEPTED,
    ]
    assert [test.run.stdout for test in result.tests] == ["3\n", "4\n", "0\n", "", "42\n"]
    assert result.tests[3].run.status is StageStatus.RUNTIME_ERROR
    assert [test.name for test in result.tests] == ["small", None, None, None, "loose"]
    again = run(daemon, params)
    assert again.compile is not None
    assert again.compile.cached
    assert again.tests is not None
    assert [test.run.stdout for test in again.tests] == ["3\n", "4\n", "0\n", "", "42\n"]


def test_daemon_reinstall_and_restart(home: Path, settings: dict[str, str]) -> None:
    """Entries survive a restart; an uninstall removes the package's entries and the
    reinstalled package (another build) misses."""
    params = c_program('puts("persist");')
    with DaemonProcess.start(home / "restart", settings) as first:
        run(first, params)
    with DaemonProcess.start(home / "restart", settings) as second:
        warm = run(second, params)
        assert warm.compile is not None
        assert warm.compile.cached
        entries = status(second).entries
        second.piston("ppman", "uninstall", "gcc")
        assert status(second).entries < entries
        assert not any(
            "gcc" in path.read_text()
            for path in (second.data_directory / "compile-cache").rglob("runtime.json")
        )
        second.piston("ppman", "install", "gcc")
        again = run(second, params)
        assert again.compile is not None
        assert not again.compile.cached
        assert stdout(again) == "persist\n"
