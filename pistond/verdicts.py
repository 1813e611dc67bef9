"""Verdicts of tests: a run's stdout against the test's ``expected_output``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pistond.models import Comparison, Verdict

if TYPE_CHECKING:
    from pistond.models import StageResult, TestCase


def normalised(text: str, comparison: Comparison) -> str:
    """``text`` as ``comparison`` compares it.

    ``exact`` keeps it as it is; ``trailing_whitespace`` strips whitespace at the end of every
    line (``\\r`` included) and drops empty lines at the end.
    """
    if comparison is Comparison.EXACT:
        return text
    return "\n".join(line.rstrip() for line in text.split("\n")).rstrip("\n")


def judge(test: TestCase, run: StageResult, comparison: Comparison) -> Verdict | None:
    """``accepted`` or ``wrong_answer`` for a run that exited 0 of a test with an
    ``expected_output``; None otherwise (no expectation, or the run's status says it all)."""
    if test.expected_output is None or run.status is not None or run.code != 0:
        return None
    same = normalised(run.stdout, comparison) == normalised(test.expected_output, comparison)
    return Verdict.ACCEPTED if same else Verdict.WRONG_ANSWER
