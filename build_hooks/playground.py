"""Build the playground's JavaScript bundle from npm packages while pistond is built.

``npm ci --ignore-scripts`` installs the packages locked in ``web/playground/package-lock.json``
from the registry npm is configured with (no install script runs), then ``node build.mjs``
bundles them with esbuild into ``pistond/gateway/playground/static/build/``, which the wheel
carries. ``npm ci`` is skipped when ``node_modules`` already matches the lock file.

Without node or npm the bundle is not built and a warning says so: the gateway still serves the
API, and the page explains why it is missing. ``PISTOND_PLAYGROUND_BUILD`` chooses: ``auto``
(default: build if node and npm exist), ``require`` (fail the build without them, as CI does),
``skip`` (never build).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

SOURCES: Final = Path("web") / "playground"
OUTPUT: Final = Path("pistond") / "gateway" / "playground" / "static" / "build"
MODE_VARIABLE: Final = "PISTOND_PLAYGROUND_BUILD"
NPM_TIMEOUT: Final = 900
BUNDLE_TIMEOUT: Final = 300
_STAMP: Final = ".pistond-lock-sha256"


class PlaygroundBuildError(RuntimeError):
    """Raised by :func:`build_playground` when a required bundle cannot be built."""


def _warn(text: str) -> None:
    print(f"pistond playground: {text}", file=sys.stderr)


def _lock_digest(sources: Path) -> str:
    return hashlib.sha256((sources / "package-lock.json").read_bytes()).hexdigest()


def _run(argv: list[str], cwd: Path, timeout: int) -> None:
    completed = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if completed.returncode != 0:
        tail = "\n".join((completed.stdout + completed.stderr).splitlines()[-30:])
        raise PlaygroundBuildError(f"{' '.join(argv[:2])} failed ({completed.returncode}):\n{tail}")


def install_packages(npm: str, sources: Path) -> None:
    """``npm ci`` unless ``node_modules`` was installed from this very lock file."""
    stamp = sources / "node_modules" / _STAMP
    digest = _lock_digest(sources)
    if stamp.is_file() and stamp.read_text().strip() == digest:
        return
    _run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], sources, NPM_TIMEOUT)
    stamp.write_text(digest + "\n")


def bundle(node: str, sources: Path, output: Path) -> None:
    """Bundle into a fresh directory, then put it in place of ``output``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=".build-", dir=output.parent))
    try:
        _run([node, "build.mjs", str(fresh)], sources, BUNDLE_TIMEOUT)
        fresh.chmod(0o755)
        old = output.with_name(output.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if output.exists():
            output.rename(old)
        fresh.rename(output)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)


def build_playground(root: Path) -> bool:
    """Build the bundle under the project ``root``; return whether it was built.

    Raises:
        PlaygroundBuildError: a step failed, or node or npm is missing, in ``require`` mode
            (in ``auto`` mode a missing node or npm only warns).
    """
    mode = os.environ.get(MODE_VARIABLE, "auto").strip().lower() or "auto"
    if mode not in {"auto", "require", "skip"}:
        raise PlaygroundBuildError(f"{MODE_VARIABLE} must be auto, require or skip, not {mode!r}")
    root = root.resolve()
    sources = root / SOURCES
    if mode == "skip" or not (sources / "package.json").is_file():
        return False
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        if mode == "require":
            raise PlaygroundBuildError("node and npm are needed to build the playground")
        _warn("node or npm not found: the gateway will serve the API without the playground page")
        return False
    install_packages(npm, sources)
    bundle(node, sources, root / OUTPUT)
    return True
