"""pistond.gateway.audit: one JSON line per request and WebSocket session, without contents.

Rules: the session's gateway over the fake daemon (audit on, the default); lines are read from
the ``pistond.gateway.audit`` logger with caplog; each test sends something secret-looking
(source, stdin, arguments, a token) and checks it never reaches a line.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio_websocket

if TYPE_CHECKING:
    import httpx

    from .conftest import GatewayStack
    from .fake_daemon import FakeDaemon

SECRET = "s3cr3t-program-text"


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        json.loads(record.getMessage())
        for record in caplog.records
        if record.name == "pistond.gateway.audit"
    ]


async def _settle() -> None:
    await trio.sleep(0.2)  # the line is written once the answer went out


async def test_audit_execute_line(
    http: httpx.AsyncClient, fake: FakeDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    """An execute's line: route, status, duration, client, no key, runtime, stage results;
    no source, stdin, arguments or output."""
    caplog.set_level(logging.INFO, "pistond.gateway.audit")
    body = {
        "language": "py",
        "version": "3.x",
        "files": [{"name": f"{SECRET}.py", "content": f'print("{SECRET}")'}],
        "stdin": SECRET,
        "args": [SECRET],
    }
    with trio.fail_after(10):
        response = await http.post("/api/v2/execute", json=body)
        await _settle()
    assert response.status_code == 200
    (line,) = [entry for entry in _lines(caplog) if entry["route"] == "/api/v2/execute"]
    assert line["type"] == "http"
    assert line["method"] == "POST"
    assert line["status"] == 200
    assert line["duration_ms"] >= 0
    assert line["client"] == "127.0.0.1"
    assert line["key"] is None
    assert (line["language"], line["version"], line["jobs"]) == ("python", "3.12.0", 1)
    assert line["run"]["status"] == "ok"
    assert set(line["run"]) == {"status", "wall_ms", "cpu_ms", "memory"}
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert SECRET not in text


async def test_audit_unknown_runtime_logs_no_client_names(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A request for a runtime that does not exist: its line has no language, so the names
    a client typed never reach the log."""
    caplog.set_level(logging.INFO, "pistond.gateway.audit")
    body = {"language": f"cobol-{SECRET}", "version": "3.x", "files": [{"content": "x"}]}
    with trio.fail_after(10):
        response = await http.post("/api/v2/execute", json=body)
        await _settle()
    assert response.status_code == 400
    (line,) = [entry for entry in _lines(caplog) if entry["route"] == "/api/v2/execute"]
    assert (line["status"], line["jobs"]) == (400, 1)
    assert "language" not in line
    assert SECRET not in "\n".join(record.getMessage() for record in caplog.records)


async def test_audit_refusals_and_other_routes(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Every request has its line, refused ones and unknown routes too; a submission token in
    a path never appears (the route is its pattern)."""
    caplog.set_level(logging.INFO, "pistond.gateway.audit")
    token = "0123456789abcdef0123456789abcdef"
    with trio.fail_after(10):
        await http.post(
            "/api/v2/execute", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        await http.get("/api/v2/runtimes")
        await http.get(f"/api/v2/submissions/{token}")
        await http.get(f"/nowhere/{SECRET}")
        await _settle()
    seen = {(line["route"], line["status"]) for line in _lines(caplog)}
    assert ("/api/v2/execute", 400) in seen
    assert ("/api/v2/runtimes", 200) in seen
    assert ("other", 404) in seen
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert token not in text
    assert SECRET not in text


async def test_audit_websocket_session_line(
    gateway: GatewayStack, fake: FakeDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    """A WebSocket session's line at its end: status 101, close code, stages; no output."""
    caplog.set_level(logging.INFO, "pistond.gateway.audit")
    init = {
        "type": "init",
        "language": "python",
        "version": "3.12.0",
        "files": [{"content": f'print("{SECRET}")'}],
    }
    with trio.fail_after(10):
        async with trio_websocket.open_websocket_url(gateway.ws_url) as websocket:
            await websocket.send_message(json.dumps(init))
            while True:
                try:
                    await websocket.get_message()
                except trio_websocket.ConnectionClosed:
                    break
        await _settle()
    (line,) = [entry for entry in _lines(caplog) if entry["type"] == "ws"]
    assert line["route"] == "/api/v2/connect"
    assert (line["status"], line["close"]) == (101, 4999)
    assert line["language"] == "python"
    assert line["run"]["status"] == "ok"
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert SECRET not in text
