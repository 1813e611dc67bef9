"""A submission as the JSON its token holder reads (``GET``) and its callback receives."""

from __future__ import annotations

import datetime
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pistond.submissions.records import Submission


def timestamp(seconds: float | None) -> str | None:
    """An ISO 8601 UTC time with milliseconds (``2025-01-31T12:00:00.123Z``), or None."""
    if seconds is None:
        return None
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def submission_json(submission: Submission) -> dict[str, Any]:
    """The submission's public fields: token, state, times, result or error, callback."""
    error = submission.error
    callback = submission.callback
    return {
        "token": submission.token,
        "state": submission.state.value,
        "created_at": timestamp(submission.created_at),
        "started_at": timestamp(submission.started_at),
        "finished_at": timestamp(submission.finished_at),
        "result": None if submission.result is None else json.loads(submission.result),
        "error": None if error is None else {"status": error.status, "message": error.message},
        "truncated": submission.truncated,
        "callback": None
        if callback is None
        else {
            "url": callback.url,
            "state": callback.state.value,
            "attempts": callback.attempts,
            "error": callback.error,
        },
    }
