"""pistond.submissions.callbacks: delivery with retries and a bounded back-off, recorded."""

from __future__ import annotations

import json

import pytest
import trio

from pistond.submissions.addresses import CallbackPolicy
from pistond.submissions.callbacks import CallbackSender, pause_before
from pistond.submissions.records import CallbackState, NewSubmission, Outcome, Submission
from pistond.submissions.store import SubmissionStore

from .receiver import open_receiver

LOOPBACK = CallbackPolicy.from_entries(["127.0.0.0/8"])


def test_callbacks_pause_doubles_and_is_bounded() -> None:
    """1, 2, 4, ... seconds, never more than 60; jitter only shortens."""
    assert [pause_before(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert pause_before(30) == 60
    assert pause_before(3, jitter=0.2) == pytest.approx(3.2)


async def _done_with_callback(store: SubmissionStore, url: str) -> Submission:
    (created,) = await store.create([NewSubmission(b"p", url)], max_pending=0)
    (claim,) = await store.claim("w", 1, 30)
    await store.complete(claim, Outcome(result='{"run": {"stdout": "hi\\n"}}'))
    found = await store.get(created.token)
    assert found is not None
    return found


async def _run_until(store: SubmissionStore, sender: CallbackSender, token: str) -> Submission:
    async with trio.open_nursery() as nursery:
        await nursery.start(sender.serve)
        sender.wake_nowait()
        with trio.fail_after(20):
            while True:
                found = await store.get(token)
                assert found is not None
                assert found.callback is not None
                if found.callback.state is not CallbackState.PENDING:
                    break
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    return found


def _sender(
    store: SubmissionStore, policy: CallbackPolicy = LOOPBACK, attempts: int = 5
) -> CallbackSender:
    return CallbackSender(
        store, policy, attempts=attempts, timeout=2.0, poll_interval=0.05, pauses=(0.05, 0.2)
    )


async def test_callbacks_retried_until_delivered(store: SubmissionStore) -> None:
    """Server errors are retried after growing pauses; the submission's JSON arrives, and the
    callback is recorded as delivered after three attempts."""
    async with open_receiver(statuses=[503, 500, 200]) as receiver:
        submission = await _done_with_callback(store, receiver.url + "/done")
        found = await _run_until(store, _sender(store), submission.token)
        assert len(receiver.received) == 3
        bodies = [request.json() for request in receiver.received]
    assert found.callback is not None
    assert (found.callback.state, found.callback.attempts) == (CallbackState.DELIVERED, 3)
    assert found.callback.error is None
    assert [body["callback"]["attempts"] for body in bodies] == [1, 2, 3]
    assert bodies[0]["token"] == submission.token
    assert bodies[0]["state"] == "done"
    assert bodies[0]["result"] == {"run": {"stdout": "hi\n"}}
    assert bodies[0]["callback"]["url"] == receiver.url + "/done"


async def test_callbacks_fail_after_the_last_attempt(store: SubmissionStore) -> None:
    """A receiver that keeps failing gets exactly ``attempts`` tries; the last error is kept."""
    async with open_receiver(statuses=[502]) as receiver:
        submission = await _done_with_callback(store, receiver.url)
        found = await _run_until(store, _sender(store, attempts=3), submission.token)
        assert len(receiver.received) == 3
    assert found.callback is not None
    assert (found.callback.state, found.callback.error) == (CallbackState.FAILED, "HTTP 502")


async def test_callbacks_client_error_is_not_retried(store: SubmissionStore) -> None:
    """A 404 answer will not change by asking again: failed after one attempt."""
    async with open_receiver(statuses=[404]) as receiver:
        submission = await _done_with_callback(store, receiver.url)
        found = await _run_until(store, _sender(store), submission.token)
        assert len(receiver.received) == 1
    assert found.callback is not None
    assert (found.callback.state, found.callback.attempts) == (CallbackState.FAILED, 1)


async def test_callbacks_refused_at_delivery_sends_nothing(store: SubmissionStore) -> None:
    """An address no longer allowed when the callback is due (policy changed, or the name now
    resolves elsewhere) is refused without a connection and without retries."""
    async with open_receiver() as receiver:
        submission = await _done_with_callback(store, receiver.url)
        found = await _run_until(store, _sender(store, CallbackPolicy()), submission.token)
        assert receiver.connections == 0
    assert found.callback is not None
    assert found.callback.state is CallbackState.REFUSED
    assert found.callback.attempts == 1


async def test_callbacks_slow_receiver_times_out_and_retries(store: SubmissionStore) -> None:
    """An attempt is bounded by the timeout; a receiver that never answers in time fails."""
    async with open_receiver(delay=5) as receiver:
        submission = await _done_with_callback(store, receiver.url)
        sender = CallbackSender(
            store, LOOPBACK, attempts=2, timeout=0.3, poll_interval=0.05, pauses=(0.05, 0.1)
        )
        found = await _run_until(store, sender, submission.token)
    assert found.callback is not None
    assert (found.callback.state, found.callback.error) == (CallbackState.FAILED, "timed out")
    assert json.loads(found.result or "") == {"run": {"stdout": "hi\n"}}
