"""pistond.submissions.store: the queue's rules, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
import trio

from pistond.submissions.records import (
    CallbackState,
    Failure,
    NewSubmission,
    Outcome,
    State,
)
from pistond.submissions.store import QueueFull, SubmissionStore
from pistond.submissions.tokens import is_token


def _new(count: int, callback: str | None = None) -> list[NewSubmission]:
    return [NewSubmission(params=b"job %d" % n, callback_url=callback) for n in range(count)]


async def test_store_create_queues_with_fresh_tokens(store: SubmissionStore) -> None:
    """Created submissions are queued, in order, each with its own 128-bit token."""
    created = await store.create(_new(3), max_pending=0)
    assert [item.state for item in created] == [State.QUEUED] * 3
    assert len({item.token for item in created}) == 3
    assert all(is_token(item.token) for item in created)
    assert [item.id for item in created] == sorted(item.id for item in created)
    found = await store.get(created[1].token)
    assert found == created[1]


async def test_store_get_unknown_token_is_none(store: SubmissionStore) -> None:
    """Only an existing token finds a submission; others are None, in place."""
    (created,) = await store.create(_new(1), max_pending=0)
    assert await store.get("0" * 32) is None
    assert await store.get_many(["0" * 32, created.token]) == [None, created]


async def test_store_create_refuses_beyond_pending_cap_all_or_none(store: SubmissionStore) -> None:
    """A batch that would pass the pending cap is refused whole; done ones do not count."""
    await store.create(_new(2), max_pending=3)
    with pytest.raises(QueueFull):
        await store.create(_new(2), max_pending=3)
    assert (await store.counts())[State.QUEUED] == 2
    for claim in await store.claim("w", 2, 30):
        assert await store.complete(claim, Outcome(result="{}"))
    assert len(await store.create(_new(3), max_pending=3)) == 3


async def test_store_claim_takes_oldest_once(store: SubmissionStore) -> None:
    """Claims take the oldest queued submissions, and never one that is claimed already."""
    created = await store.create(_new(5), max_pending=0)
    first = await store.claim("a", 2, 30)
    second = await store.claim("b", 10, 30)
    assert [claim.id for claim in first] == [item.id for item in created[:2]]
    assert [claim.id for claim in second] == [item.id for item in created[2:]]
    assert first[0].params == b"job 0"
    assert first[0].lease != second[0].lease
    assert await store.claim("c", 10, 30) == []
    assert (await store.get(created[0].token)).state is State.RUNNING  # type: ignore[union-attr]


async def test_store_concurrent_claims_never_share(store: SubmissionStore) -> None:
    """Many claimers at once (threads, real connections) take each submission exactly once."""
    await store.create(_new(60), max_pending=0)
    taken: list[int] = []

    async def claimer() -> None:
        while claims := await store.claim("w", 3, 30):
            taken.extend(claim.id for claim in claims)

    async with trio.open_nursery() as nursery:
        for _ in range(6):
            nursery.start_soon(claimer)
    assert len(taken) == 60
    assert len(set(taken)) == 60


async def test_store_complete_only_by_lease_holder(store: SubmissionStore) -> None:
    """A recovered lease cannot complete: the submission keeps the outcome of its new holder."""
    (created,) = await store.create(_new(1), max_pending=0)
    (old,) = await store.claim("a", 1, 0.05)
    await trio.sleep(0.2)
    recovered = await store.recover_expired(max_attempts=5)
    assert recovered.requeued == (created.id,)
    (new,) = await store.claim("b", 1, 30)
    assert not await store.complete(old, Outcome(result='{"who": "old"}'))
    assert await store.complete(new, Outcome(result='{"who": "new"}'))
    assert not await store.complete(new, Outcome(result='{"who": "again"}'))
    done = await store.get(created.token)
    assert done is not None
    assert (done.state, done.result) == (State.DONE, '{"who": "new"}')
    assert done.finished_at is not None
    assert done.started_at is not None


async def test_store_renew_keeps_lease_and_reports_lost(store: SubmissionStore) -> None:
    """Renewal keeps a lease past its first expiry; a lease already recovered is not renewed."""
    created = await store.create(_new(2), max_pending=0)
    (kept,) = await store.claim("a", 1, 0.3)
    (lost,) = await store.claim("a", 1, 0.05)
    await trio.sleep(0.15)
    assert (await store.recover_expired(5)).requeued == (created[1].id,)
    renewed = await store.renew({kept.lease, lost.lease}, 0.5)
    assert renewed == {(kept.id, kept.lease)}
    await trio.sleep(0.3)
    assert (await store.recover_expired(5)).requeued == ()
    assert (await store.get(created[0].token)).state is State.RUNNING  # type: ignore[union-attr]


async def test_store_gives_up_after_max_attempts(store: SubmissionStore) -> None:
    """A submission whose lease ran out on every one of max_attempts starts is done, failed."""
    (created,) = await store.create(_new(1, callback="http://127.0.0.1:9/"), max_pending=0)
    await store.claim("a", 1, 0.01)
    await trio.sleep(0.05)
    assert (await store.recover_expired(max_attempts=2)).requeued == (created.id,)
    await store.claim("a", 1, 0.01)
    await trio.sleep(0.05)
    recovered = await store.recover_expired(max_attempts=2)
    assert recovered.abandoned == (created.id,)
    done = await store.get(created.token)
    assert done is not None
    assert done.state is State.DONE
    assert done.error is not None
    assert done.error.status == 500
    assert "given up after 2 starts" in done.error.message
    assert [claim.id for claim in await store.claim_callbacks(5, 30)] == [created.id]


async def test_store_release_requeues_without_an_attempt(store: SubmissionStore) -> None:
    """A released submission waits its delay, is claimed again, and its attempts are unchanged."""
    (created,) = await store.create(_new(1), max_pending=0)
    for _ in range(4):
        (claim,) = await store.claim("a", 1, 30)
        assert await store.release(claim, 0.0)
    (claim,) = await store.claim("a", 1, 30)
    assert await store.release(claim, 0.3)
    assert await store.claim("a", 1, 30) == []
    await trio.sleep(0.4)
    (claim,) = await store.claim("a", 1, 0.01)
    await trio.sleep(0.05)
    assert (await store.recover_expired(max_attempts=1)).abandoned == (created.id,)


async def test_store_error_outcome_is_kept(store: SubmissionStore) -> None:
    """A daemon's refusal is stored as the submission's error, without a result."""
    (created,) = await store.create(_new(1), max_pending=0)
    (claim,) = await store.claim("a", 1, 30)
    failure = Failure(400, "nope-* runtime is unknown")
    assert await store.complete(claim, Outcome(result=None, error=failure))
    done = await store.get(created.token)
    assert done is not None
    assert (done.result, done.error) == (None, failure)


async def test_store_callbacks_due_once_done_then_retried_and_finished(
    store: SubmissionStore,
) -> None:
    """A callback is due when its submission is done, claimed by one sender at a time, due
    again after a retry's delay, and never again once finished."""
    created = await store.create(_new(2, callback="http://127.0.0.1:9/hook"), max_pending=0)
    assert await store.claim_callbacks(5, 30) == []
    (claim,) = await store.claim("a", 1, 30)
    assert await store.complete(claim, Outcome(result='{"run": 1}'))
    (due,) = await store.claim_callbacks(5, 30)
    assert (due.id, due.url, due.attempt) == (created[0].id, "http://127.0.0.1:9/hook", 1)
    assert due.submission.result == '{"run": 1}'
    assert await store.claim_callbacks(5, 30) == []
    assert await store.retry_callback(due, 0.2, "HTTP 503")
    assert await store.claim_callbacks(5, 30) == []
    await trio.sleep(0.3)
    (again,) = await store.claim_callbacks(5, 30)
    assert again.attempt == 2
    assert not await store.finish_callback(due, CallbackState.DELIVERED)
    assert await store.finish_callback(again, CallbackState.DELIVERED)
    assert await store.claim_callbacks(5, 0) == []
    done = await store.get(created[0].token)
    assert done is not None
    assert done.callback is not None
    assert (done.callback.state, done.callback.attempts) == (CallbackState.DELIVERED, 2)
    assert done.callback.error is None


async def test_store_callback_claim_expires(store: SubmissionStore) -> None:
    """A callback whose sender died is due again once its claim's lease ran out."""
    await store.create(_new(1, callback="http://127.0.0.1:9/"), max_pending=0)
    (claim,) = await store.claim("a", 1, 30)
    await store.complete(claim, Outcome(result="{}"))
    (first,) = await store.claim_callbacks(1, 0.05)
    await trio.sleep(0.15)
    (second,) = await store.claim_callbacks(1, 30)
    assert (first.id, second.attempt) == (second.id, 2)
    assert not await store.retry_callback(first, 0, "late")


async def test_store_purge_keeps_unfinished_and_pending_callbacks(store: SubmissionStore) -> None:
    """Retention deletes finished submissions past the TTL, except pending callbacks and
    anything not done."""
    plain, queued = await store.create(_new(2), max_pending=0)
    (hooked,) = await store.create(_new(1, callback="http://127.0.0.1:9/"), max_pending=0)
    claims = await store.claim("a", 3, 30)
    for claim in claims:
        if claim.id != queued.id:
            await store.complete(claim, Outcome(result="{}"))
        else:
            await store.release(claim, 0)
    await trio.sleep(0.2)
    assert await store.purge(ttl_seconds=60) == 0
    assert await store.purge(ttl_seconds=0.1) == 1
    assert await store.get_many([plain.token, queued.token, hooked.token]) == [
        None,
        await store.get(queued.token),
        await store.get(hooked.token),
    ]
    (due,) = await store.claim_callbacks(1, 30)
    await store.finish_callback(due, CallbackState.FAILED, "HTTP 404")
    assert await store.purge(ttl_seconds=0.1) == 1
    assert await store.get(hooked.token) is None
