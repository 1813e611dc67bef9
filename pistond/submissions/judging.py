"""Tests against one compile, in the submissions' JSON: ``tests`` and ``compare`` in, verdicts out.

A submission body may carry pistond's ``tests`` (PROTOCOL.md, "Tests"): ``[{"stdin"?, "args"?,
"expected_output"?, "name"?}]``, with ``compare`` (``exact`` or ``trailing_whitespace``). They
reach the daemon's ``execute`` as they are, but for what the HTTP API does to every stdin: a
test's ``stdin`` gets Piston's trailing newline, as the body's own ``stdin`` does (D7), so a
test without ``stdin`` and one with the same text behave alike. The stored result gains
``"tests": [{"name", "run": Stage, "verdict"}]`` in Piston's stage shape (and no ``run``).
Anything that is not
of the expected shape is passed on for the daemon's validation to name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pistond.gateway import v2

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pistond.models import JobResult


def _stdin(value: object) -> object:
    if isinstance(value, str):
        text = v2.wire_text(value)
        return text if text.endswith("\n") else text + "\n"
    return value


def _test_param(raw: object) -> object:
    if not isinstance(raw, dict):
        return raw
    test = {v2.wire_text(str(key)): value for key, value in raw.items()}
    for key in ("name", "expected_output"):
        if isinstance(test.get(key), str):
            test[key] = v2.wire_text(test[key])
    if "stdin" in test and test["stdin"] is not None:
        test["stdin"] = _stdin(test["stdin"])
    elif "stdin" in test:
        del test["stdin"]
    return test


def add_test_params(params: dict[str, Any], body: Mapping[str, Any]) -> None:
    """Copy the body's ``tests`` and ``compare`` into the ``execute`` params (in place)."""
    tests = body.get("tests")
    if tests is not None and "tests" not in params:
        params["tests"] = (
            [_test_param(test) for test in tests] if isinstance(tests, list) else tests
        )
    compare = body.get("compare")
    if compare is not None and "compare" not in params:
        params["compare"] = v2.wire_text(compare) if isinstance(compare, str) else compare


def add_test_results(answer: dict[str, Any], result: JobResult) -> None:
    """Add the per-test results of ``result`` to Piston's answer (in place), if it has any.

    Such an answer has no ``run``: Piston's copy of the compile stage as the run (for clients
    that always read ``run``) would read as a run that printed nothing.
    """
    if result.tests is None or "tests" in answer:
        return
    if result.run is None:
        answer.pop("run", None)
    answer["tests"] = [
        {
            "name": test.name,
            "run": v2.stage_json(test.run),
            "verdict": None if test.verdict is None else test.verdict.value,
        }
        for test in result.tests
    ]
