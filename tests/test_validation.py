"""Execute validation: Piston's order and messages, then pistond's stricter rules."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from pistond.config import load_config
from pistond.errors import InvalidParams, RuntimeUnknown
from pistond.limits import runtime_limits
from pistond.models import Comparison
from pistond.validation import check_file_name, validate_execute

CONFIG = load_config({"PISTON_RUN_MEMORY_LIMIT": "100000000"})


@attrs.frozen
class FakeRuntime:
    language: str
    limit_overrides: dict[str, int] = attrs.field(factory=dict)


def resolve(language: str, version: str) -> FakeRuntime:
    if language in ("python", "py") and version in ("*", "3.11.2", "3.x"):
        return FakeRuntime("python")
    if language == "file":
        return FakeRuntime("file")
    raise RuntimeUnknown(f"{language}-{version} runtime is unknown")


def validate(params: dict[str, Any]) -> Any:
    return validate_execute(
        params,
        resolve=resolve,
        runtime_limits=lambda rt: runtime_limits(CONFIG, rt.language, rt.limit_overrides),
    )


def body(**extra: Any) -> dict[str, Any]:
    return {"language": "python", "version": "*", "files": [{"content": "print(1)"}], **extra}


def message(params: dict[str, Any]) -> str:
    with pytest.raises((InvalidParams, RuntimeUnknown)) as caught:
        validate(params)
    return str(caught.value)


def test_validation_accepts_a_minimal_request() -> None:
    """A minimal request validates with Piston's defaults for name, stdin and args."""
    request, runtime, caps = validate(body())
    assert runtime.language == "python"
    assert request.files[0].name == "file0.code"
    assert request.files[0].content == b"print(1)"
    assert request.main == "file0.code"
    assert (request.stdin, request.args, request.limits) == (b"", (), {})
    assert caps.run_timeout == 3000


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, "language is required as a string"),
        ({"language": 5}, "language is required as a string"),
        ({"language": ""}, "language is required as a string"),
        ({"language": "python"}, "version is required as a string"),
        ({"language": "python", "version": 3}, "version is required as a string"),
        ({"language": "python", "version": "*"}, "files is required as an array"),
        ({"language": "python", "version": "*", "files": {}}, "files is required as an array"),
        (
            {"language": "python", "version": "*", "files": [{"content": "x"}, {"name": "a"}]},
            "files[1].content is required as a string",
        ),
        (
            {"language": "python", "version": "*", "files": [None]},
            "files[0].content is required as a string",
        ),
        (
            {"language": "cobol", "version": "*", "files": [{"content": 1}]},
            "files[0].content is required as a string",
        ),
        (
            {"language": "cobol", "version": "9", "files": []},
            "cobol-9 runtime is unknown",
        ),
        (
            {"language": "python", "version": "*", "files": []},
            "files must include at least one utf8 encoded file",
        ),
        (
            {
                "language": "python",
                "version": "*",
                "files": [{"content": "AAAA", "encoding": "base64"}],
            },
            "files must include at least one utf8 encoded file",
        ),
    ],
)
def test_validation_piston_order_and_messages(params: dict[str, Any], expected: str) -> None:
    """Piston's checks run in its order and answer with its exact text."""
    assert message(params) == expected


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("run_timeout", "100", "If specified, run_timeout must be a number"),
        ("run_timeout", True, "If specified, run_timeout must be a number"),
        ("run_timeout", 1.5, "If specified, run_timeout must be a number"),
        ("run_timeout", 3001, "run_timeout cannot exceed the configured limit of 3000"),
        ("compile_timeout", 10001, "compile_timeout cannot exceed the configured limit of 10000"),
        ("run_cpu_time", 0, "run_cpu_time must be positive"),
        ("run_timeout", -5, "run_timeout must be non-negative"),
        ("run_memory_limit", -2, "run_memory_limit must be non-negative"),
        (
            "run_memory_limit",
            100000001,
            "run_memory_limit cannot exceed the configured limit of 100000000",
        ),
        ("output_max_size", 1025, "output_max_size cannot exceed the configured limit of 1024"),
        ("output_max_size", 0, "output_max_size must be positive"),
    ],
)
def test_validation_limits(field: str, value: Any, expected: str) -> None:
    """Limits must be integers, positive, and no higher than the runtime's caps."""
    assert message(body(**{field: value})) == expected


def test_validation_limits_checked_in_piston_order() -> None:
    """Memory limits are checked before timeouts, compile before run."""
    params = body(run_timeout=99999, compile_memory_limit="x", run_memory_limit="y")
    assert message(params) == "If specified, compile_memory_limit must be a number"


def test_validation_lower_limits_are_kept_and_minus_one_means_configured() -> None:
    """Lower values are kept; -1 memory means the configured limit (upstream D16)."""
    request, _, _ = validate(
        body(run_timeout=500, compile_memory_limit=-1, run_memory_limit=-1, output_max_size=10)
    )
    assert request.limits == {"run_timeout": 500, "output_max_size": 10}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../x", 'File path "../x" tries to escape parent directory'),
        ("a/../../x", 'File path "a/../../x" tries to escape parent directory'),
        ("/etc/passwd", 'File path "/etc/passwd" tries to escape parent directory'),
        ("a//b", 'File path "a//b" has an empty or "." component'),
        ("./a", 'File path "./a" has an empty or "." component'),
        (".", 'File path "." has an empty or "." component'),
        ("a/", 'File path "a/" has an empty or "." component'),
        ("x\0y", "File names cannot contain NUL bytes"),
        (
            "x" * 5000,
            f"File path {'x' * 64!r}... is too long",
        ),
        ("d/" * 40 + "f", None),
        ("y" * 300, None),
    ],
)
def test_validation_file_names(name: str, expected: str | None) -> None:
    """Absolute paths, .., empty or . components, NUL and oversized names are refused."""
    with pytest.raises(InvalidParams) as caught:
        check_file_name(name)
    if expected is not None:
        assert str(caught.value) == expected


def test_validation_duplicate_and_nested_names() -> None:
    """Duplicate names, and a file used as a directory, are refused."""
    files = [{"name": "a.py", "content": "1"}, {"name": "a.py", "content": "2"}]
    assert message(body(files=files)) == 'File path "a.py" is given twice'
    files = [{"name": "a", "content": "1"}, {"name": "a/b.py", "content": "2"}]
    assert message(body(files=files)) == 'File path "a/b.py" is inside the file "a"'


def test_validation_null_name_means_default_and_empty_is_refused() -> None:
    """A null or absent name gets file<i>.code; an empty one is invalid_params (PROTOCOL.md).

    The gateway turns Piston's "" into an absent name before it calls the daemon.
    """
    files = [{"content": "1"}, {"name": None, "content": "2"}]
    request, _, _ = validate(body(files=files))
    assert [file.name for file in request.files] == ["file0.code", "file1.code"]
    assert message(body(files=[{"name": "", "content": "1"}])) == "files[0].name cannot be empty"


def test_validation_file_encodings() -> None:
    """utf8, base64, hex and raw bytes decode to the same content; bad ones are refused."""
    files = [
        {"name": "main.py", "content": "print(1)"},
        {"name": "b64", "content": "aGk=", "encoding": "base64"},
        {"name": "hex", "content": "6869", "encoding": "hex"},
        {"name": "raw", "content": b"\xff\x00"},
    ]
    request, _, _ = validate(body(files=files))
    assert [(f.content, f.is_text) for f in request.files] == [
        (b"print(1)", True),
        (b"hi", False),
        (b"hi", False),
        (b"\xff\x00", False),
    ]
    bad = [{"content": "x"}, {"name": "b", "content": "!!!", "encoding": "base64"}]
    assert message(body(files=bad)) == "files[1].content is not valid base64"
    bad = [{"content": "x"}, {"name": "b", "content": "zz", "encoding": "hex"}]
    assert message(body(files=bad)) == "files[1].content is not valid hex"
    bad = [{"content": "x"}, {"name": "b", "content": "x", "encoding": "rot13"}]
    assert message(body(files=bad)) == "files[1].encoding must be one of utf8, base64, hex"


def test_validation_main_stdin_args() -> None:
    """main must name a file; stdin is str or bytes; args are strings."""
    files = [{"name": "lib.py", "content": "x"}, {"name": "main.py", "content": "y"}]
    request, _, _ = validate(body(files=files, main="main.py", stdin="in", args=["a", "b"]))
    assert (request.main, request.stdin, request.args) == ("main.py", b"in", ("a", "b"))
    assert message(body(main="nope.py")) == "main names no submitted file: 'nope.py'"
    assert message(body(stdin=5)) == "stdin must be a string"
    assert message(body(args="a b")) == "args must be an array of strings"
    assert message(body(args=[1])) == "args must be an array of strings"
    assert message(body(args=["x"] * 5000)) == "args cannot hold more than 4096 arguments"
    assert message(body(args=["x" * 200_000])) == "args[0] is longer than 131071 bytes"


def test_validation_unknown_fields_are_refused() -> None:
    """Unknown top-level and file fields are invalid_params, not ignored."""
    assert message(body(colour="red")) == "unknown field 'colour'"
    files = [{"content": "x", "mode": 7}]
    assert message(body(files=files)) == "files[0] has an unknown field 'mode'"


def test_validation_file_language_takes_any_file() -> None:
    """The special language `file` needs no utf8 file; its first file is the main one."""
    params = {
        "language": "file",
        "version": "*",
        "files": [{"content": "AAAA", "encoding": "base64"}],
    }
    request, _, _ = validate(params)
    assert request.main == "file0.code"


def test_validation_tests_default_to_the_requests_stdin_and_args() -> None:
    """Each test's stdin and args default to the request's; name and expected_output are kept."""
    request, _, _ = validate(
        body(
            stdin="all",
            args=["x"],
            tests=[
                {"name": "a", "stdin": "1\n", "expected_output": "2\n"},
                {"args": ["y"], "stdin": None},
                {"expected_output": b"bytes"},
            ],
        )
    )
    assert [(test.name, test.stdin, test.args, test.expected_output) for test in request.tests] == [
        ("a", b"1\n", ("x",), "2\n"),
        (None, b"all", ("y",), None),
        (None, b"all", ("x",), "bytes"),
    ]
    assert request.compile_cache is True
    assert request.compare is Comparison.EXACT
    plain, _, _ = validate(body())
    assert plain.tests is None


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"tests": {}}, "tests must be an array of tests"),
        ({"tests": []}, "tests must hold at least one test"),
        ({"tests": [{}] * 65}, "tests cannot hold more than 64 tests"),
        ({"tests": [5]}, "tests[0] must be a map"),
        ({"tests": [{}, {"stdout": "x"}]}, "tests[1] has an unknown field 'stdout'"),
        ({"tests": [{"name": 1}]}, "tests[0].name must be a string"),
        ({"tests": [{"name": "n" * 257}]}, "tests[0].name is longer than 256 characters"),
        ({"tests": [{"stdin": 1}]}, "tests[0].stdin must be a string"),
        ({"tests": [{"args": "a"}]}, "tests[0].args must be an array of strings"),
        ({"tests": [{"args": ["a\0"]}]}, "tests[0].args[0] cannot contain NUL bytes"),
        ({"tests": [{"expected_output": 3}]}, "tests[0].expected_output must be a string"),
        ({"compile_cache": "no"}, "compile_cache must be a boolean"),
        ({"compare": "fuzzy"}, "compare must be one of exact, trailing_whitespace"),
        ({"compare": 1}, "compare must be one of exact, trailing_whitespace"),
    ],
)
def test_validation_tests_compile_cache_and_compare_errors(
    extra: dict[str, Any], expected: str
) -> None:
    """Malformed tests, compile_cache and compare are invalid_params naming the field."""
    assert message(body(**extra)) == expected


def test_validation_compile_cache_opt_out_and_compare() -> None:
    """compile_cache false and compare trailing_whitespace are taken as given."""
    request, _, _ = validate(body(compile_cache=False, compare="trailing_whitespace"))
    assert request.compile_cache is False
    assert request.compare is Comparison.TRAILING_WHITESPACE
