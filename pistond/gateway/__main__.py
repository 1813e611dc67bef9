"""``pistond-gateway``: the Piston v2 API on ``PISTON_BIND_ADDRESS``, calling ``PISTON_SOCKET``.

The gateway is unprivileged: started as root, it drops to ``PISTON_GATEWAY_USER`` before
serving (:mod:`pistond.gateway.privileges`), unless given ``--allow-root`` or
``PISTON_GATEWAY_ALLOW_ROOT=true``. Its own settings, beside the daemon's configuration:
``PISTON_MAX_BODY_SIZE`` (bytes, default 1 MiB), ``PISTON_GATEWAY_USER``,
``PISTON_GATEWAY_ALLOW_ROOT`` and the ``PISTON_GATEWAY_*`` caps and deadlines (docs/gateway.md).
The listening socket is opened before the drop, so a privileged port works.

API keys (``PISTON_GATEWAY_API_KEYS``: off, file or database) are managed with
``pistond-gateway keys add|list|revoke`` (:mod:`pistond.gateway.keyadmin`); the store is opened
after the drop, so a key file the gateway user cannot read stops the start.

Beside the HTTP server runs the submission service (:mod:`pistond.submissions`): its database
(SQLite in ``PISTON_GATEWAY_DATA_DIRECTORY``, or ``PISTON_DATABASE_URL``), its workers and its
callbacks. Started as root, the gateway creates that directory for its user before the drop.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final

import trio

from pistond.config import DaemonConfig, load_config, resolve_socket_group
from pistond.errors import ConfigError
from pistond.gateway import keyadmin
from pistond.gateway.apikeys import KeyRecordError
from pistond.gateway.app import GatewaySettings, create_app
from pistond.gateway.daemon_socket import DaemonSocket
from pistond.gateway.keydb import DatabaseKeyStore
from pistond.gateway.keyfile import FileKeyStore
from pistond.gateway.privileges import become_gateway_user, resolve_identity
from pistond.gateway.server import ServerSettings, open_listeners, serve_gateway
from pistond.gateway.stream import ConnectionLimits
from pistond.rpc.descriptors import lift_open_files_limit
from pistond.submissions.database import database_url
from pistond.submissions.service import SubmissionService, SubmissionSettings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pistond.gateway.apikeys import KeyStore
    from pistond.gateway.privileges import Identity

logger = logging.getLogger("pistond.gateway")

EXIT_CONFIG: Final = 2
SHUTDOWN_GRACE: Final = 10.0
"""Seconds open requests get to finish after SIGTERM."""
FILES_SPARE: Final = 64
"""Descriptors beyond the connections' own: listeners, logs, the event loop."""
FILES_FOR_UNCAPPED: Final = 32_768
"""Connections to provide descriptors for when they are not capped."""


def gateway_settings(config: DaemonConfig) -> GatewaySettings:
    """What the app needs from the configuration."""
    return GatewaySettings(
        socket=config.socket,
        max_body_size=config.max_body_size,
        max_websockets=config.gateway_max_websockets,
        max_jobs_per_client=config.gateway_max_jobs_per_client,
        rate_limit=config.gateway_rate_limit,
        rate_burst=config.gateway_rate_burst,
        trusted_proxies=config.gateway_trusted_proxies,
        cors_origins=config.gateway_cors_origins,
        audit_log=config.gateway_audit_log,
    )


def open_key_store(config: DaemonConfig) -> KeyStore | None:
    """The API key store ``PISTON_GATEWAY_API_KEYS`` names; None when keys are off.

    Raises:
        ConfigError: the key file cannot be read or is invalid.
    """
    if config.gateway_api_keys == "file":
        try:
            return FileKeyStore.open(config.gateway_api_keys_file)
        except KeyRecordError as exc:
            raise ConfigError("PISTON_GATEWAY_API_KEYS_FILE", str(exc)) from None
    if config.gateway_api_keys == "database":
        return DatabaseKeyStore(database_url(config.database_url, config.gateway_data_directory))
    return None


def server_settings(config: DaemonConfig) -> ServerSettings:
    """How the gateway serves HTTP: caps, deadlines, WebSocket messages bounded like bodies."""
    return ServerSettings(
        limits=ConnectionLimits(
            idle_timeout=config.gateway_idle_timeout / 1000,
            head_timeout=config.gateway_head_timeout / 1000,
            body_timeout=config.gateway_body_timeout / 1000,
        ),
        websocket_max_message_size=config.max_body_size,
        graceful_timeout=SHUTDOWN_GRACE,
        max_connections=config.gateway_max_connections,
        max_connections_per_client=config.gateway_max_connections_per_client,
    )


def open_files_needed(max_connections: int) -> int:
    """Descriptors the gateway may need: each connection's socket and, during a request, one
    to the daemon; ``2 * FILES_FOR_UNCAPPED`` without a connection cap."""
    return 2 * (max_connections or FILES_FOR_UNCAPPED) + FILES_SPARE


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
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    keyadmin.add_parser(commands)
    return parser.parse_args(argv)


async def _wait_for_signal() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            logger.info("received %s, shutting down", signal.Signals(signum).name)
            return


def prepare_data_directory(directory: Path, identity: Identity) -> None:
    """Create the gateway's data directory (mode 0700) for ``identity``, as root, before the
    drop; an existing directory is left as it is. Failing is not fatal: the submission service
    reports why it cannot open its database."""
    try:
        directory.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        return
    except OSError as exc:
        logger.warning("cannot create %s: %s", directory, exc.strerror or exc)
        return
    os.chown(directory, identity.uid, identity.gid, follow_symlinks=False)


async def serve_with_submissions(
    app: object,
    listeners: list[trio.SocketListener],
    server: ServerSettings,
    submissions: SubmissionService,
) -> None:
    """Serve HTTP and run the submission service; on SIGTERM both stop within the grace.

    Running submissions get the same grace as open requests, then go back to the queue.
    """
    async with trio.open_nursery() as nursery:
        await nursery.start(submissions.serve)

        async def shutdown_trigger() -> None:
            await _wait_for_signal()
            nursery.start_soon(submissions.drain, SHUTDOWN_GRACE)

        await serve_gateway(app, listeners, server, shutdown_trigger=shutdown_trigger)
        await submissions.drain(SHUTDOWN_GRACE)
        nursery.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the gateway until SIGTERM or SIGINT; return the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    environ = os.environ
    try:
        config = load_config(environ, args.config)
        allow_root = args.allow_root or config.gateway_allow_root
        settings = gateway_settings(config)
    except ConfigError as exc:
        print(f"pistond-gateway: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "keys":
        return keyadmin.run(config, args, allow_root=allow_root)
    level = "WARNING" if config.log_level.upper() == "WARN" else config.log_level.upper()
    logging.basicConfig(
        level=logging.CRITICAL + 10 if level == "NONE" else level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        listeners = open_listeners([config.bind_address])
    except OSError as exc:
        print(f"pistond-gateway: cannot listen on {config.bind_address}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    lift_open_files_limit(open_files_needed(config.gateway_max_connections))
    submissions = SubmissionService(
        SubmissionSettings.from_config(config), DaemonSocket(config.socket)
    )
    if os.geteuid() == 0 and not allow_root:
        try:
            if not config.database_url:
                target = resolve_identity(config.gateway_user, resolve_socket_group(config))
                prepare_data_directory(config.gateway_data_directory, target)
            identity = become_gateway_user(config)
        except (ConfigError, OSError) as exc:
            print(f"pistond-gateway: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        logger.info("serving as %s (uid %d, gid %d)", identity.user, identity.uid, identity.gid)
    try:
        keys = open_key_store(config)
    except ConfigError as exc:
        print(f"pistond-gateway: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if keys is not None:
        logger.info("API keys required, read from %s", keys.description)
    app = create_app(settings, submissions=submissions, keys=keys)
    logger.info("serving the Piston v2 API on %s", config.bind_address)
    trio.run(partial(serve_with_submissions, app, listeners, server_settings(config), submissions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
