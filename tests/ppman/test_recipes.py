"""Recipe format: metadata.json, source.toml sources and warm commands, host versions."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pistond.ppman.recipes import (
    DebianSource,
    HostSource,
    NpmSource,
    PypiSource,
    RecipeError,
    detect_version,
    find_recipes,
    load_recipe,
    normalize_version,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


def test_recipes_parse_every_source(
    tmp_path: Path, recipe: Callable[..., Path], host_bash: str
) -> None:
    """Each of [debian], [pypi], [npm], [host] parses into its record, with warm commands."""
    lua = recipe(
        tmp_path,
        "lua",
        "5.4.4",
        '[debian]\nsuite = "bookworm"\npackages = ["lua5.4"]\n'
        '[build]\nwarm = [["/usr/bin/lua5.4", "-v"]]\n',
    )
    zig = recipe(tmp_path, "zig", "0.13.0", '[pypi]\nrequirement = "ziglang==0.13.0.post1"\n')
    ts = recipe(
        tmp_path,
        "typescript",
        "5.4.5",
        '[npm]\nspec = ["typescript@5.4.5", "@types/node@20.1.0"]\ndebian_packages = ["nodejs"]\n',
    )
    host = recipe(tmp_path, "bash", "host", host_bash)
    assert load_recipe(lua).source == DebianSource("bookworm", ("lua5.4",))
    assert load_recipe(lua).warm == (("/usr/bin/lua5.4", "-v"),)
    assert load_recipe(zig).source == PypiSource("ziglang==0.13.0.post1")
    assert load_recipe(ts).source == NpmSource(
        ("typescript@5.4.5", "@types/node@20.1.0"), ("nodejs",)
    )
    loaded = load_recipe(host)
    assert isinstance(loaded.source, HostSource)
    assert loaded.is_host
    assert [p.name for p in loaded.files()] == [
        "metadata.json",
        "source.toml",
        "run",
        "environment",
    ]


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("", "exactly one of"),
        (
            '[debian]\nsuite = "bookworm"\npackages = ["a"]\n[pypi]\nrequirement = "x"\n',
            "exactly one",
        ),
        (
            '[debian]\nsuite = "../etc"\npackages = ["lua5.4"]\n',
            "debian.suite must be a Debian suite name",
        ),
        (
            '[debian]\nsuite = "sid"\npackages = ["lua5.4"]\nversion_of = "lua"\n',
            "debian.version_of must name one of packages",
        ),
        ('[pypi]\nrequirement = "vyxal"\nsdists = ["../x"]\n', "pypi.sdists must be a list"),
        ('[debian]\nsuite = "bookworm"\npackages = []\n', "debian.packages must be a non-empty"),
        ('[debian]\nsuite = "bookworm"\npackages = ["Bad Name"]\n', "debian.packages"),
        (
            '[debian]\nsuite = "bookworm"\npackages = ["a1"]\nextra = 1\n',
            "extra is not a known key",
        ),
        ('[pypi]\nrequirement = "x; rm -rf /"\n', "pypi.requirement must be"),
        ('[npm]\nspec = "typescript"\n', "npm.spec must be"),
        (
            '[debian]\nsuite = "bookworm"\npackages = ["a1"]\n[build]\nwarm = [["go"]]\n',
            "build.warm",
        ),
        ("[other]\nx = 1\n", "unknown table [other]"),
        ("[debian\n", "invalid TOML"),
    ],
)
def test_recipes_source_errors_name_the_file(
    tmp_path: Path, recipe: Callable[..., Path], source: str, reason: str
) -> None:
    """A bad source.toml is a RecipeError starting with the file's path."""
    directory = recipe(tmp_path, "lua", "5.4.4", source)
    with pytest.raises(RecipeError) as caught:
        load_recipe(directory)
    assert str(caught.value).startswith(f"{directory / 'source.toml'}: ")
    assert reason in str(caught.value)


def test_recipes_directory_must_match_metadata(
    tmp_path: Path, recipe: Callable[..., Path], host_bash: str
) -> None:
    """language and version must equal the directory names; host sources live in host/."""
    wrong = recipe(
        tmp_path,
        "lua",
        "5.4.4",
        '[debian]\nsuite = "bookworm"\npackages = ["lua5.4"]\n',
        metadata={"language": "lua", "version": "5.4.6"},
    )
    with pytest.raises(RecipeError, match=r"does not match the directory '5\.4\.4'"):
        load_recipe(wrong)
    misplaced = recipe(tmp_path, "bash", "5.2.15", host_bash)
    with pytest.raises(RecipeError, match=r"\[host\] recipes live in"):
        load_recipe(misplaced)


def test_recipes_find_skips_invalid(tmp_path: Path, recipe: Callable[..., Path]) -> None:
    """find_recipes keeps valid recipes in name order and skips broken ones; first dir wins."""
    recipe(tmp_path / "a", "lua", "5.4.4", '[debian]\nsuite = "bookworm"\npackages = ["lua5.4"]\n')
    recipe(tmp_path / "a", "bad", "1.0.0", "nonsense")
    recipe(tmp_path / "b", "lua", "5.4.4", '[debian]\nsuite = "trixie"\npackages = ["lua5.4"]\n')
    found = find_recipes([tmp_path / "a", tmp_path / "b", tmp_path / "missing"])
    assert [(r.package, r.source.suite) for r in found] == [("lua", "bookworm")]  # type: ignore[union-attr]


def test_recipes_host_version_detected() -> None:
    """The host's bash version is detected (as nobody) and normalised to semver."""
    source = HostSource(
        ("/bin/bash",),
        ("/bin/bash", "-c", "echo ${BASH_VERSINFO[0]}.${BASH_VERSINFO[1]}.${BASH_VERSINFO[2]}"),
    )
    version = detect_version(source)
    assert version is not None
    assert version.count(".") == 2
    assert detect_version(HostSource(("/nonexistent/bin",), ("/nonexistent/bin",))) is None
    assert normalize_version("Python 3.11") == "3.11.0"
    assert normalize_version("12") == "12.0.0"
    assert normalize_version("none") is None
