"""The matrix: each recipe installed through the daemon and its tests judged by their output."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pistond.errors import PackageError
from pistond.ppman.matrix import check_recipe, render
from pistond.ppman.recipes import load_recipe


class FakeDaemon:
    """Answers install, runtimes and execute like the daemon would for gcc's two languages."""

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        if method == "packages.install":
            raise PackageError("Already installed")
        if method == "runtimes":
            return [
                {"language": "c", "version": "12.2.0", "aliases": ["gcc"], "runtime": "gcc"},
                {"language": "c++", "version": "12.2.0", "aliases": ["cpp"], "runtime": "gcc"},
            ]
        assert params is not None
        ok = params["language"] == "c"
        return {
            "compile": {"stdout": ""},
            "run": {"stdout": "OK\n" if ok else "", "message": "boom"},
        }


async def test_matrix_runs_each_test_as_its_language(
    tmp_path: Path, recipe: Callable[..., Path]
) -> None:
    """test.c runs as c, test.cpp as c++ (by alias); non-OK output is reported."""
    source = recipe(
        tmp_path,
        "gcc",
        "12.2.0",
        '[debian]\nsuite = "bookworm"\npackages = ["gcc"]\n',
        metadata={
            "language": "gcc",
            "version": "12.2.0",
            "provides": [
                {"language": "c", "aliases": ["gcc"]},
                {"language": "c++", "aliases": ["cpp"]},
            ],
        },
        files={"test.c": "int main(){}", "test.cpp": "int main(){}"},
    )
    outcomes = await check_recipe(
        FakeDaemon(), load_recipe(source), tmp_path / "data", lambda _l: None
    )
    assert [(o.language, o.result) for o in outcomes] == [("c", "OK"), ("c++", "failed: boom")]
    table = render(outcomes)
    assert "| c | 12.2.0 | gcc | debian | - | - |" in table
