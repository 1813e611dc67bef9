"""The matrix: each recipe installed through the daemon and its tests judged by their output."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from pistond.errors import PackageError
from pistond.ppman.matrix import (
    DiskUse,
    Outcome,
    Summary,
    check_recipe,
    install_recipe,
    read_previous,
    recipe_tests,
    render,
    write_report,
)
from pistond.ppman.recipes import load_recipe

if TYPE_CHECKING:
    from collections.abc import Callable

GCC = {
    "language": "gcc",
    "version": "12.2.0",
    "provides": [
        {"language": "c", "aliases": ["gcc"]},
        {"language": "c++", "aliases": ["cpp"]},
    ],
}


class FakeDaemon:
    """Answers install, runtimes and execute like the daemon would for gcc's two languages."""

    def __init__(self) -> None:
        self.executed: list[dict[str, Any]] = []

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        if method == "packages.install":
            raise PackageError("Already installed")
        if method == "runtimes":
            return [
                {"language": "c", "version": "12.2.0", "aliases": ["gcc"], "runtime": "gcc"},
                {"language": "c++", "version": "12.2.0", "aliases": ["cpp"], "runtime": "gcc"},
            ]
        assert params is not None
        self.executed.append(params)
        ok = params["language"] == "c" and params.get("stdin") == "input\n"
        return {
            "compile": {"stdout": ""},
            "run": {"stdout": "OK\n" if ok else "", "message": "boom"},
        }


async def test_matrix_runs_each_test_as_its_language(
    tmp_path: Path, recipe: Callable[..., Path]
) -> None:
    """test.c runs as c (with test.c.stdin as stdin), test.cpp as c++ (by alias); non-OK
    output is reported; a .stdin file is no test of its own."""
    source = recipe(
        tmp_path,
        "gcc",
        "12.2.0",
        '[debian]\nsuite = "bookworm"\npackages = ["gcc"]\n',
        metadata=GCC,
        files={"test.c": "int main(){}", "test.cpp": "int main(){}", "test.c.stdin": "input\n"},
    )
    loaded = load_recipe(source)
    assert [path.name for path in recipe_tests(loaded)] == ["test.c", "test.cpp"]
    daemon = FakeDaemon()
    assert await install_recipe(daemon, loaded, lambda _l: None) == ("", False)  # installed
    outcomes = await check_recipe(daemon, loaded, tmp_path / "data", lambda _l: None)
    assert [(o.language, o.result) for o in outcomes] == [("c", "OK"), ("c++", "failed: boom")]
    assert "stdin" not in daemon.executed[1]
    summary = Summary(tuple(outcomes), DiskUse(3_000_000_000, 1_000_000_000, 2), 600.0, 2, 1, 0)
    table = render(summary)
    assert "it built all 1 recipes it installed" in table
    reused = render(attrs.evolve(summary, built=0, reused=1))
    assert "it built 0 recipes and found 1 already built in its data directory" in reused
    assert "| c | 12.2.0 | gcc | debian | - | - |" in table
    assert "**1 languages, 1 runtimes**" in table
    assert "3000 MB counted root by root and 1000 MB on disk" in table
    assert "The run took 10 minutes" in table


def test_matrix_lists_missing_piston_languages_with_reasons() -> None:
    """Every Piston language without an OK row is listed, with its reason; aliases count."""
    rows = (
        Outcome("r", "4.2.2", ("r", "rscript"), "debian", 1, 1, 1, "OK"),
        Outcome("dash", "0.5.12", ("dash",), "debian", 1, 1, 1, "failed: boom"),
    )
    table = render(Summary(rows, DiskUse(1, 1, 1), 60.0, 1))
    missing = table.split("## Piston languages not in the table")[1]
    assert "| rscript |" not in missing
    assert "| dash | no recipe passed its test in this run |" in missing
    assert "| dart | no package in any Debian suite, on PyPI or on npm |" in missing
    assert "| nasm | 32-bit" in missing


async def test_matrix_build_failure_is_a_row(tmp_path: Path, recipe: Callable[..., Path]) -> None:
    """A recipe that fails to build is one failed row naming the reason."""
    loaded = load_recipe(
        recipe(tmp_path, "x", "1.0.0", '[debian]\nsuite = "bookworm"\npackages = ["xx"]\n')
    )
    outcomes = await check_recipe(FakeDaemon(), loaded, tmp_path, print, failure="no such thing")
    assert [o.result for o in outcomes] == ["build: no such thing"]


def test_matrix_report_keeps_notes_and_round_trips(tmp_path: Path) -> None:
    """The JSON copy reads back; text from the notes marker on survives a rewrite."""
    output = tmp_path / "languages.md"
    output.write_text("old table\n<!-- notes -->\n## Notes\nkept\n")
    rows = (Outcome("c", "12.2.0", ("gcc",), "debian", 5, 6, 7, "OK", "gcc-12.2.0"),)
    _previous, notes = read_previous(output)
    write_report(output, Summary(rows, DiskUse(1, 1, 1), 1.0, 1), notes)
    again, notes_again = read_previous(output)
    assert again == list(rows)
    assert notes_again == "<!-- notes -->\n## Notes\nkept\n"
    assert output.read_text().endswith("## Notes\nkept\n")
    assert "old table" not in output.read_text()
