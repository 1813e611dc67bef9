"""A real ``pistond-gateway`` in a subprocess, on a free loopback port, for tests and benchmarks.

Synchronous, like :class:`~pistond.testing.daemon.DaemonProcess`::

    with GatewayProcess.start(tmp_path, daemon.socket, {"PISTON_DATABASE_URL": url}) as gateway:
        httpx.post(gateway.url + "/api/v2/submissions", json=body)

It runs as the caller (``PISTON_GATEWAY_ALLOW_ROOT=true`` under root), keeps its data directory
(the SQLite database of submissions) and its log under the given directory, and inherits no
``PISTON_*`` variable from the caller's environment.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Self

import attrs
import httpx

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@attrs.define(eq=False)
class GatewayProcess:
    """A ``python -m pistond.gateway`` child with its own port, data directory and log."""

    process: subprocess.Popen[bytes]
    url: str
    """``http://127.0.0.1:<port>``."""
    data_directory: Path
    log: Path
    environ: dict[str, str]

    @classmethod
    def start(
        cls,
        directory: Path,
        daemon_socket: Path,
        settings: Mapping[str, str] | None = None,
        *,
        timeout: float = STARTUP_TIMEOUT,
    ) -> Self:
        """Start a gateway in front of ``daemon_socket`` and wait until it answers ``GET /``.

        Args:
            directory: where the data directory and the log go (created if missing).
            daemon_socket: the daemon's RPC socket.
            settings: extra ``PISTON_*`` variables.
            timeout: seconds to wait for the gateway to answer.

        Raises:
            RuntimeError: the gateway exited or did not answer in time; the message has its log.
        """
        directory.mkdir(parents=True, exist_ok=True)
        environ = {key: value for key, value in os.environ.items() if not key.startswith("PISTON_")}
        environ.update(
            {
                "PISTON_SOCKET": str(daemon_socket),
                "PISTON_GATEWAY_DATA_DIRECTORY": str(directory / "data"),
                "PISTON_GATEWAY_ALLOW_ROOT": "true",
                "PISTON_LOG_LEVEL": "DEBUG",
                **dict(settings or {}),
            }
        )
        if "PISTON_BIND_ADDRESS" not in environ:
            environ["PISTON_BIND_ADDRESS"] = f"127.0.0.1:{_free_port()}"
        log = directory / "gateway.log"
        with log.open("ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "pistond.gateway"],
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        url = "http://" + environ["PISTON_BIND_ADDRESS"]
        gateway = cls(process, url, directory / "data", log, environ)
        deadline = time.monotonic() + timeout
        while True:
            try:
                httpx.get(url, timeout=1)
                return gateway
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    gateway.kill()
                    raise RuntimeError(
                        f"pistond-gateway did not start:\n{gateway.log_text()}"
                    ) from None
                time.sleep(0.05)

    def log_text(self) -> str:
        """What the gateway logged so far."""
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, *, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then wait for the exit status (SIGKILL after ``timeout``)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.wait()

    def kill(self) -> None:
        """SIGKILL the gateway and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
