"""``pistond``: parse arguments, load the configuration, start the fork server, run the daemon."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from pistond._version import __version__
from pistond.config import DaemonConfig, load_config, resolve_admin_group, unknown_variables
from pistond.errors import ConfigError

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
        help="validate the configuration, print it and exit",
    )
    parser.add_argument("--version", action="version", version=f"pistond {__version__}")
    return parser


def setup_logging(config: DaemonConfig) -> None:
    """Log to stderr at the configured level (journald adds its own timestamps)."""
    level = config.log_level.upper()
    if level == "NONE":
        logging.disable(logging.CRITICAL)
        return
    if level == "WARN":
        level = "WARNING"
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    logging.basicConfig(
        level=level, stream=sys.stderr, format=f"{stamp}%(levelname)s %(name)s: %(message)s"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pistond`` console script."""
    args = build_parser().parse_args(argv)
    try:
        config = load_config(os.environ, args.config)
    except ConfigError as exc:
        print(f"pistond: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.check_config:
        print(config)
        return 0
    setup_logging(config)
    for name in unknown_variables(os.environ):
        logger.warning("ignoring unknown setting %s", name)
    if os.geteuid() != 0:
        print("pistond: must run as root (namespaces, mounts, cgroups)", file=sys.stderr)
        return EXIT_CONFIG

    # Sockets first (a live daemon means we must not start), then the fork server, before
    # trio and the daemon's heavier imports.
    from pistond.listeners import StartupError, open_listeners
    from pistond.notify import Notifier

    notifier = Notifier.from_environ()
    try:
        resolve_admin_group(config)
        sockets = open_listeners(config, os.environ)
    except (ConfigError, StartupError) as exc:
        print(f"pistond: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    from pistond.sandbox.spawn import ForkServer

    fork_server = ForkServer.start()
    import trio

    from pistond.daemon import run_daemon

    graceful = trio.run(run_daemon, config, fork_server, sockets, notifier)
    return 0 if graceful else EXIT_FORCED


if __name__ == "__main__":
    sys.exit(main())
