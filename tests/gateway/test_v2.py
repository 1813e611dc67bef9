"""pistond.gateway.v2: Piston JSON to RPC params and RPC results to Piston JSON, no I/O."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pistond.convert import structure_or_raise
from pistond.gateway import v2
from pistond.gateway.errors import HttpError
from pistond.models import (
    JobExit,
    JobResult,
    PackageInfo,
    RuntimeInfo,
    StageName,
    StageResult,
    StageStatus,
)

STAGE = {
    "stdout": "o",
    "stderr": "e",
    "output": "oe",
    "code": 0,
    "signal": None,
    "status": None,
    "message": None,
    "cpu_time": 1,
    "wall_time": 2,
    "memory": 3,
}


def stage(**fields: Any) -> dict[str, Any]:
    return {**STAGE, **fields}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("aGk=", b"hi"),
        ("aGk", b"hi"),
        ("a\nG k!", b"hi"),
        ("aGk=aGk=", b"hi"),
        ("aGl-_w", b"hi~\xff"),
        ("a", b""),
        ("", b""),
    ],
)
def test_v2_decode_base64_is_lenient_as_node(text: str, expected: bytes) -> None:
    """base64 skips bad characters, accepts URL-safe letters, stops at '='."""
    assert v2.decode_base64(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("6869", b"hi"), ("6869z1", b"hi"), ("686", b"h"), ("zz6869", b""), ("", b"")],
)
def test_v2_decode_hex_stops_at_first_bad_pair(text: str, expected: bytes) -> None:
    """hex decodes pairs up to the first pair that is not hex."""
    assert v2.decode_hex(text) == expected


@given(st.binary(max_size=64))
def test_v2_decode_base64_round_trips(data: bytes) -> None:
    """Well-formed base64 decodes to exactly its bytes."""
    assert v2.decode_base64(base64.b64encode(data).decode()) == data


def result(**fields: Any) -> JobResult:
    """A JobResult as the typed client structures the daemon's reply."""
    return structure_or_raise({"compile": None, "run": None, **fields}, JobResult)


def test_v2_stage_json_keys_in_piston_order() -> None:
    """A stage has Piston's ten keys in Piston's order."""
    result = v2.stage_json(structure_or_raise(stage(), StageResult))
    assert list(result) == [
        "signal", "stdout", "stderr", "code", "output", "memory", "message", "status",
        "cpu_time", "wall_time",
    ]  # fmt: skip


@pytest.mark.parametrize("status", ["TO", "OL", "EL"])
def test_v2_signal_forced_to_sigkill(status: str) -> None:
    """signal is SIGKILL whenever the status is TO, OL or EL."""
    answer = v2.job_result(
        result(language="x", version="1", run=stage(status=status, code=None, signal=None))
    )
    assert answer["run"]["signal"] == "SIGKILL"
    event = JobExit(
        job="j",
        stage=StageName.RUN,
        code=None,
        signal=None,
        status=StageStatus(status),
        message=None,
        cpu_time=1,
        wall_time=2,
        memory=3,
    )
    frame = v2.exit_frame(event)
    assert frame == {"type": "exit", "stage": "run", "code": None, "signal": "SIGKILL"}


@pytest.mark.parametrize("code", [1, None, -1])
def test_v2_failed_compile_mirrored_as_run(code: int | None) -> None:
    """Any compile code but 0 (null included) makes run a copy of compile."""
    answer = v2.job_result(result(language="c", version="1", compile=stage(code=code)))
    assert list(answer) == ["compile", "run", "language", "version"]
    assert answer["run"] == answer["compile"]


def test_v2_runtime_json_omits_runtime_when_absent() -> None:
    """runtime appears only for provides packages; compiled never appears."""
    answer = v2.runtimes(
        structure_or_raise(
            [
                {"language": "python", "version": "3", "aliases": ["py"], "runtime": None,
                 "compiled": False},
                {"language": "c", "version": "1", "aliases": [], "runtime": "gcc",
                 "compiled": True},
            ],
            list[RuntimeInfo],
        )
    )  # fmt: skip
    assert answer == [
        {"language": "python", "version": "3", "aliases": ["py"]},
        {"language": "c", "version": "1", "aliases": [], "runtime": "gcc"},
    ]


def test_v2_execute_params_are_msgpack_safe() -> None:
    """Lone surrogates become U+FFFD and huge integers are bounded before reaching msgpack."""
    params = v2.execute_params(
        {
            "language": "py\ud800",
            "version": "*",
            "files": [{"content": "x"}],
            "args": ["\udfff"],
            "run_timeout": 10**40,
            "compile_timeout": 1e300,
        }
    )
    assert params["language"] == "py\ufffd"
    assert params["args"] == ["\ufffd"]
    assert params["run_timeout"] == 2**63 - 1
    assert params["compile_timeout"] == 2**63 - 1


@pytest.mark.parametrize(("value", "sent"), [(0.5, 1), (-0.5, -2), (-1.0, -1), (2.0, 2)])
def test_v2_fractional_limits_round_away_from_zero(value: float, sent: int) -> None:
    """Fractional limits become integers without turning into 0 or the -1 marker."""
    params = v2.execute_params({"language": "c", "version": "*", "files": [], "run_timeout": value})
    assert params["run_timeout"] == sent


def test_v2_interactive_stdin_is_written_unchanged() -> None:
    """WebSocket init.stdin is passed as given (no newline); empty stdin is left out."""
    base = {"language": "c", "version": "*", "files": []}
    assert v2.interactive_params({**base, "stdin": "a"})["stdin"] == "a"
    assert "stdin" not in v2.interactive_params(base)


def test_v2_package_params_require_strings() -> None:
    """Package bodies need language and version as non-empty strings."""
    assert v2.package_params({"language": "gcc", "version": "10"}) == ("gcc", "10")
    with pytest.raises(HttpError, match="version is required as a string"):
        v2.package_params({"language": "gcc", "version": ""})


def test_v2_packages_renames_version() -> None:
    """GET /packages elements are language, language_version, installed."""
    listed = [PackageInfo(language="gcc", version="10.2.0", installed=False, source="index")]
    assert v2.packages(listed) == [
        {"language": "gcc", "language_version": "10.2.0", "installed": False}
    ]


def test_v2_signal_names_are_pistons_table() -> None:
    """The signal table has the 31 classic names and the 31 real-time names of Piston."""
    assert len(v2.SIGNAL_NAMES) == 62
    assert {"SIGINT", "SIGKILL", "SIGRTMIN", "SIGRTMIN+15", "SIGRTMAX-14", "SIGRTMAX"} <= (
        v2.SIGNAL_NAMES
    )


def test_v2_execute_params_pass_malformed_fields_on() -> None:
    """Fields without Piston's shape are forwarded as they came, for the daemon to refuse."""
    params = v2.execute_params(
        {"language": 5, "files": [None, {"content": 7}, {"content": "x", "name": ""}], "x": 1}
    )
    assert params == {
        "language": 5,
        "files": [None, {"content": 7}, {"content": "x"}],
        "stdin": "\n",
    }
    assert v2.execute_params([1, 2]) == {"stdin": "\n"}
