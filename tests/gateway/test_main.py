"""pistond.gateway.__main__: reads its settings, stops on bad values, serves until SIGTERM.

Dropping root is in test_privileges.py.
"""

from __future__ import annotations

import resource
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from soak import gateway_process

from pistond.config import load_config
from pistond.gateway.__main__ import (
    gateway_settings,
    main,
    open_files_needed,
    server_settings,
)
from pistond.gateway.server import hypercorn_config
from pistond.rpc.descriptors import lift_open_files_limit

from .raw import ISSUE_9_REQUEST


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PISTON_MAX_BODY_SIZE", "big"),
        ("PISTON_GATEWAY_ALLOW_ROOT", "maybe"),
        ("PISTON_BIND_ADDRESS", "nowhere"),
        ("PISTON_GATEWAY_USER", "a:b:c"),
    ],
)
def test_main_bad_setting_stops_with_its_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str
) -> None:
    """A bad setting stops the gateway with status 2 and a line naming the variable."""
    monkeypatch.setenv(variable, value)
    assert main([]) == 2
    assert variable in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def _gateway_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A serving ``pistond-gateway`` whose daemon socket does not exist: process and port."""
    with gateway_process(tmp_path / "none.sock") as (process, url):
        yield process, int(url.rsplit(":", 1)[1])


def test_main_survives_the_issue_9_request(tmp_path: Path) -> None:
    """A WebSocket upgrade with a byte after it in the same packet leaves the process serving."""
    with _gateway_process(tmp_path) as (process, port):
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                client.sendall(ISSUE_9_REQUEST)
                assert client.recv(12) == b"HTTP/1.1 101"
        time.sleep(0.2)
        assert process.poll() is None
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200


def test_main_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    """The gateway serves on PISTON_BIND_ADDRESS and exits 0 on SIGTERM."""
    with _gateway_process(tmp_path) as (process, port):
        answer = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert answer.json() == {"message": "Piston v3.1.1"}
        assert "server" not in answer.headers
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0


def test_main_hypercorn_settings() -> None:
    """Hypercorn hides its server header and bounds WS messages; the stream owns keep-alive."""
    config = hypercorn_config(server_settings(load_config({"PISTON_MAX_BODY_SIZE": "4096"})))
    assert config.include_server_header is False
    assert config.websocket_max_message_size == 4096
    assert config.keep_alive_timeout == float("inf")


def test_main_settings_come_from_the_configuration() -> None:
    """The PISTON_GATEWAY_* caps and deadlines (in ms) reach the server and the app."""
    config = load_config(
        {
            "PISTON_GATEWAY_MAX_CONNECTIONS": "10",
            "PISTON_GATEWAY_MAX_CONNECTIONS_PER_CLIENT": "3",
            "PISTON_GATEWAY_MAX_WEBSOCKETS": "4",
            "PISTON_GATEWAY_MAX_JOBS_PER_CLIENT": "0",
            "PISTON_GATEWAY_HEAD_TIMEOUT": "1500",
            "PISTON_GATEWAY_BODY_TIMEOUT": "2500",
            "PISTON_GATEWAY_IDLE_TIMEOUT": "700",
        }
    )
    served = server_settings(config)
    assert (served.max_connections, served.max_connections_per_client) == (10, 3)
    assert (served.limits.head_timeout, served.limits.body_timeout) == (1.5, 2.5)
    assert served.limits.idle_timeout == 0.7
    app = gateway_settings(config)
    assert (app.max_websockets, app.max_jobs_per_client) == (4, 0)


def test_main_lifts_the_open_files_limit_for_its_connections() -> None:
    """The soft RLIMIT_NOFILE is raised to cover two descriptors per allowed connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        assert open_files_needed(1000) == 2064
        lifted = lift_open_files_limit(open_files_needed(1000))
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == lifted == min(hard, 2064)
        assert lift_open_files_limit(10) == lifted  # never lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
