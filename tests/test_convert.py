"""The wire converter: strict structuring, enum values, and exact invalid_params messages."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from pistond.convert import converter, describe_type, structure_or_raise
from pistond.errors import InvalidParams
from pistond.models import (
    JobCounts,
    JobExit,
    JobOutput,
    JobResult,
    PingResult,
    RuntimeInfo,
    SandboxInfo,
    StageName,
    StageResult,
    StageStatus,
    StatusResult,
)


@attrs.frozen
class File:
    content: str | bytes
    name: str | None = None


@attrs.frozen
class Body:
    language: str
    files: tuple[File, ...]
    args: tuple[str, ...] = ()
    run_timeout: int | None = None
    env: dict[str, str] = attrs.Factory(dict)


def _stage(status: StageStatus | None = StageStatus.RUNTIME_ERROR) -> StageResult:
    return StageResult("out", "err", "outerr", 1, None, status, "Exited", 5, 7, 1024)


def _invalid(data: Any, cls: type = Body) -> str:
    with pytest.raises(InvalidParams) as info:
        structure_or_raise(data, cls)
    return info.value.message


def test_convert_structures_valid_body() -> None:
    """Valid wire data structures into the record, arrays into tuples."""
    body = structure_or_raise(
        {"language": "py", "files": [{"content": b"\x00"}, {"content": "x", "name": "a"}]}, Body
    )
    assert body == Body("py", (File(b"\x00"), File("x", "a")))


def test_convert_missing_nested_field_message() -> None:
    """A missing nested field is reported as `files[0].content is required`."""
    assert _invalid({"language": "py", "files": [{"name": "a"}]}) == "files[0].content is required"


def test_convert_type_errors_message() -> None:
    """Every wrong type is named with its path, in field order, joined by '; '."""
    message = _invalid(
        {"language": 5, "files": "abc", "args": [1, "x"], "run_timeout": True, "zzz": 1}
    )
    assert message == (
        "language must be a string; files must be an array; args[0] must be a string; "
        "run_timeout must be an integer or nil; zzz is not a known field"
    )


def test_convert_nested_unknown_and_mistyped_message() -> None:
    """Unknown nested keys, non-map elements and map values are each reported."""
    message = _invalid(
        {"language": "py", "files": [{"content": 1, "nmae": "x"}, 5], "env": {"a": 1}}
    )
    assert message == (
        "files[0].content must be a string or bytes; files[0].nmae is not a known field; "
        "files[1] must be a map; env['a'] must be a string"
    )


@pytest.mark.parametrize("data", ["text", None, [], 3])
def test_convert_non_map_params_message(data: Any) -> None:
    """Params that are not a map are reported as such."""
    assert _invalid(data) == "params must be a map"


def test_convert_no_coercion() -> None:
    """Strings are not numbers, numbers are not strings, str is not bytes: nothing is coerced."""
    assert _invalid({"language": "py", "files": [], "run_timeout": "5"}) == (
        "run_timeout must be an integer or nil"
    )
    assert _invalid({"language": b"py", "files": []}) == "language must be a string"
    assert _invalid({"job": "j", "stream": "stdout", "data": "text"}, JobOutput) == (
        "data must be bytes"
    )


def test_convert_enum_message() -> None:
    """An enum field lists its allowed values."""
    assert _invalid({"job": "j", "stage": "link"}, JobExit).startswith(
        "stage must be one of 'compile', 'run'"
    )


def test_convert_stage_status_as_value() -> None:
    """StageResult.status goes out as its plain string value, or nil."""
    wire = converter.unstructure(_stage())
    assert type(wire["status"]) is str
    assert wire["status"] == "RE"
    assert converter.unstructure(_stage(None))["status"] is None


def test_convert_job_result_round_trip() -> None:
    """A JobResult survives unstructure then structure, enums and None stages included."""
    result = JobResult("python", "3.11.2", None, _stage(StageStatus.TIMEOUT))
    wire = converter.unstructure(result)
    assert wire["compile"] is None
    assert wire["run"]["status"] == "TO"
    assert structure_or_raise(wire, JobResult) == result


def test_convert_runtime_info_aliases_as_array() -> None:
    """RuntimeInfo aliases go out as an array and come back as a tuple."""
    info = RuntimeInfo("c++", "10.2.0", ("cpp", "g++"), "gcc", True)
    wire = converter.unstructure(info)
    assert wire == {
        "language": "c++",
        "version": "10.2.0",
        "aliases": ["cpp", "g++"],
        "runtime": "gcc",
        "compiled": True,
    }
    assert structure_or_raise(wire, RuntimeInfo) == info


def test_convert_status_result_nested() -> None:
    """StatusResult structures its nested records and reports their missing fields by path."""
    wire = {
        "version": "0.1.0",
        "uptime": 3,
        "jobs": {"running": 1, "queued": 0, "completed": 2, "failed": 0},
        "sandbox": {"cgroup": "hybrid", "seccomp": True, "network": False},
        "limits": {"run_timeout": 3000},
    }
    status = structure_or_raise(wire, StatusResult)
    assert status.uptime == 3.0
    assert status.jobs == JobCounts(1, 0, 2, 0)
    assert status.sandbox == SandboxInfo("hybrid", True, False)
    del wire["jobs"]["failed"]  # type: ignore[attr-defined]  # a dict in this test
    assert _invalid(wire, StatusResult) == "jobs.failed is required"


def test_convert_forbids_extra_keys_at_root() -> None:
    """An unknown top-level key is invalid_params naming it."""
    assert _invalid({"version": "1", "protocol": 1, "extra": 0}, PingResult) == (
        "extra is not a known field"
    )


def test_convert_job_exit_from_wire() -> None:
    """A job.exit notification's fields structure into JobExit with enums."""
    exit_ = structure_or_raise(
        {
            "job": "j1",
            "stage": "run",
            "code": None,
            "signal": "SIGKILL",
            "status": "TO",
            "message": "Time limit exceeded",
            "cpu_time": 1,
            "wall_time": 3001,
            "memory": 4096,
        },
        JobExit,
    )
    assert exit_.stage is StageName.RUN
    assert exit_.status is StageStatus.TIMEOUT


def test_convert_describe_type_names() -> None:
    """Wire types read as English in messages."""
    assert describe_type(int | None) == "an integer or nil"
    assert describe_type(tuple[str, ...]) == "an array"
    assert describe_type(dict[str, int]) == "a map"
    assert describe_type(float) == "a number"
