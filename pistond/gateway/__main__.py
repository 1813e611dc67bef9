"""``pistond-gateway``: the Piston v2 API on ``PISTON_BIND_ADDRESS``, calling ``PISTON_SOCKET``.

The gateway is unprivileged: started as root, it drops to ``PISTON_GATEWAY_USER`` before
serving (:mod:`pistond.gateway.privileges`), unless given ``--allow-root`` or
``PISTON_GATEWAY_ALLOW_ROOT=true``. Its own settings, beside the daemon's configuration:
``PISTON_MAX_BODY_SIZE`` (bytes, default 1 MiB), ``PISTON_GATEWAY_USER`` and
``PISTON_GATEWAY_ALLOW_ROOT``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from pistond.config import load_config
from pistond.errors import ConfigError
from pistond.gateway.app import GatewaySettings, create_app
from pistond.gateway.privileges import become_gateway_user

if TYPE_CHECKING:
    from collections.abc import Sequence

logger = logging.getLogger("pistond.gateway")

EXIT_CONFIG: Final = 2
SHUTDOWN_GRACE: Final = 10.0
"""Seconds open requests get to finish after SIGTERM."""


def hypercorn_config(bind_address: str, settings: GatewaySettings) -> HypercornConfig:
    """Hypercorn settings for the gateway: one bind, no server header, bounded messages."""
    config = HypercornConfig()
    config.bind = [bind_address]
    config.include_server_header = False
    config.graceful_timeout = SHUTDOWN_GRACE
    config.websocket_max_message_size = settings.max_body_size
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="pistond-gateway", description="Piston v2 HTTP and WebSocket API for pistond."
    )
    parser.add_argument("--config", type=Path, help="TOML configuration file (PISTON_CONFIG)")
    parser.add_argument(
        "--allow-root",
        action="store_true",
        help=(
            "keep running as root instead of dropping to PISTON_GATEWAY_USER "
            "(PISTON_GATEWAY_ALLOW_ROOT=true); not recommended"
        ),
    )
    return parser.parse_args(argv)


async def _wait_for_signal() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            logger.info("received %s, shutting down", signal.Signals(signum).name)
            return


def main(argv: Sequence[str] | None = None) -> int:
    """Run the gateway until SIGTERM or SIGINT; return the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    environ = os.environ
    try:
        config = load_config(environ, args.config)
        allow_root = args.allow_root or config.gateway_allow_root
        settings = GatewaySettings(socket=config.socket, max_body_size=config.max_body_size)
    except ConfigError as exc:
        print(f"pistond-gateway: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    level = "WARNING" if config.log_level.upper() == "WARN" else config.log_level.upper()
    logging.basicConfig(
        level=logging.CRITICAL + 10 if level == "NONE" else level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if os.geteuid() == 0 and not allow_root:
        try:
            identity = become_gateway_user(config)
        except (ConfigError, OSError) as exc:
            print(f"pistond-gateway: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        logger.info("serving as %s (uid %d, gid %d)", identity.user, identity.uid, identity.gid)
    app = create_app(settings)
    hypercorn = hypercorn_config(config.bind_address, settings)
    logger.info("serving the Piston v2 API on %s", config.bind_address)
    framework: Any = app  # Starlette's ASGI types and hypercorn's differ only in their names
    trio.run(partial(serve, framework, hypercorn, shutdown_trigger=_wait_for_signal))
    return 0


if __name__ == "__main__":
    sys.exit(main())
