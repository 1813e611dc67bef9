"""pistond.gateway.__main__: reads its settings, stops on bad values, serves until SIGTERM.

Dropping root is in test_privileges.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pistond.gateway.__main__ import hypercorn_config, main
from pistond.gateway.app import GatewaySettings


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


def test_main_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    """The gateway serves on PISTON_BIND_ADDRESS and exits 0 on SIGTERM."""
    port = _free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PISTON_")}
    environ.update(
        PISTON_BIND_ADDRESS=f"127.0.0.1:{port}",
        PISTON_SOCKET=str(tmp_path / "none.sock"),
        PISTON_GATEWAY_ALLOW_ROOT="true",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "pistond.gateway"],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "gateway did not start"
                time.sleep(0.05)
        assert answer.json() == {"message": "Piston v3.1.1"}
        assert "server" not in answer.headers
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()


def test_main_hypercorn_settings() -> None:
    """Hypercorn binds the configured address, hides its server header, bounds WS messages."""
    settings = GatewaySettings(socket=Path("/x"), max_body_size=4096)
    config = hypercorn_config("127.0.0.1:2000", settings)
    assert config.bind == ["127.0.0.1:2000"]
    assert config.include_server_header is False
    assert config.websocket_max_message_size == 4096
