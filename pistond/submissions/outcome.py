"""A daemon's answer as a submission's stored outcome: Piston's JSON, its output size-capped.

The result stored is exactly what ``POST /api/v2/execute`` would have answered. Its output is
already capped per stream by the job's own ``output_max_size``; beyond that, the outputs of
all stages together (``stdout``, ``stderr`` and ``output`` of every stage object, tests
included) may take ``PISTON_SUBMISSION_MAX_RESULT_SIZE`` bytes. Over it, each stream keeps its
prefix, as the job's caps keep theirs: streams within a fair share stay whole, the others are
cut to what is left shared evenly, at a UTF-8 character boundary. Such a submission is marked
``truncated``; the stage's ``status`` stays what the program did.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from pistond.gateway import v2
from pistond.submissions.judging import add_test_results
from pistond.submissions.records import Failure, Outcome

if TYPE_CHECKING:
    from pistond.gateway.errors import HttpError
    from pistond.models import JobResult

STREAMS: Final = ("stdout", "stderr", "output")


def _streams(value: Any) -> list[tuple[dict[str, Any], str]]:
    """Every (stage object, stream key) in a Piston answer, depth first."""
    found: list[tuple[dict[str, Any], str]] = []
    if isinstance(value, dict):
        if all(isinstance(value.get(key), str) for key in STREAMS):
            found += [(value, key) for key in STREAMS]
        for item in value.values():
            found += _streams(item)
    elif isinstance(value, list):
        for item in value:
            found += _streams(item)
    return found


def _shares(sizes: list[int], budget: int) -> list[int]:
    """Bytes each stream may keep: the small ones whole, the rest an even share of the rest."""
    shares = list(sizes)
    left = budget
    pending = sorted(range(len(sizes)), key=lambda index: sizes[index])
    while pending:
        share = left // len(pending)
        index = pending[0]
        if sizes[index] > share:
            for rest in pending:
                shares[rest] = share
            return shares
        left -= sizes[index]
        pending.pop(0)
    return shares


def _prefix(text: str, size: int) -> str:
    """The longest prefix of ``text`` that takes at most ``size`` bytes in UTF-8."""
    return text.encode("utf-8", "surrogatepass")[:size].decode("utf-8", "ignore")


def cap_output(answer: dict[str, Any], max_size: int) -> bool:
    """Cut the streams of ``answer`` in place to ``max_size`` bytes in all; whether it cut."""
    streams = _streams(answer)
    sizes = [len(stage[key].encode("utf-8", "surrogatepass")) for stage, key in streams]
    if sum(sizes) <= max_size:
        return False
    for (stage, key), size, share in zip(streams, sizes, _shares(sizes, max_size), strict=True):
        if size > share:
            stage[key] = _prefix(stage[key], share)
    return True


def result_outcome(result: JobResult, max_size: int) -> Outcome:
    """The outcome of a job that ran: Piston's answer, capped to ``max_size`` output bytes."""
    answer = v2.job_result(result)
    add_test_results(answer, result)
    truncated = cap_output(answer, max_size)
    return Outcome(
        result=json.dumps(answer, ensure_ascii=False, separators=(",", ":")), truncated=truncated
    )


def error_outcome(error: HttpError) -> Outcome:
    """The outcome of a job the daemon refused (bad params, unknown runtime, internal error)."""
    return Outcome(result=None, error=Failure(status=error.status, message=error.message))
