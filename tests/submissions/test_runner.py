"""pistond.submissions.runner: claim, lease, execute over real RPC, store once, give back."""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import msgpack
import pytest
import sqlalchemy.exc
import trio
from gateway.fake_daemon import FakeDaemon

from pistond.errors import Overloaded
from pistond.gateway.daemon_socket import DaemonSocket
from pistond.rpc.server import serve_rpc
from pistond.submissions.records import NewSubmission, State
from pistond.submissions.runner import Runner, RunnerSettings
from pistond.submissions.store import SubmissionStore

from .support import eventually

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Collection
    from pathlib import Path

    from pistond.submissions.records import Submission

FAST = RunnerSettings(workers=4, lease=2.0, poll_interval=0.05, max_attempts=3)


def _params(source: str, language: str = "python") -> bytes:
    params = {"language": language, "version": "*", "files": [{"content": source}]}
    return msgpack.packb(params, use_bin_type=True)


@asynccontextmanager
async def _daemon(directory: Path, fake: FakeDaemon) -> AsyncIterator[DaemonSocket]:
    path = directory / "fake.sock"
    async with trio.open_nursery() as nursery:
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        await sock.bind(str(path))
        sock.listen(16)
        await nursery.start(
            partial(serve_rpc, [trio.SocketListener(sock)], fake, max_message_size=1 << 26)
        )
        yield DaemonSocket(path)
        nursery.cancel_scope.cancel()


async def _until_done(
    store: SubmissionStore, tokens: list[str], seconds: float = 15
) -> list[Submission]:
    with trio.fail_after(seconds):
        while True:
            found = await store.get_many(tokens)
            if all(item is not None and item.state is State.DONE for item in found):
                return [item for item in found if item is not None]
            await trio.sleep(0.02)


async def test_runner_runs_and_stores_results(
    store: SubmissionStore, short_directory: Path
) -> None:
    """Queued submissions run through execute; each result is Piston's JSON; done is told."""
    created = await store.create(
        [NewSubmission(_params(f"print('n{n}')")) for n in range(10)], max_pending=0
    )
    finished: list[int] = []
    async with _daemon(short_directory, FakeDaemon()) as daemon, trio.open_nursery() as nursery:
        runner = Runner(store, daemon, FAST, finished.append)
        nursery.start_soon(runner.serve)
        done = await _until_done(store, [item.token for item in created])
        nursery.cancel_scope.cancel()
    outputs = [json.loads(item.result or "")["run"]["stdout"] for item in done]
    assert outputs == [f"n{n}\n" for n in range(10)]
    assert sorted(finished) == [item.id for item in created]


async def test_runner_stores_daemon_refusals(store: SubmissionStore, short_directory: Path) -> None:
    """A submission the daemon refuses is done with the refusal as its error."""
    (created,) = await store.create([NewSubmission(_params("print(1)", "cobol"))], max_pending=0)
    async with _daemon(short_directory, FakeDaemon()) as daemon, trio.open_nursery() as nursery:
        nursery.start_soon(Runner(store, daemon, FAST).serve)
        (done,) = await _until_done(store, [created.token])
        nursery.cancel_scope.cancel()
    assert done.result is None
    assert done.error is not None
    assert (done.error.status, done.error.message) == (400, "cobol-* runtime is unknown")


async def test_runner_waits_for_an_unreachable_daemon(
    store: SubmissionStore, short_directory: Path
) -> None:
    """Without a daemon, submissions stay queued (no attempt counted) and run once it is up."""
    created = await store.create(
        [NewSubmission(_params("print('x')")) for _ in range(3)], max_pending=0
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(Runner(store, DaemonSocket(short_directory / "fake.sock"), FAST).serve)
        await trio.sleep(1.0)
        waiting = await store.get_many([item.token for item in created])
        assert {item.state for item in waiting if item is not None} == {State.QUEUED}
        async with _daemon(short_directory, FakeDaemon()):
            await _until_done(store, [item.token for item in created])
        nursery.cancel_scope.cancel()


async def test_runner_gives_back_when_overloaded(
    store: SubmissionStore, short_directory: Path
) -> None:
    """An overloaded daemon's submission goes back to the queue, and runs once it has room."""
    fake = FakeDaemon()
    fake.errors["execute"] = Overloaded("the job queue is full")
    (created,) = await store.create([NewSubmission(_params("print('x')"))], max_pending=0)
    async with _daemon(short_directory, fake) as daemon, trio.open_nursery() as nursery:
        nursery.start_soon(Runner(store, daemon, FAST).serve)
        await eventually(lambda: any(name == "execute" for name, _ in fake.calls))
        await trio.sleep(0.2)
        assert (await store.get(created.token)).state is State.QUEUED  # type: ignore[union-attr]
        del fake.errors["execute"]
        await _until_done(store, [created.token])
        nursery.cancel_scope.cancel()


async def test_runner_stops_a_job_whose_lease_was_taken_over(
    store: SubmissionStore, short_directory: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """When another worker recovered a lease, the holder stops its job and stores nothing;
    the new holder's outcome is the one kept."""
    caplog.set_level(logging.WARNING, "pistond.submissions.runner")
    (created,) = await store.create(
        [NewSubmission(_params("import time; time.sleep(3)"))], max_pending=0
    )
    settings = RunnerSettings(workers=1, lease=0.9, poll_interval=0.05, max_attempts=5)
    async with _daemon(short_directory, FakeDaemon()) as daemon, trio.open_nursery() as nursery:
        runner = Runner(store, daemon, settings)
        nursery.start_soon(runner.serve)
        await eventually(lambda: runner.running > 0)
        # Another machine's view: the lease is taken away (as recovery after expiry would).
        with store.database.writing() as connection:
            connection.exec_driver_sql(
                "UPDATE pistond_submissions SET lease = 'someone else' WHERE state = 'running'"
            )
        await eventually(lambda: "was taken over; stopping it" in caplog.text)
        nursery.cancel_scope.cancel()
    found = await store.get(created.token)
    assert found is not None
    assert (found.state, found.result) == (State.RUNNING, None)


class _Unrenewable(SubmissionStore):
    """A store whose database stops answering lease renewals."""

    async def renew(self, leases: Collection[str], lease_seconds: float) -> set[tuple[int, str]]:
        raise sqlalchemy.exc.OperationalError(
            "UPDATE", {}, Exception("server closed the connection")
        )


async def test_runner_stops_its_job_before_the_lease_can_run_out(
    store: SubmissionStore, short_directory: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker that cannot renew stops its job before the lease ends, so that nobody else can
    take the submission while it still runs: it never runs to completion twice."""
    caplog.set_level(logging.WARNING, "pistond.submissions.runner")
    (created,) = await store.create(
        [NewSubmission(_params("import time; time.sleep(5)"))], max_pending=0
    )
    unrenewable = _Unrenewable(store.database)
    settings = RunnerSettings(workers=1, lease=1.0, poll_interval=0.05, max_attempts=5)
    fake = FakeDaemon()
    async with _daemon(short_directory, fake) as daemon, trio.open_nursery() as nursery:
        nursery.start_soon(Runner(unrenewable, daemon, settings).serve)
        start = trio.current_time()
        await eventually(lambda: "its lease ran out before its job finished" in caplog.text)
        stopped = trio.current_time() - start
        lease_row = await trio.to_thread.run_sync(_lease_expires, store)
        nursery.cancel_scope.cancel()
    assert stopped < settings.lease
    assert lease_row is not None
    found = await store.get(created.token)
    assert found is not None
    assert found.state is State.RUNNING


def _lease_expires(store: SubmissionStore) -> Any:
    with store.database.reading() as connection:
        return connection.exec_driver_sql(
            "SELECT lease_expires FROM pistond_submissions"
        ).scalar_one()


async def test_runner_drain_gives_running_jobs_back(
    store: SubmissionStore, short_directory: Path
) -> None:
    """Draining with no grace cancels running jobs and queues them again at once, without
    counting the start."""
    (created,) = await store.create(
        [NewSubmission(_params("import time; time.sleep(5)"))], max_pending=0
    )
    async with _daemon(short_directory, FakeDaemon()) as daemon:
        runner = Runner(store, daemon, FAST)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(runner.serve)
            await eventually(lambda: runner.running > 0)
            with trio.fail_after(5):
                await runner.drain(0.0)
    found = await store.get(created.token)
    assert found is not None
    assert found.state is State.QUEUED
    (claim,) = await store.claim("next", 1, 0.01)
    await trio.sleep(0.05)
    assert (await store.recover_expired(max_attempts=1)).abandoned == (claim.id,)


async def test_runner_drain_lets_quick_jobs_finish(
    store: SubmissionStore, short_directory: Path
) -> None:
    """Within the grace, running jobs finish and their results are stored."""
    (created,) = await store.create(
        [NewSubmission(_params("import time; time.sleep(0.5)"))], max_pending=0
    )
    async with _daemon(short_directory, FakeDaemon()) as daemon:
        runner = Runner(store, daemon, FAST)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(runner.serve)
            await eventually(lambda: runner.running > 0)
            await runner.drain(5.0)
    found = await store.get(created.token)
    assert found is not None
    assert found.state is State.DONE
