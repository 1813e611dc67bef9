"""Serving the public, end to end: real ``pistond`` and ``pistond-gateway`` processes.

Keys made with ``pistond-gateway keys add`` (a subprocess, as an operator runs it), the gateway
started with ``PISTON_GATEWAY_API_KEYS=file``: 401 and 403 with their JSON and headers, the
bare ``Authorization`` of Piston's clients (ultra-piston's ``api_key``), a key's bucket running
out and refilling, revocation without a restart, CORS preflights, the audit line in the log;
with keys off, published clients unchanged; health turning unready when the daemon stops and
ready again when it is back.

Rules: root only (the daemon needs namespaces and cgroups); the host runtimes' python; each
process on its own socket, port and directory under tmp_path; every wait has a deadline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from pistond.testing.daemon import DaemonProcess
from pistond.testing.gateway import GatewayProcess

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a real pistond needs root")

HELLO = {"language": "python", "version": "*", "files": [{"content": 'print("hi")'}]}
EDITOR = "https://editor.example.com"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One pistond with its host runtimes for the module."""
    with DaemonProcess.start(tmp_path_factory.mktemp("daemon")) as running:
        yield running


def keys_cli(settings: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``pistond-gateway keys ...`` as a separate process, with only ``settings`` as PISTON_*."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PISTON_")}
    return subprocess.run(
        [sys.executable, "-m", "pistond.gateway", "--allow-root", "keys", *args],
        env={**environ, **settings},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def wait_for(url: str, status: int, deadline: float) -> httpx.Response:
    """Poll ``url`` until it answers ``status``; the last answer."""
    end = time.monotonic() + deadline
    while True:
        try:
            response = httpx.get(url, timeout=5)
        except httpx.TransportError:
            response = None
        if response is not None and response.status_code == status:
            return response
        if time.monotonic() > end:
            raise AssertionError(f"{url} did not answer {status}: {response}")
        time.sleep(0.2)


def test_acceptance_keys_on(daemon: DaemonProcess, tmp_path: Path) -> None:
    """Keys from the CLI: 401 without, 403 without the right, 200 with (Bearer and Piston's
    bare header), a key's own rate limit with 429 and refill, revocation within a second,
    CORS preflights allowed and refused, an audit line naming the key and no source."""
    ultra_piston = pytest.importorskip("ultra_piston")
    settings = {
        "PISTON_GATEWAY_API_KEYS": "file",
        "PISTON_GATEWAY_API_KEYS_FILE": str(tmp_path / "api-keys.toml"),
        "PISTON_GATEWAY_CORS_ORIGINS": EDITOR,
        "PISTON_LOG_LEVEL": "INFO",
    }
    plain = keys_cli(settings, "add", "--name", "plain")
    limited = keys_cli(
        settings, "add", "--name", "limited", "--jobs-per-minute", "60", "--burst", "2"
    )
    assert plain.returncode == 0, plain.stderr
    assert limited.returncode == 0, limited.stderr
    key, slow = plain.stdout.strip(), limited.stdout.strip()
    with GatewayProcess.start(tmp_path / "gateway", daemon.socket, settings) as gateway:
        bearer = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=gateway.url, timeout=30) as http:
            anonymous = http.post("/api/v2/execute", json=HELLO)
            assert anonymous.status_code == 401
            assert anonymous.json() == {
                "message": "an API key is required: send it as Authorization: Bearer <key>"
            }
            assert anonymous.headers["www-authenticate"] == 'Bearer realm="pistond"'
            wrong = http.post("/api/v2/execute", json=HELLO, headers={"Authorization": "Bearer x"})
            assert (wrong.status_code, wrong.json()) == (401, {"message": "invalid API key"})
            ran = http.post("/api/v2/execute", json=HELLO, headers=bearer)
            assert ran.status_code == 200
            assert ran.json()["run"]["stdout"] == "hi\n"
            install = http.post(
                "/api/v2/packages", json={"language": "python", "version": "*"}, headers=bearer
            )
            assert install.status_code == 403
            assert install.json() == {"message": "this API key may not manage packages"}
            assert http.get("/api/v2/packages").status_code == 401

            client = ultra_piston.PistonClient(
                base_url=f"{gateway.url}/api/v2/", rate_limit=0, api_key=key
            )
            assert (
                client.post_execute(
                    "python", "*", ultra_piston.File(content='print("hi")')
                ).run.stdout
                == "hi\n"
            )

            limited_headers = {"Authorization": slow}
            answers = [
                http.post("/api/v2/execute", json=HELLO, headers=limited_headers) for _ in range(3)
            ]
            assert [a.status_code for a in answers[:2]] == [200, 200]
            refused = answers[2]
            assert refused.status_code == 429
            assert refused.json()["message"].startswith("rate limit exceeded")
            assert refused.headers["ratelimit-limit"] == "2"
            assert refused.headers["ratelimit-remaining"] == "0"
            retry = int(refused.headers["retry-after"])
            assert 1 <= retry <= 2
            time.sleep(retry + 0.2)
            refilled = http.post("/api/v2/execute", json=HELLO, headers=limited_headers)
            assert refilled.status_code == 200

            preflight = {
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            }
            allowed = http.options("/api/v2/execute", headers={"Origin": EDITOR, **preflight})
            assert allowed.status_code == 204
            assert allowed.headers["access-control-allow-origin"] == EDITOR
            denied = http.options(
                "/api/v2/execute", headers={"Origin": "https://other.example", **preflight}
            )
            assert denied.status_code == 403
            assert "access-control-allow-origin" not in denied.headers

            revoked = keys_cli(settings, "revoke", key.split("_")[1])
            assert revoked.returncode == 0, revoked.stderr
            time.sleep(1.2)
            after = http.post("/api/v2/execute", json=HELLO, headers=bearer)
            assert (after.status_code, after.json()) == (
                401,
                {"message": "this API key was revoked"},
            )
        log = gateway.log_text()
    key_id = key.split("_")[1]
    lines = [
        json.loads(line.split("pistond.gateway.audit: ", 1)[1])
        for line in log.splitlines()
        if "pistond.gateway.audit: " in line
    ]
    ran_lines = [line for line in lines if line["key"] == key_id and line["status"] == 200]
    assert ran_lines
    assert ran_lines[0]["route"] == "/api/v2/execute"
    assert ran_lines[0]["language"] == "python"
    assert ran_lines[0]["run"]["status"] == "ok"
    assert 'print(\\"hi\\")' not in log
    assert key not in log


def test_acceptance_keys_off_clients_unchanged(daemon: DaemonProcess, tmp_path: Path) -> None:
    """By default no key is asked for, answers carry no rate-limit headers, and published
    clients run unchanged."""
    ultra_piston = pytest.importorskip("ultra_piston")
    with GatewayProcess.start(tmp_path / "gateway", daemon.socket) as gateway:
        response = httpx.post(gateway.url + "/api/v2/execute", json=HELLO, timeout=30)
        assert response.status_code == 200
        assert not any(name.startswith("ratelimit") for name in response.headers)
        client = ultra_piston.PistonClient(base_url=f"{gateway.url}/api/v2/", rate_limit=0)
        assert any(r.language == "python" for r in client.get_runtimes())
        output = client.post_execute("python", "*", ultra_piston.File(content='print("hi")'))
        assert output.run.stdout == "hi\n"
        packages = httpx.get(gateway.url + "/api/v2/packages", timeout=30)
        assert packages.status_code == 200


def test_acceptance_health_follows_the_daemon(tmp_path: Path) -> None:
    """Ready with the daemon; 503 once it stops (the gateway stays live); ready again when a
    daemon is back on the socket."""
    directory = tmp_path / "daemon"
    first = DaemonProcess.start(directory)
    try:
        with GatewayProcess.start(tmp_path / "gateway", first.socket) as gateway:
            ready = wait_for(gateway.url + "/api/v2/health/ready", 200, 10)
            assert ready.json()["checks"]["daemon"]["runtimes"] > 0
            first.stop()
            down = wait_for(gateway.url + "/api/v2/health", 503, 10)
            assert down.json()["ready"] is False
            assert down.json()["live"] is True
            assert "daemon" in down.json()["message"]
            assert httpx.get(gateway.url + "/api/v2/health/live", timeout=5).status_code == 200
            second = DaemonProcess.start(directory)
            try:
                back = wait_for(gateway.url + "/api/v2/health/ready", 200, 15)
                assert back.json()["ready"] is True
                info = httpx.get(gateway.url + "/api/v2/info", timeout=5).json()
                assert info["sandbox"]["cgroup"] in {"v2", "hybrid", "v1", "none"}
                assert str(directory) not in json.dumps(info)
            finally:
                second.stop()
    finally:
        first.stop()
