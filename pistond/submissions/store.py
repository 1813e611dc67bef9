"""Every query of the submission queue, each one atomic statement (or one short transaction).

The queue's rules live here:

- a worker **claims** queued submissions with one ``UPDATE ... WHERE id IN (SELECT ... FOR
  UPDATE SKIP LOCKED)``: on PostgreSQL concurrent claimers skip each other's rows instead of
  waiting, on SQLite the single writer serialises them; each claim gets its own lease id;
- the holder **renews** its leases while the job runs; a lease that ran out (its machine
  died) is **recovered**: queued again, or given up after ``max_attempts`` starts;
- only the holder of a submission's current lease may **complete** or **release** it, so a
  worker whose lease was recovered meanwhile cannot store a second result: a submission runs
  to completion once;
- callbacks are claimed the same way: their due time doubles as their lease.

Times come from the database's clock (:class:`~pistond.submissions.schema.db_now`). Methods
are synchronous, run in a worker thread by their async twins on :class:`SubmissionStore`.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any, Final

import attrs
from sqlalchemy import and_, case, delete, func, insert, literal, or_, select, update

from pistond.submissions.records import (
    Callback,
    CallbackClaim,
    CallbackState,
    Claim,
    Failure,
    NewSubmission,
    Recovered,
    State,
    Submission,
)
from pistond.submissions.schema import db_now, submissions
from pistond.submissions.tokens import new_token

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

    from pistond.submissions.database import Database
    from pistond.submissions.records import Outcome

ABANDONED: Final = (
    "the submission was given up after {attempts} starts: the workers running it stopped "
    "before it finished"
)
_SHOWN: Final = (
    submissions.c.id,
    submissions.c.token,
    submissions.c.state,
    submissions.c.created_at,
    submissions.c.started_at,
    submissions.c.finished_at,
    submissions.c.result,
    submissions.c.error_status,
    submissions.c.error_message,
    submissions.c.truncated,
    submissions.c.callback_url,
    submissions.c.callback_state,
    submissions.c.callback_attempts,
    submissions.c.callback_error,
    submissions.c.owner,
)
"""What a token holder may see (the request is not among it), and who may see it."""


class QueueFull(Exception):
    """Raised by :meth:`SubmissionStore.create` when the pending cap would be exceeded."""


def _lease_id() -> str:
    return secrets.token_hex(16)


def _submission(row: Any) -> Submission:
    # Any: a result row, whose generic type differs between SQLAlchemy 2.0 and 2.1.
    callback = None
    if row.callback_url is not None:
        callback = Callback(
            url=row.callback_url,
            state=CallbackState(row.callback_state),
            attempts=row.callback_attempts,
            error=row.callback_error,
        )
    error = None
    if row.error_status is not None:
        error = Failure(status=row.error_status, message=row.error_message or "")
    return Submission(
        id=row.id,
        token=row.token,
        state=State(row.state),
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        result=row.result,
        error=error,
        truncated=bool(row.truncated),
        callback=callback,
        owner=row.owner,
    )


def _finished(now: Any) -> dict[str, Any]:
    """The columns every transition to ``done`` sets: the lease and the request let go, the
    callback (if any) due at once."""
    return {
        "state": State.DONE.value,
        "finished_at": now,
        "params": None,
        "lease": None,
        "lease_owner": None,
        "lease_expires": None,
        "callback_due_at": case((submissions.c.callback_url.is_not(None), now), else_=None),
    }


@attrs.define(eq=False)
class SubmissionStore:
    """The queue and the results, in one database; async methods run their query in a thread.

    Args:
        database: the opened database.
    """

    database: Database

    # -- accepting and reading -----------------------------------------------------------

    async def create(self, new: Sequence[NewSubmission], *, max_pending: int) -> list[Submission]:
        """Store ``new`` submissions, queued, all or none.

        Raises:
            QueueFull: more than ``max_pending`` (0: no cap) would be queued or running.
        """
        return await self.database.run(self.create_sync, new, max_pending)

    def create_sync(self, new: Sequence[NewSubmission], max_pending: int) -> list[Submission]:
        """:meth:`create`, in the calling thread."""
        rows: list[dict[str, Any]] = [
            {
                "token": new_token(),
                "state": State.QUEUED.value,
                "params": item.params,
                "attempts": 0,
                "truncated": False,
                "callback_url": item.callback_url,
                "callback_state": (
                    None if item.callback_url is None else CallbackState.PENDING.value
                ),
                "callback_attempts": 0,
                "owner": item.owner,
            }
            for item in new
        ]
        with self.database.writing() as connection:
            if max_pending:
                pending = connection.execute(
                    select(func.count()).where(submissions.c.state != State.DONE.value)
                ).scalar_one()
                if pending + len(rows) > max_pending:
                    raise QueueFull(f"{pending} submissions are waiting already")
            now = connection.execute(select(db_now())).scalar_one()
            for row in rows:
                row.update(created_at=now, available_at=now)
            created = connection.execute(insert(submissions).returning(*_SHOWN), rows).all()
        by_token = {row.token: _submission(row) for row in created}
        return [by_token[row["token"]] for row in rows]

    async def get(self, token: str) -> Submission | None:
        """The submission of ``token``, or None."""
        found = await self.get_many([token])
        return found[0]

    async def get_many(self, tokens: Sequence[str]) -> list[Submission | None]:
        """The submissions of ``tokens``, in their order, None where there is none."""
        return await self.database.run(self.get_many_sync, tokens)

    def get_many_sync(self, tokens: Sequence[str]) -> list[Submission | None]:
        """:meth:`get_many`, in the calling thread."""
        if not tokens:
            return []
        with self.database.reading() as connection:
            rows = connection.execute(
                select(*_SHOWN).where(submissions.c.token.in_(set(tokens)))
            ).all()
        by_token = {row.token: _submission(row) for row in rows}
        return [by_token.get(token) for token in tokens]

    async def counts(self) -> dict[State, int]:
        """How many submissions are in each state."""
        return await self.database.run(self.counts_sync)

    def counts_sync(self) -> dict[State, int]:
        """:meth:`counts`, in the calling thread."""
        with self.database.reading() as connection:
            rows = connection.execute(
                select(submissions.c.state, func.count()).group_by(submissions.c.state)
            ).all()
        counts = dict.fromkeys(State, 0)
        counts.update({State(state): count for state, count in rows})
        return counts

    # -- the queue ---------------------------------------------------------------------------

    async def claim(self, owner: str, limit: int, lease_seconds: float) -> list[Claim]:
        """Take up to ``limit`` queued submissions, oldest first, under one new lease.

        Args:
            owner: the claiming worker's name (kept for operators: host and process).
            limit: most submissions to take.
            lease_seconds: how long the lease lasts unless renewed.
        """
        return await self.database.run(self.claim_sync, owner, limit, lease_seconds)

    def claim_sync(self, owner: str, limit: int, lease_seconds: float) -> list[Claim]:
        """:meth:`claim`, in the calling thread."""
        lease = _lease_id()
        now = db_now()
        due = (
            select(submissions.c.id)
            .where(submissions.c.state == State.QUEUED.value, submissions.c.available_at <= now)
            .order_by(submissions.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self.database.writing() as connection:
            rows = connection.execute(
                update(submissions)
                .where(submissions.c.id.in_(due.scalar_subquery()))
                .values(
                    state=State.RUNNING.value,
                    lease=lease,
                    lease_owner=owner,
                    lease_expires=now + lease_seconds,
                    started_at=now,
                    attempts=submissions.c.attempts + 1,
                )
                .returning(submissions.c.id, submissions.c.params)
            ).all()
        return sorted(
            (Claim(id=row.id, lease=lease, params=row.params) for row in rows),
            key=lambda claim: claim.id,
        )

    async def renew(self, leases: Collection[str], lease_seconds: float) -> set[tuple[int, str]]:
        """Extend the leases ``leases`` by ``lease_seconds`` from now.

        Returns:
            The (submission, lease) pairs renewed: a lease missing from them was recovered by
            another worker, and its holder must stop.
        """
        return await self.database.run(self.renew_sync, leases, lease_seconds)

    def renew_sync(self, leases: Collection[str], lease_seconds: float) -> set[tuple[int, str]]:
        """:meth:`renew`, in the calling thread."""
        if not leases:
            return set()
        with self.database.writing() as connection:
            rows = connection.execute(
                update(submissions)
                .where(
                    submissions.c.lease.in_(set(leases)),
                    submissions.c.state == State.RUNNING.value,
                )
                .values(lease_expires=db_now() + lease_seconds)
                .returning(submissions.c.id, submissions.c.lease)
            ).all()
        return {(row.id, row.lease) for row in rows}

    async def complete(self, claim: Claim, outcome: Outcome) -> bool:
        """Store the outcome of a claimed submission; False if the lease is no longer held."""
        return await self.database.run(self.complete_sync, claim, outcome)

    def complete_sync(self, claim: Claim, outcome: Outcome) -> bool:
        """:meth:`complete`, in the calling thread."""
        error = outcome.error
        with self.database.writing() as connection:
            done = connection.execute(
                update(submissions)
                .where(
                    submissions.c.id == claim.id,
                    submissions.c.lease == claim.lease,
                    submissions.c.state == State.RUNNING.value,
                )
                .values(
                    result=outcome.result,
                    error_status=None if error is None else error.status,
                    error_message=None if error is None else error.message,
                    truncated=outcome.truncated,
                    **_finished(db_now()),
                )
            )
        return done.rowcount == 1

    async def release(self, claim: Claim, delay_seconds: float) -> bool:
        """Queue a claimed submission again, runnable after ``delay_seconds``; the start does
        not count towards its attempts. False if the lease is no longer held."""
        return await self.database.run(self.release_sync, claim, delay_seconds)

    def release_sync(self, claim: Claim, delay_seconds: float) -> bool:
        """:meth:`release`, in the calling thread."""
        with self.database.writing() as connection:
            done = connection.execute(
                update(submissions)
                .where(
                    submissions.c.id == claim.id,
                    submissions.c.lease == claim.lease,
                    submissions.c.state == State.RUNNING.value,
                )
                .values(
                    state=State.QUEUED.value,
                    lease=None,
                    lease_owner=None,
                    lease_expires=None,
                    attempts=submissions.c.attempts - 1,
                    available_at=db_now() + delay_seconds,
                )
            )
        return done.rowcount == 1

    async def recover_expired(self, max_attempts: int) -> Recovered:
        """Queue again the running submissions whose lease ran out; give up those started
        ``max_attempts`` times already (done, with an error)."""
        return await self.database.run(self.recover_expired_sync, max_attempts)

    def recover_expired_sync(self, max_attempts: int) -> Recovered:
        """:meth:`recover_expired`, in the calling thread."""
        now = db_now()
        expired = and_(
            submissions.c.state == State.RUNNING.value, submissions.c.lease_expires < now
        )
        with self.database.writing() as connection:
            abandoned = connection.execute(
                update(submissions)
                .where(expired, submissions.c.attempts >= max_attempts)
                .values(
                    error_status=500,
                    error_message=ABANDONED.format(attempts=max_attempts),
                    **_finished(now),
                )
                .returning(submissions.c.id)
            ).all()
            requeued = connection.execute(
                update(submissions)
                .where(expired)
                .values(
                    state=State.QUEUED.value,
                    lease=None,
                    lease_owner=None,
                    lease_expires=None,
                    available_at=now,
                )
                .returning(submissions.c.id)
            ).all()
        return Recovered(
            requeued=tuple(sorted(row.id for row in requeued)),
            abandoned=tuple(sorted(row.id for row in abandoned)),
        )

    # -- callbacks ---------------------------------------------------------------------------

    async def claim_callbacks(self, limit: int, lease_seconds: float) -> list[CallbackClaim]:
        """Take up to ``limit`` callbacks that are due, each for one attempt of at most
        ``lease_seconds`` (after which it is due again)."""
        return await self.database.run(self.claim_callbacks_sync, limit, lease_seconds)

    def claim_callbacks_sync(self, limit: int, lease_seconds: float) -> list[CallbackClaim]:
        """:meth:`claim_callbacks`, in the calling thread."""
        lease = _lease_id()
        now = db_now()
        due = (
            select(submissions.c.id)
            .where(
                submissions.c.callback_state == CallbackState.PENDING.value,
                submissions.c.callback_due_at <= now,
            )
            .order_by(submissions.c.callback_due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self.database.writing() as connection:
            rows = connection.execute(
                update(submissions)
                .where(submissions.c.id.in_(due.scalar_subquery()))
                .values(
                    callback_lease=lease,
                    callback_due_at=now + lease_seconds,
                    callback_attempts=submissions.c.callback_attempts + 1,
                )
                .returning(*_SHOWN)
            ).all()
        return [
            CallbackClaim(
                id=row.id,
                lease=lease,
                url=row.callback_url,
                attempt=row.callback_attempts,
                submission=_submission(row),
            )
            for row in sorted(rows, key=lambda row: row.id)
        ]

    async def finish_callback(
        self, claim: CallbackClaim, state: CallbackState, error: str | None = None
    ) -> bool:
        """Record a callback's final state; False if its lease ran out meanwhile."""
        return await self.database.run(self.finish_callback_sync, claim, state, error)

    def finish_callback_sync(
        self, claim: CallbackClaim, state: CallbackState, error: str | None = None
    ) -> bool:
        """:meth:`finish_callback`, in the calling thread."""
        with self.database.writing() as connection:
            done = connection.execute(
                update(submissions)
                .where(submissions.c.id == claim.id, submissions.c.callback_lease == claim.lease)
                .values(
                    callback_state=state.value,
                    callback_due_at=None,
                    callback_lease=None,
                    callback_error=error,
                )
            )
        return done.rowcount == 1

    async def retry_callback(self, claim: CallbackClaim, delay_seconds: float, error: str) -> bool:
        """Make a callback due again in ``delay_seconds``; False if its lease ran out."""
        return await self.database.run(self.retry_callback_sync, claim, delay_seconds, error)

    def retry_callback_sync(self, claim: CallbackClaim, delay_seconds: float, error: str) -> bool:
        """:meth:`retry_callback`, in the calling thread."""
        with self.database.writing() as connection:
            done = connection.execute(
                update(submissions)
                .where(submissions.c.id == claim.id, submissions.c.callback_lease == claim.lease)
                .values(
                    callback_due_at=db_now() + delay_seconds,
                    callback_lease=None,
                    callback_error=error,
                )
            )
        return done.rowcount == 1

    # -- retention ---------------------------------------------------------------------------

    async def purge(self, ttl_seconds: float) -> int:
        """Delete submissions finished more than ``ttl_seconds`` ago whose callback is not
        pending; how many."""
        return await self.database.run(self.purge_sync, ttl_seconds)

    def purge_sync(self, ttl_seconds: float) -> int:
        """:meth:`purge`, in the calling thread."""
        with self.database.writing() as connection:
            done = connection.execute(
                delete(submissions).where(
                    submissions.c.state == State.DONE.value,
                    submissions.c.finished_at < db_now() - literal(ttl_seconds),
                    or_(
                        submissions.c.callback_state.is_(None),
                        submissions.c.callback_state != CallbackState.PENDING.value,
                    ),
                )
            )
        return done.rowcount
