"""Build the native launcher from its C sources with the host's compiler while pistond is built.

The sources are ``pistond/sandbox/launcher/*.c``; the executable, ``pistond-launcher``, is
written beside them (the wheel carries it as package data; an editable install uses it in
place). It is rebuilt only when a source is newer, and replaced atomically.

Without a C compiler the launcher is not built and a warning says so: the daemon then says so
in one line at start and uses the Python fork server. ``PISTOND_LAUNCHER_BUILD`` chooses:
``auto`` (default: build if a compiler exists), ``require`` (fail the build without one, as
CI does), ``skip`` (never build). ``CC`` names the compiler (default ``cc``, then ``gcc``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

SOURCES: Final = Path("pistond") / "sandbox" / "launcher"
EXECUTABLE: Final = "pistond-launcher"
MODE_VARIABLE: Final = "PISTOND_LAUNCHER_BUILD"
COMPILE_TIMEOUT: Final = 300
FLAGS: Final = (
    "-std=gnu11",
    "-O2",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-D_FORTIFY_SOURCE=2",
    "-fstack-protector-strong",
    "-fPIE",
    "-pie",
    "-Wl,-z,relro,-z,now",
)
"""Warnings are errors; hardened the way distributions build their own daemons."""


class LauncherBuildError(RuntimeError):
    """Raised by :func:`build_launcher` when a required launcher cannot be built."""


def _warn(text: str) -> None:
    print(f"pistond launcher: {text}", file=sys.stderr)


def find_compiler() -> list[str] | None:
    """The C compiler's argv: ``$CC``, else ``cc``, else ``gcc``; None if there is none."""
    configured = os.environ.get("CC")
    if configured:
        argv = shlex.split(configured)
        return argv if argv and shutil.which(argv[0]) else None
    for name in ("cc", "gcc"):
        found = shutil.which(name)
        if found:
            return [found]
    return None


def up_to_date(sources: Path) -> bool:
    """Whether the executable exists and is newer than every source file."""
    target = sources / EXECUTABLE
    if not target.is_file():
        return False
    built = target.stat().st_mtime
    return all(path.stat().st_mtime <= built for path in _source_files(sources))


def _source_files(sources: Path) -> list[Path]:
    return sorted([*sources.glob("*.c"), *sources.glob("*.h")])


def compile_launcher(compiler: list[str], sources: Path) -> Path:
    """Compile into a temporary file, then rename it over the executable.

    Raises:
        LauncherBuildError: the compiler failed (its last lines are in the message).
    """
    target = sources / EXECUTABLE
    fd, temporary = tempfile.mkstemp(prefix=".pistond-launcher-", dir=sources)
    os.close(fd)
    units = [str(path) for path in sorted(sources.glob("*.c"))]
    try:
        completed = subprocess.run(
            [*compiler, *FLAGS, "-o", temporary, *units],
            capture_output=True,
            text=True,
            timeout=COMPILE_TIMEOUT,
            check=False,
        )
        if completed.returncode != 0:
            tail = "\n".join((completed.stdout + completed.stderr).splitlines()[-30:])
            raise LauncherBuildError(f"the C compiler failed ({completed.returncode}):\n{tail}")
        os.chmod(temporary, 0o755)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target


def build_launcher(root: Path) -> Path | None:
    """Build the launcher under ``root`` (the source tree) as the mode asks.

    Returns the executable, or None when it was skipped.

    Raises:
        LauncherBuildError: the mode is ``require`` and there is no compiler, or compiling failed
            (in ``auto`` mode a failure is a warning).
    """
    mode = os.environ.get(MODE_VARIABLE, "auto").strip().lower()
    if mode not in ("auto", "require", "skip"):
        raise LauncherBuildError(f"{MODE_VARIABLE} must be auto, require or skip, not {mode!r}")
    sources = root / SOURCES
    if mode == "skip":
        return None
    if up_to_date(sources):
        return sources / EXECUTABLE
    compiler = find_compiler()
    if compiler is None:
        if mode == "require":
            raise LauncherBuildError("no C compiler found (set CC, or install gcc)")
        _warn("no C compiler found: not built; the daemon will use the Python fork server")
        return None
    try:
        return compile_launcher(compiler, sources)
    except (LauncherBuildError, OSError, subprocess.TimeoutExpired) as exc:
        if mode == "require":
            raise LauncherBuildError(str(exc)) from exc
        _warn(f"not built ({exc}); the daemon will use the Python fork server")
        return None
