"""A real PostgreSQL server in a temporary directory, on a loopback port, for tests and benchmarks.

It needs the Debian ``postgresql`` package (``scripts/bootstrap`` installs it). PostgreSQL
refuses to run as root, so a root caller runs it as the package's ``postgres`` user::

    with PostgresServer.start() as server:
        url = server.create_database("test_queue")   # postgresql://pistond:...@127.0.0.1:port/...

The server trusts nobody: its one role, ``pistond``, logs in with a random password (SCRAM),
and it listens on 127.0.0.1 only. ``durable=False`` (the default, for tests) turns ``fsync``
off; benchmarks pass ``durable=True`` for PostgreSQL's shipped durability.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Final, Self

import attrs

STARTUP_TIMEOUT: Final = 60.0
STOP_TIMEOUT: Final = 30.0
ROLE: Final = "pistond"
SERVER_USER: Final = "postgres"
"""The unprivileged user a root caller runs the server as (Debian's package creates it)."""


def server_binaries() -> Path:
    """The newest installed PostgreSQL's ``bin`` directory.

    Raises:
        FileNotFoundError: PostgreSQL is not installed (Debian package ``postgresql``).
    """
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda path: int(Path(path).parent.parent.name),
    )
    if not found:
        raise FileNotFoundError("PostgreSQL is not installed (Debian package postgresql)")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _as_user() -> dict[str, Any]:
    """Popen arguments that run the server as an unprivileged user when we are root."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(SERVER_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


@attrs.define(eq=False)
class PostgresServer:
    """A running ``postgres`` with its own data directory, port and log."""

    directory: Path
    """Holds the data directory, the Unix socket and the log; removed by :meth:`stop`."""
    port: int
    password: str
    process: subprocess.Popen[bytes]

    @property
    def log(self) -> Path:
        """The server's log file."""
        return self.directory / "postgres.log"

    @classmethod
    def start(cls, *, durable: bool = False, timeout: float = STARTUP_TIMEOUT) -> Self:
        """Create a cluster in a new temporary directory and start it.

        Args:
            durable: keep PostgreSQL's own fsync and commit durability (benchmarks); tests
                turn them off.
            timeout: seconds to wait for the server to accept connections.

        Raises:
            FileNotFoundError: PostgreSQL is not installed.
            RuntimeError: the server did not start; the message holds its log.
        """
        binaries = server_binaries()
        user = _as_user()
        directory = Path(tempfile.mkdtemp(prefix="pistond-pg-", dir="/tmp"))
        if user:
            os.chown(directory, user["user"], user["group"])
        password = secrets.token_hex(16)
        password_file = directory / "password"
        password_file.write_text(password + "\n")
        if user:
            os.chown(password_file, user["user"], user["group"])
        password_file.chmod(0o600)
        environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
        subprocess.run(
            [
                str(binaries / "initdb"),
                "--pgdata", str(directory / "data"),
                "--username", ROLE,
                "--pwfile", str(password_file),
                "--auth", "scram-sha-256",
                "--encoding", "UTF8",
                "--locale", "C",
                "--no-sync",
                "--no-instructions",
            ],
            cwd=directory,
            env=environ,
            check=True,
            capture_output=True,
            **user,
        )  # fmt: skip
        password_file.unlink()
        settings = [
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={directory}",
        ]
        if not durable:
            settings += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
            settings += ["-c", "full_page_writes=off"]
        last_error = ""
        for _ in range(5):  # the free port may be taken before the server binds it
            port = _free_port()
            with (directory / "postgres.log").open("ab") as log:
                process = subprocess.Popen(
                    [binaries / "postgres", "-D", directory / "data", "-p", str(port), *settings],
                    cwd=directory,
                    env=environ,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    **user,
                )
            server = cls(directory=directory, port=port, password=password, process=process)
            last_error = server._wait_ready(timeout)
            if not last_error:
                return server
            server._terminate()
        shutil.rmtree(directory, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {last_error}")

    def _wait_ready(self, timeout: float) -> str:
        """Wait until the server accepts connections; the reason it did not, or ""."""
        import psycopg  # noqa: PLC0415  (only servers started from tests need the driver here)

        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                return self.log.read_text(errors="replace")[-2000:]
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    return ""
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    return f"{exc}\n{self.log.read_text(errors='replace')[-2000:]}"
            time.sleep(0.1)

    def url(self, database: str = ROLE) -> str:
        """The ``postgresql://`` URL of ``database`` on this server, with the password."""
        return f"postgresql://{ROLE}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create the (empty) database ``name``; its URL."""
        import psycopg  # noqa: PLC0415  (as above)
        from psycopg import sql  # noqa: PLC0415  (as above)

        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (fast shutdown, then SIGKILL) and remove its directory."""
        self._terminate()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown: disconnect, then stop
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
