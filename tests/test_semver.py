"""node-semver range semantics, as Piston resolves runtime and package versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pistond.semver import (
    InvalidRange,
    Range,
    Version,
    max_satisfying,
    parse_range,
    parse_version,
    satisfies,
)

MATCHES = [
    ("3.12.0", "3.12.0"),
    ("3.12.0", "v3.12.0"),
    ("3.12.0", "=3.12.0"),
    ("3.12.0", "3.x"),
    ("3.12.0", "3.X"),
    ("3.12.0", "3"),
    ("3.12.0", "3.12"),
    ("3.12.0", "*"),
    ("3.12.0", ""),
    ("3.12.0", ">=3.10"),
    ("3.12.0", ">= 3.10.0"),
    ("3.12.0", "^3.1"),
    ("3.1.5", "~3.1.2"),
    ("1.5.0", "1.2.3 - 2.0.0"),
    ("2.0.0", "1.2.3 - 2.0.0"),
    ("2.9.9", "1.2.3 - 2"),
    ("0.2.5", "^0.2.3"),
    ("0.0.3", "^0.0.3"),
    ("0.0.9", "^0.0.x"),
    ("0.9.0", "^0.x"),
    ("1.9.0", "~1"),
    ("5.0.0", "<4 || >=5"),
    ("1.2.0", ">1.1"),
    ("1.1.9", "<=1.1"),
    ("1.2.3-beta.2", "1.2.3-beta.2"),
    ("1.2.3-beta.3", ">=1.2.3-beta.2"),
    ("1.2.3-beta.3", "~1.2.3-beta.2"),
    ("1.2.4", "~1.2.3-beta.2"),
    ("1.0.0", "1.0.0+build.5"),
]

MISSES = [
    ("3.12.0", "3.11"),
    ("3.12.0", "<3.12"),
    ("2.0.0", "^1.2.3"),
    ("0.3.0", "^0.2.3"),
    ("0.0.4", "^0.0.3"),
    ("1.3.0", "~1.2.3"),
    ("2.0.1", "1.2.3 - 2.0.0"),
    ("1.2.0", ">1.2.0"),
    ("1.2.0", "<=1.1"),
    ("1.2.0", ">*"),
    ("1.2.0", "<*"),
    ("4.5.0", "<4 || >=5"),
    ("3.10.0-alpha.7", "*"),
    ("3.10.0-alpha.7", "3.x"),
    ("3.10.0-alpha.7", ">=3.9"),
    ("3.10.0-alpha.7", "^3.9.0"),
    ("1.2.4-beta", ">=1.2.3-beta.2"),
    ("2.0.0-rc.1", "<2.0.0"),
    ("2.0.0-rc.1", "^1"),
    ("3.12.0", "latest"),
    ("3.12.0", "3.12.0.1"),
    ("3.12.0", ">>3"),
    ("not-a-version", "*"),
    ("3.12", "*"),
]


@pytest.mark.parametrize(("version", "range_text"), MATCHES)
def test_semver_range_matches(version: str, range_text: str) -> None:
    """Each version satisfies each range node-semver says it satisfies."""
    assert satisfies(version, range_text)


@pytest.mark.parametrize(("version", "range_text"), MISSES)
def test_semver_range_misses(version: str, range_text: str) -> None:
    """Versions outside a range, prereleases reached only by their own tuple, invalid input."""
    assert not satisfies(version, range_text)


def test_semver_invalid_range_parses_to_none() -> None:
    """An invalid range raises InvalidRange on parse and is None from parse_range."""
    with pytest.raises(InvalidRange):
        Range.parse("latest")
    assert parse_range("latest") is None
    assert parse_range("^1.2 || 3.x") is not None


def test_semver_precedence_follows_semver_spec() -> None:
    """Precedence: 1.0.0-alpha < alpha.1 < alpha.beta < beta < beta.2 < beta.11 < rc.1 < 1.0.0."""
    chain = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.10.0",
        "2.0.0",
    ]
    parsed = [Version.parse(text) for text in chain]
    assert parsed == sorted(reversed(parsed))
    assert Version.parse("1.0.0+a") == Version.parse("1.0.0+b")
    assert str(Version.parse("v1.2.3-rc.1+b.2")) == "1.2.3-rc.1+b.2"


def test_semver_parse_rejects_leading_zeros_and_partials() -> None:
    """Strict parsing: no leading zeros, exactly three numeric components."""
    assert parse_version("01.2.3") is None
    assert parse_version("1.2") is None
    assert parse_version("1.2.3-01") is None
    assert parse_version("1.2.3-0a") == Version(1, 2, 3, ("0a",))


def test_semver_max_satisfying_highest_wins() -> None:
    """The highest satisfying version is returned as written; None when nothing matches."""
    versions = ["3.9.4", "3.12.0", "3.10.0", "3.13.0-rc.1", "bogus"]
    assert max_satisfying(versions, "*") == "3.12.0"
    assert max_satisfying(versions, "3.10") == "3.10.0"
    assert max_satisfying(versions, "3.13.0-rc.1") == "3.13.0-rc.1"
    assert max_satisfying(versions, "4") is None
    assert max_satisfying(versions, "latest") is None


def test_semver_max_satisfying_with_key_keeps_the_first_of_equals() -> None:
    """Items are ranked by their key's version; of equal versions the first one wins."""
    items = [("recipe", "1.2.0"), ("index", "1.2.0"), ("index", "1.10.0-rc.1"), ("x", "1.1.9")]
    assert max_satisfying(items, "1.x", key=lambda item: item[1]) == ("recipe", "1.2.0")
    assert max_satisfying(items, "<1.2", key=lambda item: item[1]) == ("x", "1.1.9")
    assert max_satisfying(items, "2", key=lambda item: item[1]) is None


@given(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50))
def test_semver_exact_and_caret_contain_version(major: int, minor: int, patch: int) -> None:
    """Every release satisfies itself, its X-ranges, its caret and tilde ranges."""
    text = f"{major}.{minor}.{patch}"
    for range_text in (text, f"{major}.x", f"{major}.{minor}", f"^{text}", f"~{text}", "*"):
        assert satisfies(text, range_text)
    assert not satisfies(text, f">{text}")
    assert not satisfies(f"{text}-0", f"^{text}")


# ---- node-semver's own fixtures (tests/data/node-semver, ISC licence) ----------------------

FIXTURES = Path(__file__).parent / "data" / "node-semver"
DEFAULTS = {"loose": False, "includePrerelease": False}


def _fixture(name: str) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads((FIXTURES / f"{name}.json").read_text())
    return cases


def _default_cases(name: str) -> list[dict[str, Any]]:
    """The cases of a fixture that use node-semver's default options, as Piston calls it."""
    return [case for case in _fixture(name) if case.get("options", DEFAULTS) == DEFAULTS]


def _case_id(case: dict[str, Any]) -> str:
    return " | ".join(str(value) for key, value in case.items() if key != "options")


@pytest.mark.parametrize("case", _default_cases("range-include"), ids=_case_id)
def test_semver_node_fixture_range_include(case: dict[str, Any]) -> None:
    """node-semver's range-include.js: each version satisfies its range."""
    assert satisfies(case["version"], case["range"])


@pytest.mark.parametrize("case", _default_cases("range-exclude"), ids=_case_id)
def test_semver_node_fixture_range_exclude(case: dict[str, Any]) -> None:
    """node-semver's range-exclude.js: no version satisfies its range (prereleases included)."""
    assert not satisfies(case["version"], case["range"])


@pytest.mark.parametrize("case", _default_cases("comparisons"), ids=_case_id)
def test_semver_node_fixture_comparisons(case: dict[str, Any]) -> None:
    """node-semver's comparisons.js: the first version has the higher precedence."""
    higher, lower = Version.parse(case["a"]), Version.parse(case["b"])
    assert higher > lower
    assert lower < higher
    assert higher != lower
    assert higher.compare(lower) == 1
    assert lower.compare(higher) == -1


@pytest.mark.parametrize("case", _default_cases("equality"), ids=_case_id)
def test_semver_node_fixture_equality(case: dict[str, Any]) -> None:
    """node-semver's equality.js: both spellings are the same version."""
    assert Version.parse(case["a"]) == Version.parse(case["b"])


@pytest.mark.parametrize("case", _fixture("valid-versions"), ids=_case_id)
def test_semver_node_fixture_valid_versions(case: dict[str, Any]) -> None:
    """node-semver's valid-versions.js: components, prerelease and build identifiers."""
    version = Version.parse(case["version"])
    assert version.release == (case["major"], case["minor"], case["patch"])
    assert list(version.prerelease) == case["prerelease"]
    assert list(version.build) == case["build"]


@pytest.mark.parametrize("case", _fixture("invalid-versions"), ids=lambda case: case["reason"])
def test_semver_node_fixture_invalid_versions(case: dict[str, Any]) -> None:
    """node-semver's invalid-versions.js: none of these is a version, loose or not."""
    assert parse_version(case["version"]) is None


def test_semver_node_fixtures_left_out_only_for_options() -> None:
    """Only cases that pass non-default options (loose, includePrerelease) are left out: Piston
    never passes options to node-semver."""
    for name in ("range-include", "range-exclude", "comparisons", "equality"):
        cases = _fixture(name)
        used = _default_cases(name)
        assert all(case["options"] != DEFAULTS for case in cases if case not in used)
        assert used, name
