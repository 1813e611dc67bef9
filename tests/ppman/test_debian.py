"""Debian suites: apt-cache policy read, pins and suite changes reported clearly."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import pytest

from pistond.errors import PackageError
from pistond.ppman import aptsources
from pistond.ppman.debian import (
    PrivateApt,
    SuiteState,
    check_pins,
    parse_policy,
    upstream_version,
)

if TYPE_CHECKING:
    from pathlib import Path

POLICY = """\
bash:
  Installed: (none)
  Candidate: 5.3-4
  Version table:
     5.3-4 500
        500 http://mirror.invalid/debian sid/main amd64 Packages
     5.2.37-2+b10 500
        500 http://mirror.invalid/debian trixie/main amd64 Packages
 *** 5.2.15-2+b13 100
        100 /var/lib/dpkg/status
lua5.4:
  Installed: (none)
  Candidate: (none)
  Version table:
"""


def test_debian_policy_parsed_candidate_first() -> None:
    """Every offered version per package, the candidate first; no candidate, no versions."""
    assert parse_policy(POLICY) == {
        "bash": ("5.3-4", "5.2.37-2+b10", "5.2.15-2+b13"),
        "lua5.4": (),
    }


@pytest.mark.parametrize(
    ("debian", "upstream"),
    [
        ("1:28.2+1-15+deb12u4", "28.2"),
        ("2.16.01-1", "2.16.01"),
        ("5.2.15-2+b13", "5.2.15"),
        ("21.0.9+10-1~deb13u1", "21.0.9"),
        ("2.1.0~beta3+dfsg-5.3", "2.1.0"),
        ("7", "7"),
        ("3.1.7+really3.1.2-0+deb12u1", "3.1.2"),
    ],
)
def test_debian_upstream_version(debian: str, upstream: str) -> None:
    """Epoch, revision and +/~ suffixes are dropped."""
    assert upstream_version(debian) == upstream


STATE = SuiteState("sid", ("deb http://mirror.invalid/debian sid main",), parse_policy(POLICY))


def test_debian_pins_and_main_version_hold() -> None:
    """A pin the suite still offers and a main package at the recipe's version pass."""
    check_pins(STATE, ["bash=5.2.37-2+b10"], "5.2.37", "bash")
    check_pins(STATE, ["bash"], "5.3.0", "bash")
    check_pins(STATE, ["bash"], "5.3", "bash")


def test_debian_suite_changes_are_clear_errors() -> None:
    """A package gone, a pin gone, or a suite that moved on say exactly that."""
    with pytest.raises(PackageError, match=r"sid has no package lua5\.4"):
        check_pins(STATE, ["lua5.4"], "5.4.9", "lua5.4")
    with pytest.raises(PackageError, match=r"sid no longer has bash 5\.2\.36-1 \(it has 5\.3-4\)"):
        check_pins(STATE, ["bash=5.2.36-1"], "5.2.36", "bash")
    with pytest.raises(
        PackageError, match=r"sid now has bash 5\.3-4, not 5\.2\.37: the suite changed"
    ):
        check_pins(STATE, ["bash"], "5.2.37", "bash")
    check_pins(STATE, ["bash"], "5.2.37", "")  # version_of = "": not checked


def test_debian_mirror_lines_for_any_suite(tmp_path: Path) -> None:
    """Every suite gets its companions; the private apt keeps only those the mirror serves."""
    (tmp_path / "sources.list").write_text(
        "deb http://mirror.invalid/debian bookworm main\n"
        "deb http://security.invalid/debian-security bookworm-security main\n"
    )
    base, lines = aptsources.mirror_lines("bullseye", tmp_path)
    assert base == "bullseye"
    assert lines == [
        "deb http://mirror.invalid/debian bullseye main",
        "deb http://mirror.invalid/debian bullseye-updates main",
        "deb http://security.invalid/debian-security bullseye-security main",
    ]
    base, lines = aptsources.mirror_lines("trixie-backports", tmp_path)
    assert base == "trixie"
    assert lines[-1] == "deb http://mirror.invalid/debian trixie-backports main"


@pytest.mark.slow
def test_debian_unserved_suite_is_a_clear_error(tmp_path: Path) -> None:
    """A suite the host's mirror does not serve is refused before any build, saying so."""
    if shutil.which("apt-get") is None:
        pytest.skip("apt-get is not installed")
    if not aptsources.host_sources():
        pytest.skip("the host has no Debian apt sources")
    apt = PrivateApt(tmp_path / "apt", {"PATH": "/usr/bin:/bin"}, timeout=120)
    with pytest.raises(PackageError, match="does not serve pistondnosuchsuite"):
        apt.suite("pistondnosuchsuite", ["bash"], lambda _line: None)
