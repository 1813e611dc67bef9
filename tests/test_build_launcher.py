"""build_hooks.launcher: the native launcher is compiled at install, or its absence is said.

Rules: each test compiles a copy of the real sources in tmp_path (never the tree's own
executable); a missing compiler is a ``CC`` naming nothing that exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from build_hooks import launcher
from pistond.sandbox import launchspec

TREE = Path(__file__).resolve().parents[1]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A source tree holding a copy of the launcher's sources."""
    target = tmp_path / launcher.SOURCES
    target.mkdir(parents=True)
    for source in (TREE / launcher.SOURCES).iterdir():
        if source.suffix in (".c", ".h"):
            shutil.copy2(source, target / source.name)
    return tmp_path


def _version(executable: Path) -> str:
    answer = subprocess.run(
        [str(executable), "--version"], capture_output=True, text=True, check=True
    )
    return answer.stdout.strip()


@pytest.fixture
def compiler() -> None:
    """Skip where the host has no C compiler (bootstrap installs one)."""
    if launcher.find_compiler() is None:
        pytest.skip("no C compiler on this host")


def test_build_compiles_a_working_launcher(root: Path, compiler: None) -> None:
    """The executable is built beside its sources and speaks this protocol version."""
    built = launcher.build_launcher(root)
    assert built == root / launcher.SOURCES / launcher.EXECUTABLE
    assert os.access(built, os.X_OK)
    assert _version(built) == f"pistond-launcher {launchspec.PROTOCOL_VERSION}"


def test_build_is_skipped_while_up_to_date_and_redone_after_a_change(
    root: Path, compiler: None
) -> None:
    """A second build keeps the executable; a newer source rebuilds it."""
    built = launcher.build_launcher(root)
    assert built is not None
    first = built.stat().st_ino
    assert launcher.build_launcher(root) == built
    assert built.stat().st_ino == first
    source = root / launcher.SOURCES / "main.c"
    later = built.stat().st_mtime + 5
    os.utime(source, (later, later))
    assert launcher.build_launcher(root) == built
    assert built.stat().st_ino != first


def test_build_skip_mode_builds_nothing(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PISTOND_LAUNCHER_BUILD=skip: nothing is compiled."""
    monkeypatch.setenv(launcher.MODE_VARIABLE, "skip")
    assert launcher.build_launcher(root) is None
    assert not (root / launcher.SOURCES / launcher.EXECUTABLE).exists()


def test_build_without_compiler_warns_or_fails_by_mode(
    root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No compiler: a warning in auto mode, an error in require mode."""
    monkeypatch.setenv("CC", "/nonexistent/cc")
    assert launcher.build_launcher(root) is None
    assert "no C compiler found" in capsys.readouterr().err
    monkeypatch.setenv(launcher.MODE_VARIABLE, "require")
    with pytest.raises(launcher.LauncherBuildError, match="no C compiler found"):
        launcher.build_launcher(root)


def test_build_failure_keeps_the_previous_executable(
    root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], compiler: None
) -> None:
    """A source that does not compile: the compiler's words in the error (require) or a
    warning (auto), and the executable built before is still there, untouched."""
    built = launcher.build_launcher(root)
    assert built is not None
    before = built.read_bytes()
    broken = root / launcher.SOURCES / "netns.c"
    broken.write_text(broken.read_text() + "\nint broken(void) { return missing_name; }\n")
    later = built.stat().st_mtime + 5
    os.utime(broken, (later, later))
    assert launcher.build_launcher(root) is None
    assert "not built" in capsys.readouterr().err
    monkeypatch.setenv(launcher.MODE_VARIABLE, "require")
    with pytest.raises(launcher.LauncherBuildError, match="missing_name"):
        launcher.build_launcher(root)
    assert built.read_bytes() == before
    assert not list((root / launcher.SOURCES).glob(".pistond-launcher-*"))


def test_build_rejects_an_unknown_mode(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mode other than auto, require or skip is an error naming the variable."""
    monkeypatch.setenv(launcher.MODE_VARIABLE, "sometimes")
    with pytest.raises(launcher.LauncherBuildError, match=launcher.MODE_VARIABLE):
        launcher.build_launcher(root)
