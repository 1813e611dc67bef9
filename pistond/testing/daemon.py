"""A real ``pistond`` in a subprocess, on a private socket and data directory, for tests.

Synchronous on purpose, so one daemon can serve a whole pytest session while each test runs its
own trio loop::

    with DaemonProcess.start(tmp_path, {"PISTON_RUN_TIMEOUT": "2000"}) as daemon:
        daemon.piston("ppman", "install", "python")
        result = daemon.piston_json("run", "python", "hello.py")
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any, Self

import attrs
import msgpack

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


def _answers(path: Path) -> bool:
    """Whether a daemon on the Unix socket ``path`` answers ``ping``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        try:
            probe.connect(str(path))
            probe.sendall(msgpack.packb([0, 1, "ping", [{}]]))
            unpacker = msgpack.Unpacker()
            while True:
                data = probe.recv(4096)
                if not data:
                    return False
                unpacker.feed(data)
                for reply in unpacker:
                    return isinstance(reply, list) and reply[:3] == [1, 1, None]
        except OSError:
            return False


def _box_uid_base(directory: Path) -> int:
    """A box uid range of its own for each test daemon, away from the default 60000."""
    digest = hashlib.sha256(str(directory.resolve()).encode()).digest()
    return 100_000 + int.from_bytes(digest[:4]) % 10_000 * 100


@attrs.define(eq=False)
class DaemonProcess:
    """A ``python -m pistond`` child with its own socket, data directory and log file."""

    process: subprocess.Popen[bytes]
    socket: Path
    data_directory: Path
    log: Path
    environ: dict[str, str]

    @property
    def box_uids(self) -> range:
        """The uids this daemon's boxes run as."""
        base = int(self.environ["PISTON_BOX_UID_BASE"])
        return range(base, base + int(self.environ.get("PISTON_MAX_CONCURRENT_JOBS", "64")))

    @classmethod
    def start(
        cls,
        directory: Path,
        settings: Mapping[str, str] | None = None,
        *,
        timeout: float = STARTUP_TIMEOUT,
    ) -> Self:
        """Start a daemon under ``directory`` and wait until its socket answers.

        Args:
            directory: where the socket, data directory and log go (created if missing).
            settings: extra ``PISTON_*`` variables (and any other environment).
            timeout: seconds to wait for the socket.

        Raises:
            RuntimeError: the daemon exited or did not answer in time; the message has its log.
        """
        directory.mkdir(parents=True, exist_ok=True)
        sock = directory / "pistond.sock"
        data = directory / "data"
        log = directory / "pistond.log"
        environ = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PISTON_SOCKET": str(sock),
            "PISTON_DATA_DIRECTORY": str(data),
            "PISTON_LOG_LEVEL": "DEBUG",
            "PISTON_BOX_UID_BASE": str(_box_uid_base(directory)),
            **dict(settings or {}),
        }
        with log.open("ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "pistond"],
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        daemon = cls(process=process, socket=sock, data_directory=data, log=log, environ=environ)
        deadline = time.monotonic() + timeout
        while not _answers(sock):
            if process.poll() is not None or time.monotonic() > deadline:
                daemon.kill()
                raise RuntimeError(f"pistond did not start:\n{daemon.log_text()}")
            time.sleep(0.05)
        return daemon

    def log_text(self) -> str:
        """What the daemon logged so far."""
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def piston(self, *args: str, stdin: bytes = b"", check: bool = True) -> str:
        """Run the ``piston`` CLI against this daemon; its stdout."""
        result = subprocess.run(
            [sys.executable, "-m", "pistond.cli.piston", "--socket", str(self.socket), *args],
            input=stdin,
            capture_output=True,
            timeout=600,
            check=False,
            env=self.environ,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"piston {' '.join(args)} exited {result.returncode}: "
                f"{result.stderr.decode(errors='replace')}"
            )
        return result.stdout.decode(errors="replace")

    def piston_json(self, *args: str, stdin: bytes = b"") -> Any:
        """Run ``piston --json ...`` and parse its output."""
        return json.loads(self.piston("--json", *args, stdin=stdin, check=False))

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
        """SIGKILL the daemon and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
