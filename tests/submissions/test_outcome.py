"""pistond.submissions.outcome: Piston's answer as stored, output capped per stream prefix."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pistond.gateway.errors import HttpError
from pistond.models import JobResult, StageResult, StageStatus, TestResult, Verdict
from pistond.submissions.outcome import cap_output, error_outcome, result_outcome
from pistond.submissions.records import Failure


def _stage(stdout: str, stderr: str = "") -> StageResult:
    return StageResult(
        stdout=stdout,
        stderr=stderr,
        output=stdout + stderr,
        code=0,
        signal=None,
        status=None,
        message=None,
        cpu_time=1,
        wall_time=2,
        memory=3,
    )


def test_outcome_is_the_execute_answer() -> None:
    """The stored result is exactly Piston's /execute JSON (run mirrors a failed compile)."""
    failed = StageResult(
        stdout="",
        stderr="error\n",
        output="error\n",
        code=1,
        signal=None,
        status=StageStatus.RUNTIME_ERROR,
        message="Exited with error status 1",
        cpu_time=1,
        wall_time=2,
        memory=3,
    )
    result = JobResult(language="c", version="12.2.0", compile=failed, run=None)
    outcome = result_outcome(result, 1024)
    answer = json.loads(outcome.result or "")
    assert list(answer) == ["compile", "run", "language", "version"]
    assert answer["run"] == answer["compile"]
    assert answer["run"]["status"] == "RE"
    assert not outcome.truncated


def test_outcome_caps_streams_keeping_prefixes() -> None:
    """Over the cap, small streams stay whole and the big ones share the rest, prefix kept."""
    result = JobResult(language="python", version="3", compile=None, run=_stage("a" * 1000, "e"))
    outcome = result_outcome(result, 300)
    run = json.loads(outcome.result or "")["run"]
    assert outcome.truncated
    assert run["stderr"] == "e"
    assert run["stdout"] == "a" * 149
    assert run["output"] == "a" * 149
    assert sum(len(run[key].encode()) for key in ("stdout", "stderr", "output")) <= 300


def test_outcome_cuts_at_character_boundaries() -> None:
    """A cut never splits a UTF-8 character."""
    answer: dict[str, Any] = {"run": {"stdout": "é" * 10, "stderr": "", "output": ""}}
    assert cap_output(answer, 5)
    assert answer["run"]["stdout"] == "éé"


def test_outcome_reaches_nested_stage_objects() -> None:
    """Every stage object counts, wherever it is in the answer (per-test results too)."""
    answer: dict[str, Any] = {
        "run": {"stdout": "x" * 10, "stderr": "", "output": "x" * 10},
        "tests": [{"run": {"stdout": "y" * 10, "stderr": "", "output": "y" * 10}}],
    }
    assert cap_output(answer, 20)
    assert answer["tests"][0]["run"]["stdout"] == "y" * 5
    assert answer["run"]["stdout"] == "x" * 5


@given(st.lists(st.text(max_size=50), min_size=3, max_size=9), st.integers(0, 200))
def test_outcome_cap_is_never_exceeded(texts: list[str], cap: int) -> None:
    """After capping, the streams take at most the cap, and each is a prefix of what it was."""
    texts = texts[: len(texts) // 3 * 3]
    stages = [
        {"stdout": texts[i], "stderr": texts[i + 1], "output": texts[i + 2]}
        for i in range(0, len(texts), 3)
    ]
    before = json.loads(json.dumps(stages))
    size = sum(len(text.encode("utf-8", "surrogatepass")) for text in texts)
    assert cap_output({"stages": stages}, cap) == (size > cap)
    total = sum(
        len(stage[key].encode("utf-8", "surrogatepass")) for stage in stages for key in stage
    )
    assert total == size if size <= cap else total <= cap
    for old, new in zip(before, stages, strict=True):
        for key in old:
            assert old[key].startswith(new[key])


def test_outcome_error_keeps_status_and_message() -> None:
    """A daemon refusal is stored as its HTTP status and message, with no result."""
    outcome = error_outcome(HttpError(400, "nope-* runtime is unknown"))
    assert outcome.result is None
    assert outcome.error == Failure(400, "nope-* runtime is unknown")


def test_outcome_carries_test_results_with_verdicts() -> None:
    """Per-test results are stored in Piston's stage shape, with their verdicts."""
    result = JobResult(
        language="c",
        version="12",
        compile=_stage(""),
        run=None,
        tests=(
            TestResult(name="one", run=_stage("1\n"), verdict=Verdict.ACCEPTED),
            TestResult(name=None, run=_stage("2\n"), verdict=Verdict.WRONG_ANSWER),
        ),
    )
    answer = json.loads(result_outcome(result, 1024).result or "")
    assert [(test["name"], test["verdict"]) for test in answer["tests"]] == [
        ("one", "accepted"),
        (None, "wrong_answer"),
    ]
    assert answer["tests"][0]["run"]["stdout"] == "1\n"
    assert list(answer) == ["compile", "language", "version", "tests"]
