"""``pistond-gateway keys``: add, list and revoke API keys where the gateway reads them.

The store is ``PISTON_GATEWAY_API_KEYS``' (``file``: ``PISTON_GATEWAY_API_KEYS_FILE``;
``database``: the submissions database), or ``--store``; with keys ``off`` the commands work on
the file, so keys can be made before they are turned on. ``add`` prints the new key on stdout,
once (only its digest is stored), and what it did on stderr.

Run as root, ``add`` and ``revoke`` give a new key file the gateway user's group (mode 0640, so
the gateway can read it after dropping its privileges), and work on a SQLite database as the
gateway user (the database's files stay the gateway's).
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Final, TextIO

from pistond.config import resolve_socket_group
from pistond.errors import ConfigError
from pistond.gateway.apikeys import (
    CAPPABLE_LIMITS,
    ApiKey,
    KeyPolicy,
    KeyRecordError,
    is_key_id,
    make_key,
    policy_fields,
)
from pistond.gateway.keydb import add_key, list_keys, revoke_key
from pistond.gateway.keyfile import locked, read_keys, write_keys
from pistond.gateway.privileges import become_gateway_user, resolve_identity
from pistond.submissions.database import (
    DatabaseError,
    database_url,
    open_database,
)

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

    from pistond.config import DaemonConfig
    from pistond.submissions.database import Database

EXIT_OK: Final = 0
EXIT_NOT_FOUND: Final = 1
EXIT_USAGE: Final = 2


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``keys`` and its subcommands to the gateway's parser."""
    keys = commands.add_parser(
        "keys",
        help="manage API keys (add, list, revoke)",
        description=(
            "Manage the API keys the gateway requires when PISTON_GATEWAY_API_KEYS is file or "
            "database. Only a key's SHA-256 is stored: add prints the key once."
        ),
    )
    keys.add_argument(
        "--store",
        choices=("file", "database"),
        help="where the keys are (default: PISTON_GATEWAY_API_KEYS, or file when it is off)",
    )
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="make a key and print it (once)")
    add.add_argument("--name", default="", help="what the key is for, shown by list")
    add.add_argument(
        "--jobs-per-minute",
        type=int,
        metavar="N",
        help="jobs the key may start per minute (default: PISTON_GATEWAY_RATE_LIMIT; 0: no limit)",
    )
    add.add_argument(
        "--burst", type=int, metavar="N", help="jobs it may start at once (default: a minute's)"
    )
    add.add_argument(
        "--concurrent-jobs",
        type=int,
        metavar="N",
        help="jobs it may run at once (default: PISTON_GATEWAY_MAX_JOBS_PER_CLIENT; 0: no cap)",
    )
    add.add_argument(
        "--max-limit",
        action="append",
        default=[],
        metavar="LIMIT=VALUE",
        help=f"the most it may request of a limit, repeatable; LIMIT is one of "
        f"{', '.join(CAPPABLE_LIMITS)}",
    )
    add.add_argument(
        "--packages", action="store_true", help="let it install and uninstall packages"
    )
    add.add_argument("--json", action="store_true", help="print the key and its record as JSON")
    listing = actions.add_parser("list", help="list keys (ids, names, policies; never keys)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    revoke = actions.add_parser("revoke", help="revoke a key: it is refused from then on")
    revoke.add_argument("id", help="the key's id (the 12 hex digits after pistond_)")


def _max_limits(entries: Sequence[str]) -> dict[str, int]:
    limits: dict[str, int] = {}
    for entry in entries:
        name, sep, value = entry.partition("=")
        if not sep or not value.strip().isdigit():
            raise KeyRecordError(f"--max-limit wants LIMIT=VALUE with a number, got {entry!r}")
        limits[name.strip()] = int(value)
    return limits


def _stamp(seconds: float) -> str:
    when = datetime.datetime.fromtimestamp(round(seconds), tz=datetime.UTC)
    return when.isoformat().replace("+00:00", "Z")


def describe(key: ApiKey) -> dict[str, Any]:
    """A key's record as ``list --json`` prints it."""
    return {
        "id": key.id,
        "name": key.name,
        "created": _stamp(key.created),
        "revoked": None if key.revoked is None else _stamp(key.revoked),
        **policy_fields(key.policy),
    }


class _Stores:
    """The configured store, opened for one command."""

    def __init__(self, config: DaemonConfig, store: str, allow_root: bool) -> None:
        self.config = config
        self.kind = store
        self.allow_root = allow_root
        self._database: Database | None = None

    def _group(self) -> int | None:
        if os.geteuid() != 0:
            return None
        try:
            return resolve_identity(self.config.gateway_user, resolve_socket_group(self.config)).gid
        except (ConfigError, OSError):
            return None

    def database(self) -> Database:
        if self._database is None:
            url = database_url(self.config.database_url, self.config.gateway_data_directory)
            if os.geteuid() == 0 and not self.allow_root and url.get_backend_name() == "sqlite":
                become_gateway_user(self.config)
            self._database = open_database(url)
        return self._database

    def close(self) -> None:
        if self._database is not None:
            self._database.close()

    def add(self, key: ApiKey) -> str:
        if self.kind == "database":
            add_key(self.database(), key)
            return "the database"
        path = self.config.gateway_api_keys_file
        with locked(path):
            keys = read_keys(path)
            keys[key.id] = key
            write_keys(path, keys, group=self._group())
        return str(path)

    def list(self) -> list[ApiKey]:
        if self.kind == "database":
            return list_keys(self.database())
        return sorted(read_keys(self.config.gateway_api_keys_file).values(), key=lambda k: k.id)

    def revoke(self, key_id: str) -> bool:
        if self.kind == "database":
            return revoke_key(self.database(), key_id)
        path = self.config.gateway_api_keys_file
        with locked(path):
            keys = read_keys(path)
            key = keys.get(key_id)
            if key is None or key.revoked is not None:
                return False
            keys[key_id] = ApiKey(
                id=key.id,
                digest=key.digest,
                name=key.name,
                created=key.created,
                revoked=time.time(),
                policy=key.policy,
            )
            write_keys(path, keys, group=self._group())
        return True


def run(
    config: DaemonConfig,
    args: argparse.Namespace,
    *,
    allow_root: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Carry out ``pistond-gateway keys ...``; the exit status (0, 1: no such key, 2: error).

    ``out`` and ``err`` default to the process's stdout and stderr at the time of the call.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    store = args.store or ("file" if config.gateway_api_keys == "off" else config.gateway_api_keys)
    if config.gateway_api_keys == "off":
        print(
            "pistond-gateway: note: API keys are off; PISTON_GATEWAY_API_KEYS=file turns them on",
            file=err,
        )
    stores = _Stores(config, store, allow_root)
    try:
        return _run(stores, args, out, err)
    except (KeyRecordError, DatabaseError, ConfigError, OSError) as exc:
        print(f"pistond-gateway: {exc}", file=err)
        return EXIT_USAGE
    finally:
        stores.close()


def _run(stores: _Stores, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.keys_command == "add":
        policy = KeyPolicy(
            jobs_per_minute=args.jobs_per_minute,
            burst=args.burst,
            concurrent_jobs=args.concurrent_jobs,
            max_limits=_max_limits(args.max_limit),
            packages=args.packages,
        )
        made = make_key(args.name, policy)
        where = stores.add(made.record)
        if args.json:
            print(json.dumps({"key": made.text, **describe(made.record)}), file=out)
        else:
            print(made.text, file=out)
        print(
            f"pistond-gateway: added key {made.record.id} to {where}; it is shown only this once",
            file=err,
        )
        return EXIT_OK
    if args.keys_command == "list":
        keys = stores.list()
        if args.json:
            print(json.dumps([describe(key) for key in keys], indent=2), file=out)
            return EXIT_OK
        for key in keys:
            fields = describe(key)
            state = "active" if key.revoked is None else f"revoked {fields['revoked']}"
            shown = " ".join(
                f"{name}={json.dumps(value, separators=(',', ':'))}"
                for name, value in policy_fields(key.policy).items()
            )
            print(f"{key.id}  {state:<28} {key.name!r:<20} {shown}", file=out)
        return EXIT_OK
    key_id = args.id.removeprefix("pistond_").partition("_")[0]
    if not is_key_id(key_id):
        print(f"pistond-gateway: not a key id: {args.id!r}", file=err)
        return EXIT_USAGE
    if not stores.revoke(key_id):
        print(f"pistond-gateway: no active key {key_id}", file=err)
        return EXIT_NOT_FOUND
    print(f"pistond-gateway: revoked key {key_id}", file=err)
    return EXIT_OK
