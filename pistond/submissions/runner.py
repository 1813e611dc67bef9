"""The queue's workers: claim submissions, hold their leases, run them, store their outcomes.

One :class:`Runner` per gateway runs up to ``PISTON_SUBMISSION_WORKERS`` submissions at once,
each through the daemon's ``execute`` RPC on its own connection (the daemon queues and admits
them as it does every job). Its tasks:

- the **dispatcher** claims as many queued submissions as it has free places, as soon as one
  is free (woken at once by a local submission, else every poll interval);
- the **renewer** extends the leases of the submissions in progress every third of a lease;
- the **recoverer** queues again (or gives up) submissions whose lease ran out elsewhere.

Exactly-once completion: each job runs in a cancel scope whose deadline is the end of its lease
as this process last knew it (measured from *before* the claim or renewal was sent, less a
margin), so a worker that cannot renew stops its job (the RPC connection closes and the daemon
kills the sandbox) before anyone may take the submission over; and the store only accepts an
outcome from the current lease holder. A daemon that is unreachable, or overloaded, is not
the submission's fault: the submission goes back to the queue without counting as an attempt,
and the dispatcher waits for the daemon to answer ``ping`` again.

Shutdown (:meth:`Runner.drain`): stop claiming, give running jobs a grace period, then cancel
them and release their leases, so that another worker takes them at once.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from typing import TYPE_CHECKING, Any, Final, NoReturn

import attrs
import msgpack
import sqlalchemy.exc
import trio

from pistond.client import PistonClient
from pistond.errors import ErrorCode, PistondError
from pistond.gateway.errors import INTERNAL, DaemonUnavailable, from_rpc_error
from pistond.submissions.database import reason
from pistond.submissions.outcome import error_outcome, result_outcome
from pistond.submissions.records import Failure, Outcome

if TYPE_CHECKING:
    from collections.abc import Callable

    from pistond.gateway.daemon_socket import DaemonSocket
    from pistond.submissions.records import Claim
    from pistond.submissions.store import SubmissionStore

logger = logging.getLogger(__name__)

LEASE_MARGIN: Final = 0.2
"""Share of a lease kept in reserve: a job stops this long before its lease may be taken."""
OVERLOADED_DELAY: Final = 1.0
"""Seconds an overloaded daemon's submission waits before it is claimed again."""
RELEASE_TIMEOUT: Final = 5.0
"""Seconds a cancelled job may take to give its lease back."""
DAEMON_BACKOFF: Final = (0.2, 5.0)
"""First and longest pause between pings of an unreachable daemon."""
DATABASE_BACKOFF: Final = (0.5, 30.0)
"""First and longest pause after a database error."""


def worker_name() -> str:
    """This process's name in leases: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"[:200]


@attrs.frozen
class RunnerSettings:
    """How the workers run."""

    workers: int = 16
    """Submissions run at once."""
    lease: float = 30.0
    """Seconds a claim lasts without renewal."""
    poll_interval: float = 0.5
    """Seconds between looks at an empty queue."""
    max_attempts: int = 3
    """Starts after which a submission whose lease ran out is given up."""
    max_result_size: int = 1024 * 1024
    """Output bytes stored per submission."""

    @property
    def budget(self) -> float:
        """Seconds a job may run on one claim or renewal."""
        return self.lease * (1 - LEASE_MARGIN)


@attrs.frozen
class _Retry:
    """Not run through no fault of the submission: queue it again after ``delay`` seconds."""

    delay: float


class _Backoff:
    """A pause that doubles up to a ceiling while something keeps failing."""

    def __init__(self, bounds: tuple[float, float]) -> None:
        self._first, self._longest = bounds
        self.pause = self._first

    def failed(self) -> float:
        """The pause to take now; the next one is longer."""
        pause = self.pause
        self.pause = min(self.pause * 2, self._longest)
        return pause

    def succeeded(self) -> None:
        """Start again from the first pause."""
        self.pause = self._first


@attrs.define(eq=False)
class Runner:
    """The workers of one gateway.

    Args:
        store: the queue.
        daemon: the daemon's socket.
        settings: how many at once, lease and poll times, attempts, result size.
        on_done: called with a submission's id when its outcome is stored (wakes waiters and
            the callback sender).
    """

    store: SubmissionStore
    daemon: DaemonSocket
    settings: RunnerSettings
    on_done: Callable[[int], None] = lambda _id: None
    owner: str = attrs.field(factory=worker_name)
    _held: dict[tuple[int, str], trio.CancelScope] = attrs.field(init=False, factory=dict)
    _wake: trio.Event = attrs.field(init=False, factory=trio.Event)
    _freed: trio.Event = attrs.field(init=False, factory=trio.Event)
    _daemon_down: bool = attrs.field(init=False, default=False)
    _dispatching: trio.CancelScope = attrs.field(init=False, factory=trio.CancelScope)
    _grace: float = attrs.field(init=False, default=0.0)
    _stopped: trio.Event = attrs.field(init=False, factory=trio.Event)

    @property
    def running(self) -> int:
        """Submissions this gateway is running now."""
        return len(self._held)

    def wake_nowait(self) -> None:
        """Look at the queue now (a submission was just stored)."""
        self._wake.set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the workers until :meth:`drain` (or cancellation).

        Resource handling:
            Jobs run in a nursery of their own; the renewer keeps their leases until the last
            one ended. A job cancelled by shutdown releases its lease before it ends.
        """
        try:
            async with trio.open_nursery() as helpers:
                helpers.start_soon(self._renew_forever)
                helpers.start_soon(self._recover_forever)
                async with trio.open_nursery() as jobs:
                    task_status.started()
                    with self._dispatching:
                        await self._dispatch_forever(jobs)
                    jobs.cancel_scope.deadline = trio.current_time() + self._grace
                helpers.cancel_scope.cancel()
        finally:
            self._stopped.set()

    async def drain(self, grace: float) -> None:
        """Stop claiming; give running jobs ``grace`` seconds, then cancel and release them."""
        self._grace = grace
        self._dispatching.cancel()
        await self._stopped.wait()

    # -- claiming ----------------------------------------------------------------------------

    async def _dispatch_forever(self, jobs: trio.Nursery) -> NoReturn:
        database = _Backoff(DATABASE_BACKOFF)
        while True:
            await self._wait_for_daemon()
            free = self.settings.workers - len(self._held)
            if free <= 0:
                await self._freed.wait()
                self._freed = trio.Event()
                continue
            sent = trio.current_time()
            try:
                claims = await self.store.claim(self.owner, free, self.settings.lease)
            except sqlalchemy.exc.SQLAlchemyError as exc:
                pause = database.failed()
                logger.warning(
                    "cannot claim submissions (retrying in %.1f s): %s", pause, reason(exc)
                )
                await trio.sleep(pause)
                continue
            database.succeeded()
            for claim in claims:
                scope = trio.CancelScope(deadline=sent + self.settings.budget)
                self._held[claim.id, claim.lease] = scope
                jobs.start_soon(self._run, claim, scope)
            if len(claims) < free:
                with trio.move_on_after(self.settings.poll_interval):
                    await self._wake.wait()
                self._wake = trio.Event()

    async def _wait_for_daemon(self) -> None:
        backoff = _Backoff(DAEMON_BACKOFF)
        while self._daemon_down:
            try:
                await self.daemon.run(PistonClient.ping)
            except DaemonUnavailable:
                await trio.sleep(backoff.failed())
                continue
            except PistondError:
                pass  # an answer, even an error, is a daemon that is back
            logger.info("the daemon answers again; running submissions")
            self._daemon_down = False

    # -- one submission ----------------------------------------------------------------------

    async def _run(self, claim: Claim, scope: trio.CancelScope) -> None:
        """Run one claimed submission and store its outcome (or give it back)."""
        try:
            try:
                with scope:
                    done = await self._execute(claim)
            except Exception:
                logger.error("submission %d: failed in the gateway", claim.id, exc_info=True)
                done = Outcome(result=None, error=Failure(status=500, message=INTERNAL))
            except BaseException:
                # Shutdown (or a bug): hand the submission back for another worker.
                with trio.CancelScope(shield=True), trio.move_on_after(RELEASE_TIMEOUT):
                    await self._give_back(claim, 0.0)
                raise
            if scope.cancelled_caught:
                logger.warning(
                    "submission %d: its lease ran out before its job finished (the database "
                    "did not renew it); the job was stopped and the queue will run it again",
                    claim.id,
                )
            elif isinstance(done, _Retry):
                await self._give_back(claim, done.delay)
            else:
                await self._store(claim, done, scope)
        finally:
            del self._held[claim.id, claim.lease]
            self._freed.set()

    async def _execute(self, claim: Claim) -> Outcome | _Retry:
        params: dict[str, Any] = msgpack.unpackb(claim.params, raw=False)
        try:
            result = await self.daemon.run(lambda daemon: daemon.execute_request(params))
        except DaemonUnavailable:
            self._daemon_down = True
            return _Retry(0.0)
        except PistondError as exc:
            if exc.code is ErrorCode.OVERLOADED:
                return _Retry(OVERLOADED_DELAY)
            logger.info("submission %d: the daemon refused it: %s", claim.id, exc.code)
            return error_outcome(from_rpc_error(exc))
        return result_outcome(result, self.settings.max_result_size)

    async def _store(self, claim: Claim, outcome: Outcome, scope: trio.CancelScope) -> None:
        """Store the outcome, retrying database errors while the lease may still be held."""
        backoff = _Backoff(DATABASE_BACKOFF)
        while True:
            try:
                stored = await self.store.complete(claim, outcome)
                break
            except sqlalchemy.exc.SQLAlchemyError as exc:
                pause = backoff.failed()
                if trio.current_time() + pause >= scope.deadline:
                    logger.warning(
                        "submission %d: its outcome could not be stored before its lease ran "
                        "out (%s); the queue will run it again",
                        claim.id,
                        reason(exc),
                    )
                    return
                await trio.sleep(pause)
        if stored:
            logger.debug("submission %d: done", claim.id)
            self.on_done(claim.id)
        else:
            logger.warning(
                "submission %d: its lease was taken over before its outcome was stored; "
                "that outcome was dropped",
                claim.id,
            )

    async def _give_back(self, claim: Claim, delay: float) -> None:
        try:
            await self.store.release(claim, delay)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            logger.warning(
                "submission %d: could not be given back (%s); it runs again once its lease "
                "runs out",
                claim.id,
                reason(exc),
            )

    # -- leases ------------------------------------------------------------------------------

    async def _renew_forever(self) -> NoReturn:
        while True:
            await trio.sleep(self.settings.lease / 3)
            held = dict(self._held)
            if not held:
                continue
            sent = trio.current_time()
            try:
                renewed = await self.store.renew({lease for _, lease in held}, self.settings.lease)
            except sqlalchemy.exc.SQLAlchemyError as exc:
                logger.warning("cannot renew %d leases: %s", len(held), reason(exc))
                continue
            for key, scope in held.items():
                if key in renewed:
                    scope.deadline = max(scope.deadline, sent + self.settings.budget)
                elif key in self._held:
                    logger.warning("submission %d: its lease was taken over; stopping it", key[0])
                    scope.cancel()

    async def _recover_forever(self) -> NoReturn:
        interval = max(0.1, min(self.settings.lease / 2, 30.0))
        while True:
            try:
                recovered = await self.store.recover_expired(self.settings.max_attempts)
            except sqlalchemy.exc.SQLAlchemyError as exc:
                logger.warning("cannot recover expired leases: %s", reason(exc))
            else:
                if recovered.requeued:
                    logger.warning(
                        "queued %d submissions again whose worker stopped holding them: %s",
                        len(recovered.requeued),
                        _ids(recovered.requeued),
                    )
                    self._wake.set()
                if recovered.abandoned:
                    logger.error(
                        "gave up %d submissions after %d starts each: %s",
                        len(recovered.abandoned),
                        self.settings.max_attempts,
                        _ids(recovered.abandoned),
                    )
                    for submission in recovered.abandoned:
                        self.on_done(submission)
            await trio.sleep(interval)


def _ids(ids: tuple[int, ...]) -> str:
    shown = ", ".join(map(str, ids[:20]))
    return shown + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")
