"""Cold against warm ``execute`` of compiled programs: what the compile cache saves.

Starts a private daemon (host runtimes; Rust and Go installed from their recipes into the
daemon's data directory when missing: a few minutes the first time, kept with ``--data``), then
for C, C++, Rust and Go hello world and a 2,000-line C program, in rounds that interleave:

- **cold**: ``execute`` of the program with a fresh comment (a new key: compile + run);
- **warm**: ``execute`` of the same program every time (a compile cache hit: restore + run);
- **bare**: the compiled binary itself, run on the host without any sandbox (taken from the
  cache entry the warm runs use, so it is byte for byte the program the sandbox runs);
- **run-only** (programs built by the host's compilers): an ``execute`` of the host bash
  runtime that is given the same binary as a file and runs it (through the dynamic loader, as
  submitted files are not executable): the cost of the run stage alone, with no compile stage
  and no cache, to show what a hit adds.

It prints p50/p99 of each and the ratios cold/warm, warm/bare and warm/run-only; the goal is a
warm C hello within 1.5x of its bare run. Run as root::

    .venv/bin/python bench/compile_cache.py [--runs 30] [--cold-runs 8] [--data DIR]
        [--languages c,c++,rust,go,c-2000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import trio

from pistond.client import PistonClient, open_client
from pistond.compilecache.entry import CorruptEntry, decode
from pistond.testing.daemon import DaemonProcess

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

HELLO = {
    "c": ("main.c", '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n'),
    "c++": ("main.cpp", '#include <iostream>\nint main() { std::cout << "hello\\n"; }\n'),
    "rust": ("main.rs", 'fn main() {\n    println!("hello");\n}\n'),
    "go": (
        "main.go",
        'package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("hello")\n}\n',
    ),
}
PACKAGES = {"rust": "rust", "go": "go"}
"""Languages whose runtime comes from a recipe (not from the host)."""
BINARIES = ("a.out", "binary", "out")
"""What the compile scripts call the program they build."""
LOADER = "/lib64/ld-linux-x86-64.so.2"
"""The host's dynamic loader: runs a binary that is not executable (a submitted file)."""


def large_c_program(functions: int = 400) -> str:
    """About 2,000 lines of C: ``functions`` small functions and a main that sums them."""
    lines = ["#include <stdio.h>", ""]
    for index in range(functions):
        lines += [
            f"static long f{index}(long x) {{",
            f"    long y = x * {index + 3} + {index % 7};",
            f"    if (y % {index % 5 + 2} == 0) y += {index};",
            "    return y ^ (y >> 3);",
            "}",
        ]
    lines += ["int main(void) {", "    long total = 0;"]
    lines += [f"    total += f{index}(total % 1000 + {index});" for index in range(functions)]
    lines += ['    printf("%ld\\n", total % 1000);', "    return 0;", "}", ""]
    return "\n".join(lines)


@attrs.frozen
class Program:
    """One benchmarked program."""

    name: str
    language: str
    file: str
    source: str

    @property
    def host_built(self) -> bool:
        """Built by the host's compilers (so the host bash runtime can run the binary)."""
        return self.language in ("c", "c++")

    def params(self, marker: str) -> dict[str, Any]:
        """``execute`` params; ``marker`` goes into a comment (a new one: a new cache key)."""
        content = f"{self.source}// {marker}\n"  # a comment in all four languages
        files = [{"name": self.file, "content": content}]
        return {"language": self.language, "version": "*", "files": files}


def percentile(samples: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``samples`` (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    """Seconds one awaited call takes."""
    start = time.perf_counter()
    await call()
    return time.perf_counter() - start


def expect(ok: bool, result: object) -> None:
    """Stop the benchmark when a job did not do what it should."""
    if not ok:
        raise RuntimeError(f"unexpected result: {result}")


def bare_binary(daemon: DaemonProcess, program: Program, marker: str, work: Path) -> Path:
    """The binary the warm runs execute, copied out of its cache entry into ``work``."""
    wanted = program.params(marker)["files"][0]["content"].encode()
    for path in (daemon.data_directory / "compile-cache").rglob("?" * 64):
        try:
            compiled = decode(path.read_bytes(), path.name)
        except (OSError, CorruptEntry):
            continue
        files = {entry.path: entry.content for entry in compiled.tree.entries}
        if files.get(program.file) != wanted:
            continue
        for name in BINARIES:
            if name in files:
                binary = work / f"{program.name}-{name}"
                binary.write_bytes(files[name])
                binary.chmod(0o755)
                return binary
    raise RuntimeError(f"no cache entry holds the binary of {program.name}")


async def measure(
    daemon: DaemonProcess, client: PistonClient, program: Program, runs: int, cold_runs: int
) -> None:
    """Cold, warm and bare runs of ``program``, interleaved; one line of figures."""
    fixed = uuid.uuid4().hex

    async def cold() -> None:
        result = await client.execute_request(program.params(uuid.uuid4().hex))
        expect(result.compile is not None and not result.compile.cached, result)
        expect(result.run is not None and result.run.status is None, result)

    async def warm() -> None:
        result = await client.execute_request(program.params(fixed))
        expect(result.compile is not None and result.compile.cached, result)
        expect(result.run is not None and result.run.status is None, result)

    first = await client.execute_request(program.params(fixed))
    expect(first.run is not None and first.run.status is None, first)
    expected = first.run.stdout if first.run else ""
    with tempfile.TemporaryDirectory(prefix="bench-bare-") as scratch:
        binary = bare_binary(daemon, program, fixed, Path(scratch))
        run_only_params = {
            "language": "bash",
            "version": "*",
            "files": [
                {"name": "run.sh", "content": f"exec {LOADER} ./prog\n"},
                {"name": "prog", "content": binary.read_bytes()},
            ],
        }

        async def bare() -> None:
            done = await trio.run_process([str(binary)], capture_stdout=True, cwd=scratch)
            expect(done.stdout.decode() == expected, done.stdout)

        async def run_only() -> None:
            result = await client.execute_request(run_only_params)
            expect(result.run is not None and result.run.stdout == expected, result)

        series: dict[str, list[float]] = {"cold": [], "warm": [], "bare": [], "run-only": []}
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("warm", warm),
            ("bare", bare),
        ]
        if program.host_built:
            steps.append(("run-only", run_only))
        for _, step in steps:
            await step()
        for index in range(runs):
            if index < cold_runs:
                series["cold"].append(await timed(cold))
            for name, step in steps:
                series[name].append(await timed(step))
    p50 = {name: percentile(values, 0.5) * 1e3 for name, values in series.items() if values}
    p99 = {name: percentile(values, 0.99) * 1e3 for name, values in series.items() if values}
    line = (
        f"{program.name:<7} cold {p50['cold']:7.1f} / {p99['cold']:7.1f} ms"
        f" | warm {p50['warm']:6.2f} / {p99['warm']:6.2f}"
        f" | bare {p50['bare']:5.2f} / {p99['bare']:5.2f}"
    )
    if "run-only" in p50:
        line += f" | run-only {p50['run-only']:6.2f} / {p99['run-only']:6.2f}"
    line += f" || cold/warm {p50['cold'] / p50['warm']:5.1f}x"
    line += f", warm/bare {p50['warm'] / p50['bare']:5.2f}x"
    if program.name == "c":
        line += " (goal 1.5x)"
    if "run-only" in p50:
        line += f", warm/run-only {p50['warm'] / p50['run-only']:4.2f}x"
    print(line, flush=True)


async def install_missing(client: PistonClient, languages: list[str]) -> None:
    """Build the recipes of languages whose runtime is not installed (minutes each)."""
    for language in languages:
        package = PACKAGES.get(language)
        if package is None:
            continue
        listed = await client.packages()
        if any(item.language == package and item.installed for item in listed):
            continue
        print(f"installing {package} from its recipe (this takes a while)...", flush=True)
        started = time.monotonic()
        await client.install_package(package, "*")
        print(f"  {package} installed in {time.monotonic() - started:.0f} s", flush=True)


def programs(languages: list[str]) -> list[Program]:
    """The programs to measure, in the order asked."""
    chosen = []
    for language in languages:
        if language == "c-2000":
            chosen.append(Program("c-2000", "c", "big.c", large_c_program()))
        else:
            file, source = HELLO[language]
            chosen.append(Program(language, language, file, source))
    return chosen


async def bench(daemon: DaemonProcess, chosen: list[Program], runs: int, cold_runs: int) -> None:
    """Install what is missing, then measure every program in turn."""
    async with open_client(daemon.socket) as client:
        await install_missing(client, [program.language for program in chosen])
        print("p50 / p99 of each series, interleaved round by round")
        for program in chosen:
            await measure(daemon, client, program, runs, cold_runs)
        stats = (await client.status()).compile_cache
        print(f"compile cache after the run: {stats}")


def main() -> None:
    """Parse arguments, start the daemon, install what is missing, measure."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=30, help="warm and bare runs per program")
    parser.add_argument("--cold-runs", type=int, default=8, help="cold runs per program")
    parser.add_argument(
        "--languages", default="c,c++,rust,go,c-2000", help="comma-separated programs to measure"
    )
    parser.add_argument(
        "--data", type=Path, help="directory of the daemon (kept: installs are reused next time)"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("run as root (the daemon needs namespaces, mounts and cgroups)")
    languages = [name.strip() for name in args.languages.split(",") if name.strip()]
    unknown = sorted(set(languages) - set(HELLO) - {"c-2000"})
    if unknown:
        parser.error(f"unknown language {unknown[0]!r}")
    chosen = programs(languages)
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as temporary:
        home = args.data or Path(temporary)
        with DaemonProcess.start(home, {"PISTON_LOG_LEVEL": "WARNING"}) as daemon:
            trio.run(bench, daemon, chosen, args.runs, min(args.cold_runs, args.runs))


if __name__ == "__main__":
    main()
