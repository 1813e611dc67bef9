"""``pistond``: parse arguments, load the configuration, start the spawner, run the daemon.

Operator commands beside it: ``pistond --check-config`` (validate without starting, see
:mod:`pistond.cli.check_config`) and ``pistond install-units`` (the systemd units for this
installation, see :mod:`pistond.cli.install_units`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

from pistond._version import __version__
from pistond.cli import install_units
from pistond.config import DaemonConfig, load_config, resolve_admin_group, unknown_variables
from pistond.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

EXIT_CONFIG = 2
"""Exit status for a bad setting or a refused start (another daemon, wrong socket)."""
EXIT_FORCED = 1
"""Exit status when a second signal cut the graceful drain short."""

logger = logging.getLogger("pistond")


def build_parser() -> argparse.ArgumentParser:
    """The ``pistond`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="pistond",
        description=(
            "Run the pistond daemon in the foreground: it executes untrusted programs in "
            "sandboxes for clients of its msgpack-RPC Unix socket. Settings come from "
            "PISTON_* environment variables and an optional TOML file; the environment wins."
        ),
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML file of settings (default: $PISTON_CONFIG, if set)",
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        help=(
            "validate the configuration (settings, groups, directories, the gateway's user), "
            "print the effective settings as PISTON_*= lines and exit: 0 valid, 2 invalid"
        ),
    )
    parser.add_argument("--version", action="version", version=f"pistond {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    units = commands.add_parser(
        "install-units",
        help="write the systemd units and sysusers.d file for this installation",
        description=(
            "Write pistond.socket, pistond.service, pistond.slice and pistond-gateway.service "
            "with ExecStart= pointing at this installation, and sysusers.d/pistond.conf; then "
            "create the pistond group and the pistond-gateway user with systemd-sysusers and "
            "reload a running systemd."
        ),
    )
    units.add_argument(
        "--root",
        type=Path,
        default=Path("/"),
        help="install below this directory, e.g. an image being built (default: /)",
    )
    units.add_argument(
        "--unit-dir",
        type=Path,
        default=install_units.UNIT_DIR,
        help=f"directory for the units (default: {install_units.UNIT_DIR})",
    )
    units.add_argument(
        "--sysusers-dir",
        type=Path,
        default=install_units.SYSUSERS_DIR,
        help=f"directory for pistond.conf (default: {install_units.SYSUSERS_DIR})",
    )
    units.add_argument(
        "--bin-dir",
        type=Path,
        default=None,
        help=(
            "directory holding pistond and pistond-gateway "
            f"(default: this installation's, {install_units.default_bin_dir()})"
        ),
    )
    only = units.add_mutually_exclusive_group()
    only.add_argument(
        "--no-sysusers",
        action="store_true",
        help="only write the files; do not run systemd-sysusers",
    )
    only.add_argument(
        "--users-only",
        action="store_true",
        help=(
            "only create the pistond group and the pistond-gateway user (systemd-sysusers with "
            "the shipped file); write no file (for init scripts and containers)"
        ),
    )
    return parser


class JournalFormatter(logging.Formatter):
    """Prefixes each line with its syslog priority (``<4>``), which journald reads (sd-daemon(3)),
    so ``journalctl -p warning -u pistond`` filters by level."""

    PRIORITIES: Final = {
        logging.DEBUG: 7,
        logging.INFO: 6,
        logging.WARNING: 4,
        logging.ERROR: 3,
        logging.CRITICAL: 2,
    }

    def format(self, record: logging.LogRecord) -> str:
        """The record as the base formatter writes it, after its priority."""
        priority = self.PRIORITIES.get(record.levelno, 6)
        return f"<{priority}>{super().format(record)}"


def stderr_is_journal(environ: Mapping[str, str]) -> bool:
    """Whether stderr is the journal stream systemd connected (``$JOURNAL_STREAM`` matches)."""
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        status = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return f"{status.st_dev}:{status.st_ino}" == f"{device}:{inode}"


def setup_logging(config: DaemonConfig) -> None:
    """Log to stderr at the configured level; to the journal with priorities and no timestamps
    (journald adds its own)."""
    level = config.log_level.upper()
    if level == "NONE":
        logging.disable(logging.CRITICAL)
        return
    if level == "WARN":
        level = "WARNING"
    handler = logging.StreamHandler(sys.stderr)
    if stderr_is_journal(os.environ):
        handler.setFormatter(JournalFormatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pistond`` console script."""
    args = build_parser().parse_args(argv)
    if args.command == "install-units":
        return _install_units(args)
    try:
        config = load_config(os.environ, args.config)
    except ConfigError as exc:
        print(f"pistond: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.check_config:
        from pistond.cli import check_config

        return check_config.report(
            config, os.environ, out=print, err=lambda line: print(line, file=sys.stderr)
        )
    setup_logging(config)
    for name in unknown_variables(os.environ):
        logger.warning("ignoring unknown setting %s", name)
    if os.geteuid() != 0:
        print("pistond: must run as root (namespaces, mounts, cgroups)", file=sys.stderr)
        return EXIT_CONFIG

    # Sockets first (a live daemon means we must not start), then the spawner (the native
    # launcher, or the fork server), before trio and the daemon's heavier imports (operator
    # commands import theirs when used, too).
    from pistond.listeners import StartupError, open_listeners
    from pistond.notify import Notifier

    notifier = Notifier.from_environ()
    try:
        resolve_admin_group(config)
        sockets = open_listeners(config, os.environ)
    except (ConfigError, StartupError) as exc:
        print(f"pistond: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    from pistond.errors import SandboxError
    from pistond.sandbox.spawners import start_spawner

    try:
        spawner = start_spawner()
    except SandboxError as exc:
        print(f"pistond: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    import trio

    from pistond.daemon import run_daemon

    graceful = trio.run(run_daemon, config, spawner, sockets, notifier)
    return 0 if graceful else EXIT_FORCED


def _install_units(args: argparse.Namespace) -> int:
    import pistond

    destinations = install_units.Destinations(
        root=args.root, unit_dir=args.unit_dir, sysusers_dir=args.sysusers_dir
    )
    if args.users_only:
        return install_units.run_users_only(destinations, echo=print)
    return install_units.run(
        destinations,
        args.bin_dir or install_units.default_bin_dir(),
        sysusers=not args.no_sysusers,
        echo=print,
        package_paths=[Path(pistond.__file__).parent],
    )


if __name__ == "__main__":
    sys.exit(main())
