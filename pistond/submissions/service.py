"""The submission service of one gateway: the database, the workers, callbacks and retention.

:meth:`SubmissionService.serve` runs beside the HTTP server. It reports ready at once, so the
gateway serves Piston's API even while the database is out of reach; the submission routes
answer 503 until it is open. Opening (and migrating) is retried with a growing pause, because a
PostgreSQL server that starts after the gateway is no configuration error. Once open it runs:

- the :class:`~pistond.submissions.runner.Runner` (unless ``PISTON_SUBMISSION_WORKERS=0``:
  a gateway that only accepts submissions for other machines to run);
- the :class:`~pistond.submissions.callbacks.CallbackSender`;
- retention: finished submissions older than ``PISTON_SUBMISSION_TTL`` are deleted.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final, NoReturn

import attrs
import sqlalchemy.exc
import trio

from pistond.gateway.errors import HttpError, unavailable
from pistond.submissions.addresses import CallbackPolicy
from pistond.submissions.callbacks import CallbackSender
from pistond.submissions.database import (
    DatabaseError,
    database_url,
    describe,
    open_database,
    reason,
)
from pistond.submissions.records import State
from pistond.submissions.runner import Runner, RunnerSettings
from pistond.submissions.store import SubmissionStore

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from pistond.config import DaemonConfig
    from pistond.gateway.daemon_socket import DaemonSocket
    from pistond.submissions.database import Database
    from pistond.submissions.records import Submission

logger = logging.getLogger(__name__)

UNAVAILABLE: Final = "the submission database is unavailable, try again later"
OPEN_BACKOFF: Final = (1.0, 60.0)
"""First and longest pause between attempts to open the database."""
OPEN_WAIT: Final = 10.0
"""Seconds a first submission waits for the database to open."""
PURGE_EVERY: Final = 60.0
"""Longest pause between two retention passes."""


@attrs.frozen
class SubmissionSettings:
    """Everything the submission service takes from the configuration."""

    url: URL
    """The database (password included: never log it, see :func:`describe`)."""
    configured: bool
    """The URL was configured (``PISTON_DATABASE_URL``), not the default SQLite file."""
    runner: RunnerSettings = attrs.field(factory=RunnerSettings)
    ttl: float = 86_400.0
    """Seconds a finished submission is kept."""
    max_wait: float = 30.0
    """Seconds ``?wait=true`` may wait."""
    max_batch: int = 100
    max_pending: int = 10_000
    callback_allow: tuple[str, ...] = ("public",)
    callback_attempts: int = 5
    callback_timeout: float = 10.0

    @classmethod
    def from_config(cls, config: DaemonConfig) -> SubmissionSettings:
        """The settings of ``config``'s ``PISTON_SUBMISSION_*``, database and callback values."""
        return cls(
            url=database_url(config.database_url, config.gateway_data_directory),
            configured=bool(config.database_url),
            runner=RunnerSettings(
                workers=config.submission_workers,
                lease=config.submission_lease / 1000,
                poll_interval=config.submission_poll_interval / 1000,
                max_attempts=config.submission_max_attempts,
                max_result_size=config.submission_max_result_size,
            ),
            ttl=float(config.submission_ttl),
            max_wait=config.submission_max_wait / 1000,
            max_batch=config.submission_max_batch,
            max_pending=config.submission_max_pending,
            callback_allow=config.callback_allow,
            callback_attempts=config.callback_attempts,
            callback_timeout=config.callback_timeout / 1000,
        )


@attrs.define(eq=False)
class _Waiting:
    """Requests waiting for one submission (``?wait=true``)."""

    finished: trio.Event = attrs.field(factory=trio.Event)
    count: int = 0


@attrs.define(eq=False)
class SubmissionService:
    """The submission machinery of one gateway process.

    Args:
        settings: database, workers, limits and callback policy.
        daemon: the daemon's socket, which the workers call.
        policy: where callbacks may go; built from the settings by default.
    """

    settings: SubmissionSettings
    daemon: DaemonSocket
    policy: CallbackPolicy = attrs.field(
        default=attrs.Factory(
            lambda self: CallbackPolicy.from_entries(self.settings.callback_allow), takes_self=True
        )
    )
    database: Database | None = attrs.field(init=False, default=None)
    runner: Runner | None = attrs.field(init=False, default=None)
    sender: CallbackSender | None = attrs.field(init=False, default=None)
    _store: SubmissionStore | None = attrs.field(init=False, default=None)
    _waiting: dict[int, _Waiting] = attrs.field(init=False, factory=dict)
    _stopping: bool = attrs.field(init=False, default=False)
    _wanted: trio.Event = attrs.field(init=False, factory=trio.Event)
    _opened: trio.Event = attrs.field(init=False, factory=trio.Event)
    _deferred: bool = attrs.field(init=False, default=False)
    _open_failed: bool = attrs.field(init=False, default=False)

    @property
    def store(self) -> SubmissionStore:
        """The open store.

        Raises:
            HttpError: 503 while the database is not open.
        """
        if self._store is None:
            raise unavailable(UNAVAILABLE)
        return self._store

    async def writable_store(self) -> SubmissionStore:
        """The store, once open: the default SQLite database is created by the first
        submission a gateway takes (a gateway that never takes one writes nothing).

        Raises:
            HttpError: 503 when the database does not open within :data:`OPEN_WAIT`, or at
                once when opening it failed already (it is being retried).
        """
        if self._store is None and not self._open_failed:
            self._wanted.set()
            with trio.move_on_after(OPEN_WAIT):
                await self._opened.wait()
        return self.store

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the database, then run workers, callbacks and retention until cancelled or
        drained. A default SQLite database that does not exist yet is opened (created) when
        the first submission arrives."""
        task_status.started()
        path = self.settings.url.database
        if not self.settings.configured and path and not await trio.Path(path).exists():
            self._deferred = True
            await self._wanted.wait()
            self._deferred = False
        database = await self._open()
        self.database = database
        try:
            store = SubmissionStore(database)
            self._store = store
            self._opened.set()
            self.sender = CallbackSender(
                store,
                self.policy,
                attempts=self.settings.callback_attempts,
                timeout=self.settings.callback_timeout,
                poll_interval=self.settings.runner.poll_interval,
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.sender.serve)
                nursery.start_soon(self._purge_forever, store)
                if self.settings.runner.workers and not self._stopping:
                    self.runner = Runner(store, self.daemon, self.settings.runner, self.finished)
                    await self.runner.serve()
                    nursery.cancel_scope.cancel()
        finally:
            self._store = None
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(database.close)

    async def drain(self, grace: float) -> None:
        """Stop taking submissions from the queue; running ones get ``grace`` seconds, then
        go back to the queue. Accepting and reading stay possible until the process ends."""
        self._stopping = True
        if self.runner is not None:
            await self.runner.drain(grace)

    async def _open(self) -> Database:
        pause, longest = OPEN_BACKOFF
        while True:
            try:
                database = await trio.to_thread.run_sync(
                    open_database, self.settings.url, abandon_on_cancel=True
                )
            except DatabaseError as exc:
                self._open_failed = True
                level = logging.ERROR if self.settings.configured else logging.WARNING
                logger.log(
                    level, "submissions unavailable: %s (trying again in %.0f s)", exc, pause
                )
                await trio.sleep(pause)
                pause = min(pause * 2, longest)
                continue
            logger.info("submissions stored in %s", describe(self.settings.url))
            self._open_failed = False
            return database

    async def _purge_forever(self, store: SubmissionStore) -> NoReturn:
        interval = max(0.5, min(PURGE_EVERY, self.settings.ttl / 4))
        while True:
            try:
                purged = await store.purge(self.settings.ttl)
            except sqlalchemy.exc.SQLAlchemyError as exc:
                logger.warning("cannot delete expired submissions: %s", reason(exc))
            else:
                if purged:
                    logger.info("deleted %d submissions older than the retention time", purged)
            await trio.sleep(interval)

    # -- between the routes and the workers --------------------------------------------------

    def submitted(self) -> None:
        """New submissions are queued: let this gateway's workers look now."""
        if self.runner is not None:
            self.runner.wake_nowait()

    def finished(self, submission: int) -> None:
        """A submission is done: wake its waiters and the callback sender."""
        waiting = self._waiting.get(submission)
        if waiting is not None:
            waiting.finished.set()
        if self.sender is not None:
            self.sender.wake_nowait()

    async def wait_done(self, submission: Submission) -> Submission:
        """``submission`` as it is once done (bound the wait with a cancel scope).

        A submission finished by this gateway wakes its waiters at once; one finished on
        another machine is seen at the next poll.

        Raises:
            HttpError: 503 when the database cannot be read.
        """
        waiting = self._waiting.setdefault(submission.id, _Waiting())
        waiting.count += 1
        try:
            while submission.state is not State.DONE:
                with trio.move_on_after(self.settings.runner.poll_interval):
                    await waiting.finished.wait()
                submission = await self.read(submission.token) or submission
        finally:
            waiting.count -= 1
            if not waiting.count:
                del self._waiting[submission.id]
        return submission

    async def read(self, token: str) -> Submission | None:
        """The submission of ``token``.

        Raises:
            HttpError: 503 when the database cannot be read.
        """
        found = await self.read_many([token])
        return found[0]

    async def read_many(self, tokens: list[str]) -> list[Submission | None]:
        """The submissions of ``tokens``, None where there is none.

        Raises:
            HttpError: 503 when the database cannot be read.
        """
        if self._deferred:
            return [None] * len(tokens)  # no database yet: nothing was ever submitted here
        try:
            return await self.store.get_many(tokens)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            raise database_unavailable(exc) from None


def database_unavailable(error: sqlalchemy.exc.SQLAlchemyError) -> HttpError:
    """The 503 answer to a database error, which is logged (without SQL or parameters)."""
    logger.warning("submission database error: %s", reason(error))
    return unavailable(UNAVAILABLE)
