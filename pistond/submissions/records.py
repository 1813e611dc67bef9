"""The records the submission store hands out, and the states a submission goes through.

A submission is ``queued``, then ``running`` while a worker holds its lease, then ``done``
(with a result, or an error when the daemon refused the job). Its callback, when it has one,
is ``pending`` until it was ``delivered``, ``failed`` (every attempt, or an answer that retrying
cannot change) or ``refused`` (its address is not allowed).
"""

from __future__ import annotations

import enum

import attrs


class State(enum.StrEnum):
    """Where a submission is."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"


class CallbackState(enum.StrEnum):
    """Where a submission's callback is."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    REFUSED = "refused"


@attrs.frozen
class NewSubmission:
    """A submission to store."""

    params: bytes
    """The ``execute`` params, msgpack-encoded (files may be bytes)."""
    callback_url: str | None = None
    owner: str | None = None
    """The id of the API key that made it; None where keys are off."""


@attrs.frozen
class Failure:
    """Why a submission has no result: the daemon's refusal, as an HTTP status and message."""

    status: int
    message: str


@attrs.frozen
class Outcome:
    """What running a submission produced, ready to store."""

    result: str | None
    """The Piston execute answer as JSON text, or None with ``error``."""
    error: Failure | None = None
    truncated: bool = False
    """Some output was cut to fit ``PISTON_SUBMISSION_MAX_RESULT_SIZE``."""


@attrs.frozen
class Callback:
    """A submission's callback and how its delivery went."""

    url: str
    state: CallbackState
    attempts: int
    """Deliveries tried so far."""
    error: str | None = None
    """Why the last attempt did not deliver (``HTTP 503``, ``connection refused``, ...)."""


@attrs.frozen
class Submission:
    """A stored submission, as a token holder may see it."""

    id: int
    """The database's number for it: what log lines name (never the token)."""
    token: str
    state: State
    created_at: float
    """Seconds since the epoch (the database's clock), as are the other times."""
    started_at: float | None
    finished_at: float | None
    result: str | None
    """The Piston execute answer as JSON text, once done (None with ``error``)."""
    error: Failure | None
    truncated: bool
    callback: Callback | None
    owner: str | None = None
    """The id of the API key that made it: only that key may read it (None: any caller)."""

    def readable_by(self, key_id: str | None) -> bool:
        """Whether a caller presenting the key ``key_id`` (None: no key) may read it."""
        return self.owner is None or self.owner == key_id


@attrs.frozen
class Claim:
    """A submission a worker holds the lease of, with what it needs to run it."""

    id: int
    lease: str
    """The claim's own id: only the holder of this lease may complete or release it."""
    params: bytes


@attrs.frozen
class CallbackClaim:
    """A callback due for delivery, held by one sender until its lease runs out."""

    id: int
    lease: str
    url: str
    attempt: int
    """Which attempt this is, from 1."""
    submission: Submission
    """What the callback carries."""


@attrs.frozen
class Recovered:
    """What :meth:`~pistond.submissions.store.SubmissionStore.recover_expired` did."""

    requeued: tuple[int, ...] = ()
    """Submissions whose lease ran out, queued again."""
    abandoned: tuple[int, ...] = ()
    """Submissions whose lease ran out once too often: done, with an error."""
