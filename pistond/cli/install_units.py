"""``pistond install-units``: the shipped systemd units and sysusers.d file, for this installation.

The units in ``systemd/`` start ``/usr/local/bin/pistond`` and ``/usr/local/bin/pistond-gateway``;
the written copies start the entry points of the installation that runs this command (a
virtualenv's ``bin/``, or ``--bin-dir``). Everything else is copied as shipped, so hardening
stays the reviewed one; local changes belong in drop-ins (``systemctl edit pistond.service``).
After writing, ``systemd-sysusers`` creates the ``pistond`` group and the ``pistond-gateway``
user, and a running systemd is told to reload.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sysconfig
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs

from pistond._version import __version__
from pistond.resources import UNITS, shipped

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

UNIT_FILES: Final = (
    "pistond.socket",
    "pistond.service",
    "pistond.slice",
    "pistond-gateway.service",
)
SYSUSERS_FILE: Final = "sysusers.d/pistond.conf"
COMMANDS: Final = ("pistond", "pistond-gateway")
"""The console scripts the units start."""
SHIPPED_BIN_DIR: Final = "/usr/local/bin"
"""Where the shipped units expect the commands."""
UNIT_DIR: Final = Path("/etc/systemd/system")
SYSUSERS_DIR: Final = Path("/etc/sysusers.d")
NEXT_STEP: Final = "systemctl enable --now pistond.socket pistond-gateway.service"
_EXEC_START = re.compile(
    rf"^ExecStart={re.escape(SHIPPED_BIN_DIR)}/({'|'.join(COMMANDS)})$", re.MULTILINE
)


class InstallError(Exception):
    """Raised by :func:`install_units` when the units cannot be rendered or written."""


@attrs.frozen
class Written:
    """One installed file and whether it changed."""

    path: Path
    changed: bool


@attrs.frozen
class Destinations:
    """Where the files go; ``root`` prefixes both (an image being built, a package's DESTDIR)."""

    root: Path = Path("/")
    unit_dir: Path = UNIT_DIR
    sysusers_dir: Path = SYSUSERS_DIR

    def under_root(self, path: Path) -> Path:
        """``path`` inside ``root``."""
        return self.root / path.relative_to(path.anchor)


def default_bin_dir() -> Path:
    """The scripts directory of the running installation (``<venv>/bin``)."""
    return Path(sysconfig.get_path("scripts"))


def render_unit(text: str, bin_dir: Path) -> str:
    """A shipped unit with ExecStart= pointing at ``bin_dir`` and a line saying so on top."""
    rendered = _EXEC_START.sub(lambda match: f"ExecStart={bin_dir / match.group(1)}", text)
    header = f"# Written by `pistond install-units` (pistond {__version__}) for {bin_dir}.\n"
    return header + rendered


def install_units(
    destinations: Destinations, bin_dir: Path, *, units_source: Path | None = None
) -> list[Written]:
    """Write the four units and the sysusers.d file; return what was written.

    Raises:
        InstallError: no shipped units, a command missing from ``bin_dir``, or a write failed.
    """
    source = units_source or shipped(UNITS)
    if source is None:
        raise InstallError("this installation carries no systemd units (pistond/share/systemd)")
    missing = [name for name in COMMANDS if not os.access(bin_dir / name, os.X_OK)]
    if missing:
        raise InstallError(f"{bin_dir / missing[0]} is not an executable: pass --bin-dir")
    unit_dir = destinations.under_root(destinations.unit_dir)
    written = [
        _write(unit_dir / name, render_unit(_read(source / name), bin_dir)) for name in UNIT_FILES
    ]
    sysusers = destinations.under_root(destinations.sysusers_dir) / Path(SYSUSERS_FILE).name
    written.append(_write(sysusers, _read(source / SYSUSERS_FILE)))
    return written


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise InstallError(f"cannot read {path}: {exc.strerror}") from None


def _write(path: Path, text: str) -> Written:
    """Write ``text`` to ``path`` (mode 0644) by renaming a complete temporary file."""
    try:
        if path.is_file() and path.read_text() == text:
            return Written(path, changed=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(text)
        temporary.chmod(0o644)
        temporary.replace(path)
    except OSError as exc:
        raise InstallError(f"cannot write {path}: {exc.strerror}") from None
    return Written(path, changed=True)


def apply_sysusers(destinations: Destinations, sysusers: Path) -> subprocess.CompletedProcess[str]:
    """Run ``systemd-sysusers`` on the written file (inside ``root`` when it is not ``/``).

    Raises:
        InstallError: systemd-sysusers is missing.
    """
    tool = shutil.which("systemd-sysusers")
    if tool is None:
        raise InstallError(
            "systemd-sysusers is not installed: create the pistond group and the "
            f"pistond-gateway user as {sysusers} describes, or pass --no-sysusers"
        )
    argv = [tool]
    if destinations.root != Path("/"):
        argv.append(f"--root={destinations.root}")
    argv.append(os.fspath(sysusers))
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def systemd_is_running() -> bool:
    """Whether systemd is the init system here (``sd_booted()``)."""
    return Path("/run/systemd/system").is_dir()


def unreadable_ancestors(path: Path) -> list[Path]:
    """Directories above ``path`` that other users cannot enter (the gateway's user must)."""
    blocked = []
    for directory in [path, *path.parents]:
        try:
            mode = directory.stat().st_mode
        except OSError:
            continue
        if not mode & stat.S_IXOTH:
            blocked.append(directory)
    return blocked


def run(
    destinations: Destinations,
    bin_dir: Path,
    *,
    sysusers: bool,
    echo: Callable[[str], None],
    package_paths: Sequence[Path] = (),
) -> int:
    """``pistond install-units`` itself; returns the exit status (0, or 1 on a failure)."""
    try:
        written = install_units(destinations, bin_dir)
    except InstallError as exc:
        echo(f"pistond install-units: {exc}")
        return 1
    for item in written:
        echo(f"{'wrote' if item.changed else 'unchanged'} {item.path}")
    if sysusers and not create_users(destinations, written[-1].path, echo):
        return 1
    for path in [bin_dir, *package_paths]:
        for blocked in unreadable_ancestors(path)[:1]:
            echo(
                f"warning: other users cannot enter {blocked}, so pistond-gateway.service (user "
                f"pistond-gateway) cannot start {path}; install pistond under e.g. /opt/pistond"
            )
    if destinations.root == Path("/") and systemd_is_running():
        reload = subprocess.run(
            ["systemctl", "daemon-reload"], capture_output=True, text=True, check=False
        )
        if reload.returncode != 0:
            echo(f"warning: systemctl daemon-reload failed: {reload.stderr.strip()}")
    echo(f"next: {NEXT_STEP}")
    return 0


def run_users_only(destinations: Destinations, *, echo: Callable[[str], None]) -> int:
    """``pistond install-units --users-only``: apply the shipped sysusers.d file, write nothing.

    For hosts without systemd units (an init script, a container) whose gateway, started as
    root, drops to ``pistond-gateway``.
    """
    source = shipped(UNITS)
    if source is None:
        echo("pistond install-units: this installation carries no sysusers.d file")
        return 1
    return 0 if create_users(destinations, source / SYSUSERS_FILE, echo) else 1


def create_users(destinations: Destinations, sysusers: Path, echo: Callable[[str], None]) -> bool:
    """Create the group and user ``sysusers`` describes; report and return whether it worked."""
    try:
        applied = apply_sysusers(destinations, sysusers)
    except InstallError as exc:
        echo(f"pistond install-units: {exc}")
        return False
    if applied.returncode != 0:
        echo(f"pistond install-units: systemd-sysusers failed: {applied.stderr.strip()}")
        return False
    echo(f"applied {sysusers}: group pistond, user pistond-gateway")
    return True
