"""build_hooks/playground.py: the playground bundle step of the install.

Rules: no test here calls npm or the registry (the real build is proven by the install itself,
tests/gateway/test_playground.py checks its output); node and npm are stand-in scripts in a
temporary PATH, so each rule (modes, missing tools, lock stamp, atomic swap) is observed
directly.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_hooks.playground", ROOT / "build_hooks" / "playground.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


hooks = _load()


def _tool(directory: Path, name: str, script: str) -> Path:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project root with the playground's package files (no real packages)."""
    sources = tmp_path / "root" / hooks.SOURCES
    sources.mkdir(parents=True)
    (sources / "package.json").write_text('{"name": "x"}')
    (sources / "package-lock.json").write_text('{"lockfileVersion": 3}')
    return tmp_path / "root"


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty directory as the whole PATH: add stand-in tools to it."""
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", str(directory))
    return directory


def test_skip_mode_builds_nothing(
    project: Path, tools: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PISTOND_PLAYGROUND_BUILD=skip: no bundle, no tool run."""
    monkeypatch.setenv(hooks.MODE_VARIABLE, "skip")
    _tool(tools, "node", "exit 1")
    _tool(tools, "npm", "exit 1")
    assert hooks.build_playground(project) is False
    assert not (project / hooks.OUTPUT).exists()


def test_auto_without_npm_warns_and_builds_nothing(
    project: Path, tools: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """auto (the default) without node or npm: a warning, no bundle, no failure."""
    monkeypatch.delenv(hooks.MODE_VARIABLE, raising=False)
    assert hooks.build_playground(project) is False
    assert "without the playground page" in capsys.readouterr().err


def test_require_without_npm_fails(
    project: Path, tools: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """require (CI, bootstrap) without node or npm fails the build."""
    monkeypatch.setenv(hooks.MODE_VARIABLE, "require")
    with pytest.raises(hooks.PlaygroundBuildError, match="node and npm are needed"):
        hooks.build_playground(project)


def test_unknown_mode_fails(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any other mode is an error naming the choices."""
    monkeypatch.setenv(hooks.MODE_VARIABLE, "sometimes")
    with pytest.raises(hooks.PlaygroundBuildError, match="auto, require or skip"):
        hooks.build_playground(project)


def test_build_runs_npm_ci_once_per_lock_file_and_swaps_the_bundle(
    project: Path, tools: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """npm ci runs without install scripts, only when the lock changed; the bundle is replaced."""
    monkeypatch.setenv(hooks.MODE_VARIABLE, "require")
    calls = tmp_path / "npm-calls"
    _tool(tools, "npm", f'echo "$@" >> {calls}\n/bin/mkdir -p node_modules')
    _tool(tools, "node", 'echo "export const built = 1;" > "$2/playground.js"')
    output = project / hooks.OUTPUT
    output.mkdir(parents=True)
    (output / "stale.js").write_text("old")
    assert hooks.build_playground(project) is True
    assert (output / "playground.js").read_text() == "export const built = 1;\n"
    assert not (output / "stale.js").exists()
    assert calls.read_text().splitlines() == ["ci --ignore-scripts --no-audit --no-fund"]
    stamp = project / hooks.SOURCES / "node_modules" / ".pistond-lock-sha256"
    lock = (project / hooks.SOURCES / "package-lock.json").read_bytes()
    assert stamp.read_text().strip() == hashlib.sha256(lock).hexdigest()
    assert hooks.build_playground(project) is True
    assert len(calls.read_text().splitlines()) == 1
    (project / hooks.SOURCES / "package-lock.json").write_text('{"lockfileVersion": 3, "x": 1}')
    assert hooks.build_playground(project) is True
    assert len(calls.read_text().splitlines()) == 2
    assert sorted(p.name for p in output.parent.iterdir()) == ["build"]


def test_failed_bundle_keeps_the_previous_one(
    project: Path, tools: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing bundler raises with its output and leaves the installed bundle as it was."""
    monkeypatch.setenv(hooks.MODE_VARIABLE, "auto")
    _tool(tools, "npm", "/bin/mkdir -p node_modules")
    _tool(tools, "node", 'echo "esbuild: syntax error in main.js" >&2\nexit 3')
    output = project / hooks.OUTPUT
    output.mkdir(parents=True)
    (output / "playground.js").write_text("previous")
    with pytest.raises(hooks.PlaygroundBuildError, match=r"syntax error in main\.js"):
        hooks.build_playground(project)
    assert (output / "playground.js").read_text() == "previous"
    assert sorted(p.name for p in output.parent.iterdir()) == ["build"]


def test_lock_file_names_no_registry_host() -> None:
    """The committed lock file records no download addresses (npm omits them by setting)."""
    lock = (ROOT / hooks.SOURCES / "package-lock.json").read_text()
    assert '"resolved"' not in lock
    assert "://" not in lock
    assert "omit-lockfile-registry-resolved=true" in (ROOT / hooks.SOURCES / ".npmrc").read_text()
