"""``python -m pistond.ppman.matrix``: build every recipe, run every test, write docs/languages.md.

Two phases, both through a running daemon, as a user would do it:

1. **build**: ``packages.install`` of each selected recipe (``--jobs`` at a time; the daemon
   builds different packages at once and versions of one package one after the other);
2. **test**: every ``test.<ext>`` of each installed package is executed, one at a time on a
   quiet machine, as the runtime whose language or aliases name the extension, with the
   content of ``test.<ext>.stdin`` (if any) as stdin; it must print ``OK``.

The results become a Markdown table (default ``docs/languages.md``, with a JSON copy beside it):
language, version, aliases, source, root size, build time, hello-world latency and result, the
disk used by all roots before and after hard-link deduplication, how long the run took, and a
line for every Piston language the table lacks, with the reason. Text from the line
``<!-- notes -->`` on in an existing output file is kept. ``--merge`` keeps the rows of recipes
not selected in this run, so a run may redo a few recipes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio

from pistond.config import DEFAULT_SOCKET, load_config
from pistond.errors import PistondError
from pistond.ppman import fstree
from pistond.ppman.coverage import PISTON_LANGUAGES, UNAVAILABLE
from pistond.ppman.layout import PackageLayout, installed_packages
from pistond.ppman.recipes import find_recipes, source_kind

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from pistond.ppman.recipes import Recipe
    from pistond.ppman.spec import PackagesClient

NOTES_MARKER: Final = "<!-- notes -->"
STDIN_SUFFIX: Final = ".stdin"


@attrs.frozen
class Outcome:
    """One test file run through the daemon (or a build that failed)."""

    language: str
    version: str
    aliases: tuple[str, ...]
    source: str
    root_size: int
    build_time_ms: int
    latency_ms: int
    result: str
    """``OK``, or what went wrong."""
    package: str = ""
    """The recipe's ``<package>-<version directory>``."""


@attrs.frozen
class DiskUse:
    """Bytes of all runtime roots, counted per root and counted once per inode."""

    before: int
    after: int
    roots: int


@attrs.frozen
class Summary:
    """The run as a whole."""

    outcomes: tuple[Outcome, ...]
    disk: DiskUse
    seconds: float
    jobs: int
    built: int = 0
    """Recipes this run built."""
    reused: int = 0
    """Recipes this run found already installed in its data directory (not built again)."""


def recipe_key(recipe: Recipe) -> str:
    """``<package>-<version directory>``, as selections name recipes."""
    return f"{recipe.package}-{recipe.directory.name}"


def recipe_tests(recipe: Recipe) -> list[Path]:
    """The recipe's test programs (``test.<ext>``, not their ``.stdin`` inputs)."""
    return sorted(
        path
        for path in recipe.directory.glob("test.*")
        if path.is_file() and not path.name.endswith(STDIN_SUFFIX)
    )


def test_request(language: str, version: str, test: Path) -> dict[str, Any]:
    """The ``execute`` parameters of one test file (with its ``.stdin`` input, if any)."""
    params: dict[str, Any] = {
        "language": language,
        "version": version,
        "files": [{"name": test.name, "content": test.read_text(encoding="utf-8")}],
    }
    stdin = test.with_name(test.name + STDIN_SUFFIX)
    if stdin.is_file():
        params["stdin"] = stdin.read_text(encoding="utf-8")
    return params


async def run_test(
    client: PackagesClient,
    language: str,
    version: str,
    test: Path,
) -> tuple[int, str]:
    """Execute one test file; return (latency in ms, ``OK`` or the failure)."""
    params = test_request(language, version, test)
    started = time.monotonic()
    try:
        result = await client.call("execute", params)
    except PistondError as exc:
        return round((time.monotonic() - started) * 1000), f"error: {exc.message}"
    latency = round((time.monotonic() - started) * 1000)
    stage = result.get("run") or result.get("compile") or {}
    if stage.get("stdout", "").strip() == "OK":
        return latency, "OK"
    detail = (stage.get("message") or stage.get("stderr") or stage.get("stdout") or "no output")[
        :160
    ]
    return latency, f"failed: {' '.join(str(detail).split())}"


def _test_language(
    runtimes: list[dict[str, Any]], package: str, extension: str
) -> dict[str, Any] | None:
    mine = [r for r in runtimes if r.get("runtime") == package or r["language"] == package]
    for runtime in mine:
        if extension == runtime["language"] or extension in runtime["aliases"]:
            return runtime
    return mine[0] if len(mine) == 1 else None


async def install_recipe(
    client: PackagesClient, recipe: Recipe, echo: Callable[[str], None]
) -> tuple[str, bool]:
    """Install one recipe through the daemon: ``("", built)``, or the build failure and False.

    ``built`` is False when the package was already installed (nothing was built).
    """
    version = recipe.metadata.version if not recipe.is_host else "*"
    started = time.monotonic()
    try:
        await client.call("packages.install", {"language": recipe.package, "version": version})
    except PistondError as exc:
        if exc.message != "Already installed":
            echo(f"{recipe_key(recipe)}: build failed: {exc.message}")
            return exc.message, False
        echo(f"{recipe_key(recipe)}: already installed")
        return "", False
    echo(f"{recipe_key(recipe)}: installed ({time.monotonic() - started:.0f} s)")
    return "", True


async def check_recipe(
    client: PackagesClient,
    recipe: Recipe,
    packages_directory: Path,
    echo: Callable[[str], None],
    *,
    failure: str = "",
) -> list[Outcome]:
    """Run each test of one (installed) recipe; a build ``failure`` is one failed row."""
    source = source_kind(recipe.source)
    version = recipe.metadata.version
    key = recipe_key(recipe)
    if failure:
        return [Outcome(recipe.package, version, (), source, 0, 0, 0, f"build: {failure}", key)]
    if recipe.is_host:
        matching = [
            layout
            for layout in installed_packages(packages_directory)
            if layout.package == recipe.package
            and "host" in layout.read_pkg_info().get("source", {})
        ]
        if not matching:
            return [Outcome(recipe.package, version, (), source, 0, 0, 0, "not installed", key)]
        version = matching[-1].version
    info = PackageLayout.of(packages_directory, recipe.package, version).read_pkg_info()
    runtimes = [r for r in await client.call("runtimes", {}) if r["version"] == version]
    outcomes = []
    for test in recipe_tests(recipe):
        runtime = _test_language(runtimes, recipe.package, test.suffix.lstrip("."))
        if runtime is None:
            outcomes.append(
                Outcome(
                    recipe.package, version, (), source, 0, 0, 0, f"no runtime for {test.name}", key
                )
            )
            continue
        latency, result = await run_test(client, runtime["language"], version, test)
        echo(f"{runtime['language']}-{version} {test.name}: {result} ({latency} ms)")
        outcomes.append(
            Outcome(
                runtime["language"],
                version,
                tuple(runtime["aliases"]),
                source,
                int(info.get("root_size", 0)),
                int(info.get("build_time_ms", 0)),
                latency,
                result,
                key,
            )
        )
    return outcomes


def disk_use(packages_directory: Path) -> DiskUse:
    """Root bytes summed per installed package, and with shared (hard-linked) inodes once."""
    roots = [
        layout.root for layout in installed_packages(packages_directory) if layout.root.is_dir()
    ]
    before = sum(fstree.tree_size(root) for root in roots)
    seen: set[tuple[int, int]] = set()
    after = 0
    for root in roots:
        for entry in fstree.walk_files(root):
            info = entry.lstat()
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                after += info.st_size
    return DiskUse(before, after, len(roots))


def _size(count: int) -> str:
    return f"{count / 1e9:.1f} GB" if count >= 1e10 else f"{count / 1e6:.0f} MB"


def render(summary: Summary, notes: str = "") -> str:
    """The Markdown of docs/languages.md."""
    outcomes = sorted(summary.outcomes, key=lambda o: (o.language, _version_key(o.version)))
    ok = [o for o in outcomes if o.result == "OK"]
    languages = sorted({o.language for o in ok})
    lines = [
        "# Languages",
        "",
        "Generated by `python -m pistond.ppman.matrix`: every recipe of `packages/` installed",
        "with `packages.install` (built from scratch), then each of its tests run through the",
        "daemon as a user's program.",
        "",
        f"**{len(languages)} languages, {len(ok)} runtimes** (language-version pairs) pass their",
        f"tests{'' if len(ok) == len(outcomes) else f'; {len(outcomes) - len(ok)} rows fail'}. "
        f"The run took {summary.seconds / 60:.0f} minutes ({summary.jobs} builds at a time, "
        f"then the tests one by one): {_provenance(summary)} The {summary.disk.roots} "
        f"root filesystems hold {_size(summary.disk.before)} counted root by root and "
        f"{_size(summary.disk.after)} on disk after hard-link deduplication.",
        "",
        "| language | version | aliases | source | root size | build time "
        "| hello-world latency | result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        size = _size(o.root_size) if o.root_size else "-"
        build = f"{o.build_time_ms / 1000:.0f} s" if o.build_time_ms else "-"
        lines.append(
            f"| {o.language} | {o.version} | {', '.join(o.aliases)} | {o.source} | {size} "
            f"| {build} | {o.latency_ms} ms | {o.result} |"
        )
    covered = set(languages).union(*(o.aliases for o in ok))
    missing = [name for name in PISTON_LANGUAGES if name not in covered]
    lines += [
        "",
        "## Piston languages not in the table",
        "",
        "Every language of Piston's package repository that this table lacks, and why.",
        "",
        "| Piston language | reason |",
        "|---|---|",
    ]
    for name in missing:
        reason = UNAVAILABLE.get(name, "no recipe passed its test in this run")
        lines.append(f"| {name} | {reason} |")
    text = "\n".join(lines) + "\n"
    return text + ("\n" + notes if notes else "")


def _provenance(summary: Summary) -> str:
    """Which roots this run built, and the build time the table's rows add up to."""
    total = sum(o.build_time_ms for o in summary.outcomes) / 3_600_000
    recorded = f"the build times, recorded by each root when it was built, add up to {total:.1f} h."
    if not summary.reused:
        return f"it built all {summary.built} recipes it installed; {recorded}"
    return (
        f"it built {summary.built} recipes and found {summary.reused} already built in its "
        f"data directory by an earlier run; {recorded}"
    )


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(
        int(part) if part.isdigit() else 0 for part in version.split("-", maxsplit=1)[0].split(".")
    )


def read_previous(output: Path) -> tuple[list[Outcome], str]:
    """The JSON rows of an earlier run and the notes part of its Markdown (both may be empty)."""
    rows: list[Outcome] = []
    json_path = output.with_suffix(".json")
    if json_path.is_file():
        data = json.loads(json_path.read_text(encoding="utf-8"))
        for item in data.get("outcomes", data) if isinstance(data, dict) else data:
            rows.append(Outcome(**{**item, "aliases": tuple(item["aliases"])}))
    notes = ""
    if output.is_file():
        text = output.read_text(encoding="utf-8")
        if NOTES_MARKER in text:
            notes = text[text.index(NOTES_MARKER) :]
    return rows, notes


def write_report(output: Path, summary: Summary, notes: str) -> None:
    """Write the Markdown table and a JSON copy beside it."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render(summary, notes), encoding="utf-8")
    output.with_suffix(".json").write_text(
        json.dumps(
            {
                "seconds": round(summary.seconds),
                "jobs": summary.jobs,
                "built": summary.built,
                "reused": summary.reused,
                "disk": attrs.asdict(summary.disk),
                "outcomes": [attrs.asdict(o) for o in summary.outcomes],
            },
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )


def select(recipes: Sequence[Recipe], selection: Sequence[str]) -> list[Recipe]:
    """The recipes named by package or ``package-version``; when nothing is named, all but the
    host recipes (their runtimes are the host's own binaries, not built)."""
    if not selection:
        return [recipe for recipe in recipes if not recipe.is_host]
    return [
        recipe
        for recipe in recipes
        if recipe.package in selection or recipe_key(recipe) in selection
    ]


async def run_matrix(
    socket_path: str,
    selection: list[str],
    output: Path,
    recipes: Path | None,
    *,
    jobs: int = 2,
    merge: bool = False,
    echo: Callable[[str], None] = print,
) -> bool:
    """Build, then test, the selected recipes; write the report. True if every row is OK."""
    from pistond.ppman.manager import PackageManager  # noqa: PLC0415 (only the CLI needs it)
    from pistond.rpc.client import open_rpc_client  # noqa: PLC0415 (only the CLI needs a client)

    started = time.monotonic()
    config = load_config(os.environ)
    directories = [recipes] if recipes is not None else PackageManager(config).recipe_directories()
    chosen = select(find_recipes(directories), selection)
    failures: dict[str, str] = {}
    built: dict[str, bool] = {}
    limiter = trio.CapacityLimiter(max(1, jobs))
    async with open_rpc_client(socket_path) as client:

        async def build(recipe: Recipe) -> None:
            async with limiter:
                key = recipe_key(recipe)
                failures[key], built[key] = await install_recipe(client, recipe, echo)

        async with trio.open_nursery() as nursery:
            for recipe in chosen:
                nursery.start_soon(build, recipe)
        outcomes: list[Outcome] = []
        for recipe in chosen:
            outcomes += await check_recipe(
                client,
                recipe,
                config.packages_directory,
                echo,
                failure=failures[recipe_key(recipe)],
            )
    previous, notes = await trio.to_thread.run_sync(read_previous, output)
    if merge:
        redone = {recipe_key(recipe) for recipe in chosen}
        outcomes = [o for o in previous if o.package not in redone] + outcomes
    disk = await trio.to_thread.run_sync(disk_use, config.packages_directory)
    fresh = sum(built.values())
    reused = sum(1 for key, made in built.items() if not made and not failures[key])
    summary = Summary(tuple(outcomes), disk, time.monotonic() - started, jobs, fresh, reused)
    await trio.to_thread.run_sync(write_report, output, summary, notes)
    return all(o.result == "OK" for o in outcomes)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m pistond.ppman.matrix", description=__doc__)
    parser.add_argument("packages", nargs="*", help="package or package-version (default: all)")
    parser.add_argument("--socket", default=os.environ.get("PISTON_SOCKET", DEFAULT_SOCKET))
    parser.add_argument("--output", type=Path, default=Path("docs/languages.md"))
    parser.add_argument(
        "--recipes", type=Path, default=None, help="recipe tree (default: the daemon's recipes)"
    )
    parser.add_argument("--jobs", type=int, default=2, help="builds at a time (default 2)")
    parser.add_argument(
        "--merge", action="store_true", help="keep the rows of recipes not selected in this run"
    )
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite the table from its JSON copy"
    )
    args = parser.parse_args(argv)
    if args.render_only:
        rows, notes = read_previous(args.output)
        data = json.loads(args.output.with_suffix(".json").read_text(encoding="utf-8"))
        summary = Summary(
            tuple(rows),
            DiskUse(**data["disk"]),
            data["seconds"],
            data["jobs"],
            data.get("built", 0),
            data.get("reused", 0),
        )
        write_report(args.output, summary, notes)
        return 0 if all(o.result == "OK" for o in rows) else 1

    def echo(line: str) -> None:
        print(line, flush=True)

    ok = trio.run(
        lambda: run_matrix(
            args.socket,
            args.packages,
            args.output,
            args.recipes,
            jobs=args.jobs,
            merge=args.merge,
            echo=echo,
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
