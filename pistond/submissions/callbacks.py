"""Callback delivery with retries: each finished submission's result, ``POST``-ed to its URL.

The sender claims due callbacks from the database (any gateway may deliver any callback), tries
each once within ``PISTON_CALLBACK_TIMEOUT``, and records the outcome: ``delivered`` on a 2xx
answer; ``refused`` when the URL's addresses are not allowed (nothing is sent); ``failed`` when
the answer cannot change by asking again (another 4xx, a redirect) or after
``PISTON_CALLBACK_ATTEMPTS`` attempts; otherwise it is due again after a pause that doubles
from 1 s to at most 60 s (each with up to 20% less, so retries of many callbacks spread out).

Delivery is at least once: a gateway that dies after the receiver got the callback but before
it recorded that sends it again once the claim ran out. Receivers recognise repeats by
``token``. Log lines name the submission's number, never its URL (which may hold a secret)
or its body.
"""

from __future__ import annotations

import json
import logging
import random
from typing import TYPE_CHECKING, Final, NoReturn

import attrs
import sqlalchemy.exc
import trio

from pistond.submissions.addresses import CallbackRefused, parse_callback_url
from pistond.submissions.database import reason
from pistond.submissions.delivery import Delivery, Verdict, deliver
from pistond.submissions.records import CallbackState
from pistond.submissions.views import submission_json

if TYPE_CHECKING:
    import ssl

    from pistond.submissions.addresses import CallbackPolicy
    from pistond.submissions.records import CallbackClaim
    from pistond.submissions.store import SubmissionStore

logger = logging.getLogger(__name__)

FIRST_PAUSE: Final = 1.0
LONGEST_PAUSE: Final = 60.0
CONCURRENCY: Final = 16
"""Callbacks one gateway delivers at once."""
LEASE_SLACK: Final = 5.0
"""Seconds beyond the attempt's timeout before a claimed callback is due again."""
DATABASE_PAUSE: Final = 5.0


def pause_before(
    attempt: int, *, jitter: float = 0.0, pauses: tuple[float, float] = (FIRST_PAUSE, LONGEST_PAUSE)
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (from 1): 1, 2, 4, ... 60 (the
    first and longest of ``pauses``), less ``jitter`` (a share from 0 to 0.2)."""
    first, longest = pauses
    return min(longest, first * 2.0 ** (attempt - 1)) * (1 - jitter)


@attrs.define(eq=False)
class CallbackSender:
    """Delivers the callbacks that are due, from any gateway's submissions.

    Args:
        store: the database.
        policy: where callbacks may go.
        attempts: most attempts per callback.
        timeout: seconds per attempt.
        poll_interval: seconds between looks when nothing is due.
        ssl_context: TLS settings for https callbacks; the system's defaults if None.
        pauses: the first and the longest pause between attempts, in seconds.
    """

    store: SubmissionStore
    policy: CallbackPolicy
    attempts: int
    timeout: float
    poll_interval: float
    ssl_context: ssl.SSLContext | None = None
    pauses: tuple[float, float] = (FIRST_PAUSE, LONGEST_PAUSE)
    _running: int = attrs.field(init=False, default=0)
    _wake: trio.Event = attrs.field(init=False, factory=trio.Event)
    _freed: trio.Event = attrs.field(init=False, factory=trio.Event)

    def wake_nowait(self) -> None:
        """Look for due callbacks now (a submission just finished)."""
        self._wake.set()

    async def serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Deliver due callbacks forever, :data:`CONCURRENCY` at once."""
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                free = CONCURRENCY - self._running
                if free <= 0:
                    await self._freed.wait()
                    self._freed = trio.Event()
                    continue
                try:
                    claims = await self.store.claim_callbacks(free, self.timeout + LEASE_SLACK)
                except sqlalchemy.exc.SQLAlchemyError as exc:
                    logger.warning("cannot look for due callbacks: %s", reason(exc))
                    await trio.sleep(DATABASE_PAUSE)
                    continue
                for claim in claims:
                    self._running += 1
                    nursery.start_soon(self._attempt, claim)
                if len(claims) < free:
                    with trio.move_on_after(self.poll_interval):
                        await self._wake.wait()
                    self._wake = trio.Event()

    async def _attempt(self, claim: CallbackClaim) -> None:
        try:
            delivery = await self.attempt(claim)
            await self._record(claim, delivery)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            logger.warning(
                "submission %d: callback outcome not recorded (%s); it is due again later",
                claim.id,
                reason(exc),
            )
        finally:
            self._running -= 1
            self._freed.set()

    async def attempt(self, claim: CallbackClaim) -> Delivery:
        """One delivery attempt of a claimed callback, within the timeout."""
        body = json.dumps(submission_json(claim.submission), ensure_ascii=False).encode()
        try:
            target = parse_callback_url(claim.url)
        except CallbackRefused as exc:
            return Delivery(Verdict.REFUSED, str(exc))
        with trio.move_on_after(self.timeout):
            return await deliver(target, body, policy=self.policy, ssl_context=self.ssl_context)
        return Delivery(Verdict.RETRY, "timed out")

    async def _record(self, claim: CallbackClaim, delivery: Delivery) -> None:
        verdict = delivery.verdict
        if verdict is Verdict.RETRY and claim.attempt >= self.attempts:
            verdict = Verdict.FAILED
        if verdict is Verdict.RETRY:
            jitter = random.uniform(0, 0.2)
            pause = pause_before(claim.attempt, jitter=jitter, pauses=self.pauses)
            logger.info(
                "submission %d: callback attempt %d: %s; next in %.1f s",
                claim.id,
                claim.attempt,
                delivery.detail,
                pause,
            )
            await self.store.retry_callback(claim, pause, delivery.detail)
            return
        state = {
            Verdict.DELIVERED: CallbackState.DELIVERED,
            Verdict.REFUSED: CallbackState.REFUSED,
            Verdict.FAILED: CallbackState.FAILED,
        }[verdict]
        error = None if verdict is Verdict.DELIVERED else delivery.detail
        log = logger.info if verdict is Verdict.DELIVERED else logger.warning
        log(
            "submission %d: callback %s (attempt %d: %s)",
            claim.id,
            state,
            claim.attempt,
            delivery.detail,
        )
        await self.store.finish_callback(claim, state, error)
