"""Submissions end to end: real daemons, real gateway processes, SQLite and a real PostgreSQL.

Rules: root (the daemons build sandboxes); every daemon and gateway on its own socket, data
directory and free loopback port; callbacks go to a receiver on 127.0.0.1 only; every wait is
bounded. These are issue 14's acceptance tests: tests against one compile through submissions,
submit-poll-result, a batch of 50, callbacks allowed and refused, restarts that keep queued
submissions, and two gateway/daemon pairs on one PostgreSQL draining 500 submissions with no
duplicate and no loss, also when one pair is killed with kill -9 midway.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio

from pistond.testing.daemon import DaemonProcess
from pistond.testing.gateway import GatewayProcess

from .receiver import open_receiver
from .support import eventually

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from pistond.testing.postgres import PostgresServer

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="real daemons need root"),
    pytest.mark.slow,
]

SUM_C = r"""
#include <stdio.h>
int main(void) {
    long a, b;
    if (scanf("%ld %ld", &a, &b) != 2) return 3;
    printf("%ld\n", a + b);
    return 0;
}
"""
FAST = {"PISTON_SUBMISSION_POLL_INTERVAL": "50", "PISTON_SUBMISSION_LEASE": "3000"}
DONE = re.compile(r"submission (\d+): done$", re.MULTILINE)


def _echo(n: int) -> dict[str, Any]:
    return {"language": "bash", "version": "*", "files": [{"content": f"echo job-{n}"}]}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One real daemon with the host runtimes for the module's single-pair tests."""
    with DaemonProcess.start(tmp_path_factory.mktemp("daemon"), {"PISTON_LOG_LEVEL": "INFO"}) as d:
        yield d


def _wait_all(url: str, tokens: list[str], seconds: float = 120) -> list[dict[str, Any]]:
    """Poll GET batch until every submission is done; them, in order."""
    deadline = time.monotonic() + seconds
    while True:
        done: list[dict[str, Any]] = []
        for start in range(0, len(tokens), 100):
            chunk = ",".join(tokens[start : start + 100])
            answer = httpx.get(
                f"{url}/api/v2/submissions/batch", params={"tokens": chunk}, timeout=30
            )
            assert answer.status_code == 200, answer.text
            done += answer.json()
        if all(item is not None and item["state"] == "done" for item in done):
            return done
        assert time.monotonic() < deadline, Counter(item and item["state"] for item in done)
        time.sleep(0.2)


def test_acceptance_c_program_with_five_tests_compiles_once(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    """A C program with 5 tests, through a submission: one compile stage, five runs, the
    right verdicts (a wrong expected output and a bad input included)."""
    body = {
        "language": "c",
        "version": "*",
        "files": [{"name": "sum.c", "content": SUM_C}],
        "tests": [
            {"name": "small", "stdin": "1 2", "expected_output": "3\n"},
            {"name": "negative", "stdin": "-5 2", "expected_output": "-3\n"},
            {"name": "large", "stdin": "4000000000 4000000000", "expected_output": "8000000000"},
            {"name": "wrong", "stdin": "2 2", "expected_output": "5\n"},
            {"name": "no input", "stdin": "", "expected_output": "0\n"},
        ],
        "compare": "trailing_whitespace",
    }
    with GatewayProcess.start(tmp_path, daemon.socket, FAST) as gateway:
        answer = httpx.post(f"{gateway.url}/api/v2/submissions?wait=true", json=body, timeout=60)
    submission = answer.json()
    assert answer.status_code == 201, answer.text
    assert submission["state"] == "done", submission
    result = submission["result"]
    assert result["compile"]["code"] == 0
    assert "run" not in result
    verdicts = [(test["name"], test["verdict"], test["run"]["status"]) for test in result["tests"]]
    assert verdicts == [
        ("small", "accepted", None),
        ("negative", "accepted", None),
        ("large", "accepted", None),
        ("wrong", "wrong_answer", None),
        ("no input", None, "RE"),
    ]
    assert [test["run"]["stdout"] for test in result["tests"][:4]] == [
        "3\n", "-3\n", "8000000000\n", "4\n",
    ]  # fmt: skip


def test_acceptance_submit_poll_result_and_batch_of_50(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    """Submit, get a token at once, poll until done, read the result; then a batch of 50, every
    one done with its own output."""
    with GatewayProcess.start(tmp_path, daemon.socket, FAST) as gateway:
        body = {"language": "python", "version": "*", "files": [{"content": "print(6 * 7)"}]}
        answer = httpx.post(f"{gateway.url}/api/v2/submissions", json=body, timeout=30)
        assert answer.status_code == 201
        assert answer.json()["state"] in ("queued", "running")
        (done,) = _wait_all(gateway.url, [answer.json()["token"]])
        assert done["result"]["run"]["stdout"] == "42\n"
        assert done["result"]["language"] == "python"
        batch = httpx.post(
            f"{gateway.url}/api/v2/submissions/batch",
            json={"submissions": [_echo(n) for n in range(50)]},
            timeout=30,
        )
        assert batch.status_code == 201
        tokens = [item["token"] for item in batch.json()]
        results = _wait_all(gateway.url, tokens)
    assert [item["result"]["run"]["stdout"] for item in results] == [
        f"job-{n}\n" for n in range(50)
    ]


async def test_acceptance_callback_delivered_when_allowed_refused_when_not(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    """A gateway that allows 127.0.0.1 POSTs the result to a loopback receiver once done; a
    gateway with the default policy refuses the same callback_url (loopback) at submission, and
    one that allows a different network records the callback as refused, sending nothing."""
    body = {"language": "python", "version": "*", "files": [{"content": "print('called')"}]}
    async with open_receiver() as receiver:
        allowed = {**FAST, "PISTON_CALLBACK_ALLOW": "127.0.0.1/32"}
        gateway = await trio.to_thread.run_sync(
            lambda: GatewayProcess.start(tmp_path / "allowed", daemon.socket, allowed)
        )
        try:
            async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
                answer = await http.post(
                    "/api/v2/submissions", json={**body, "callback_url": receiver.url + "/hook"}
                )
                assert answer.status_code == 201, answer.text
                (received,) = await receiver.wait_for(1)
                token = answer.json()["token"]

                async def recorded() -> bool:
                    read = (await http.get(f"/api/v2/submissions/{token}")).json()
                    return bool(read["callback"]["state"] != "pending")

                await eventually(recorded)
                final = (await http.get(f"/api/v2/submissions/{token}")).json()
        finally:
            await trio.to_thread.run_sync(gateway.stop)
        assert (received.method, received.target) == ("POST", "/hook")
        assert received.json()["token"] == token
        assert received.json()["state"] == "done"
        assert received.json()["result"]["run"]["stdout"] == "called\n"
        assert final["callback"] == {
            "url": receiver.url + "/hook",
            "state": "delivered",
            "attempts": 1,
            "error": None,
        }

        default = await trio.to_thread.run_sync(
            lambda: GatewayProcess.start(tmp_path / "default", daemon.socket, FAST)
        )
        try:
            async with httpx.AsyncClient(base_url=default.url, timeout=30) as http:
                refused = await http.post(
                    "/api/v2/submissions", json={**body, "callback_url": receiver.url}
                )
        finally:
            await trio.to_thread.run_sync(default.stop)
        assert refused.status_code == 400
        assert "callback_url is not an address this server may call back" in refused.text
        assert len(receiver.received) == 1


def test_acceptance_restarts_keep_queued_submissions(tmp_path: Path) -> None:
    """Submissions accepted while the daemon is down stay queued, through a restart of the
    gateway too, and run once both are back."""
    daemon = DaemonProcess.start(tmp_path / "daemon", {"PISTON_LOG_LEVEL": "INFO"})
    settings = {k: v for k, v in daemon.environ.items() if k.startswith("PISTON_")}
    daemon.stop()
    gateway = GatewayProcess.start(tmp_path / "gateway", daemon.socket, FAST)
    try:
        batch = httpx.post(
            f"{gateway.url}/api/v2/submissions/batch",
            json={"submissions": [_echo(n) for n in range(5)]},
            timeout=30,
        )
        assert batch.status_code == 201
        tokens = [item["token"] for item in batch.json()]
        time.sleep(1.0)
        read = httpx.get(
            f"{gateway.url}/api/v2/submissions/batch", params={"tokens": ",".join(tokens)}
        ).json()
        assert [item["state"] for item in read] == ["queued"] * 5
    finally:
        assert gateway.stop() == 0
    daemon = DaemonProcess.start(tmp_path / "daemon", settings)
    try:
        with GatewayProcess.start(tmp_path / "gateway", daemon.socket, FAST) as restarted:
            results = _wait_all(restarted.url, tokens, seconds=60)
    finally:
        daemon.stop()
    assert [item["result"]["run"]["stdout"] for item in results] == [f"job-{n}\n" for n in range(5)]


@pytest.mark.parametrize("kill", [False, True], ids=["both-pairs", "one-pair-killed"])
def test_acceptance_two_pairs_on_postgresql_drain_500(
    postgres: PostgresServer, tmp_path: Path, kill: bool
) -> None:
    """Two gateway/daemon pairs share one PostgreSQL: a batch of 500 sent to one gateway is
    drained by both, each submission done once with its own output; with one pair killed by
    kill -9 midway, the other takes over its submissions after their lease, still with no
    duplicate completion and no loss."""
    url = postgres.create_database(f"drain_{'kill' if kill else 'both'}")
    settings = {
        **FAST,
        "PISTON_DATABASE_URL": url,
        "PISTON_SUBMISSION_MAX_BATCH": "500",
        "PISTON_SUBMISSION_WORKERS": "8",
    }
    daemons = [
        DaemonProcess.start(tmp_path / f"daemon-{n}", {"PISTON_LOG_LEVEL": "INFO"}) for n in (0, 1)
    ]
    gateways: list[GatewayProcess] = []
    try:
        gateways = [
            GatewayProcess.start(tmp_path / f"gateway-{n}", daemons[n].socket, settings)
            for n in (0, 1)
        ]
        batch = httpx.post(
            f"{gateways[0].url}/api/v2/submissions/batch",
            json={"submissions": [_echo(n) for n in range(500)]},
            timeout=60,
        )
        assert batch.status_code == 201, batch.text
        tokens = [item["token"] for item in batch.json()]
        if kill:
            deadline = time.monotonic() + 120
            while len(DONE.findall(gateways[0].log_text())) < 60:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            gateways[0].kill()
            daemons[0].kill()
        results = _wait_all(gateways[1].url, tokens, seconds=240)
    finally:
        for gateway in gateways:
            gateway.stop()
        for daemon in daemons:
            daemon.stop()
    assert [item["result"]["run"]["stdout"] for item in results] == [
        f"job-{n}\n" for n in range(500)
    ]
    logs = [gateway.log_text() for gateway in gateways]
    completions = Counter(int(n) for log in logs for n in DONE.findall(log))
    assert len(completions) == 500
    assert max(completions.values()) == 1
    assert all(DONE.search(log) for log in logs), "both pairs ran submissions"
    for log in logs:
        assert "outcome was dropped" not in log
        assert postgres.password not in log
    if kill:
        assert "again whose worker stopped holding them" in logs[1]
        # The killed daemon's successor cleans up what it left (sandboxes, cgroups, mounts).
        successor = DaemonProcess.start(
            daemons[0].socket.parent,
            {k: v for k, v in daemons[0].environ.items() if k.startswith("PISTON_")},
        )
        successor.stop()
