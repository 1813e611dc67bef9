"""Validation of ``execute`` / ``job.start`` params, in Piston's order and with Piston's messages.

Piston's checks (piston-v2.md §1.4) come first, in its order and words; pistond's stricter
rules (PROTOCOL.md: 0 and negative limits, file names, types of stdin/args/main, sizes) follow.
Every failure is an :class:`~pistond.errors.InvalidParams` whose message names the field.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

from pistond.config import REQUEST_LIMIT_KEYS
from pistond.errors import InvalidParams
from pistond.models import Comparison, ExecuteRequest, SourceFile, TestCase

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from pistond.config import Limits

FIELDS: Final = frozenset(
    {
        "language",
        "version",
        "files",
        "main",
        "stdin",
        "args",
        "compile_timeout",
        "run_timeout",
        "compile_cpu_time",
        "run_cpu_time",
        "compile_memory_limit",
        "run_memory_limit",
        "output_max_size",
        "compile_cache",
        "tests",
        "compare",
    }
)
FILE_FIELDS: Final = frozenset({"name", "content", "encoding"})
TEST_FIELDS: Final = frozenset({"name", "stdin", "args", "expected_output"})
DEFAULT_MAX_TESTS: Final = 64
MAX_TEST_NAME_LENGTH: Final = 256
ENCODINGS: Final = ("utf8", "base64", "hex")
MAX_FILES: Final = 1000
MAX_NAME_LENGTH: Final = 1024
MAX_NAME_COMPONENT: Final = 255
MAX_NAME_DEPTH: Final = 32
MAX_ARGS: Final = 4096
MAX_ARG_LENGTH: Final = 128 * 1024 - 1
MAX_ARGS_TOTAL: Final = 1024 * 1024


class ResolvedRuntime(Protocol):
    """What validation needs of a runtime: its language and its limit caps."""

    @property
    def language(self) -> str: ...


RuntimeT = TypeVar("RuntimeT", bound=ResolvedRuntime)


def validate_execute(
    params: Mapping[str, Any],
    *,
    resolve: Callable[[str, str], RuntimeT],
    runtime_limits: Callable[[RuntimeT], Limits],
    max_tests: int = DEFAULT_MAX_TESTS,
) -> tuple[ExecuteRequest, RuntimeT, Limits]:
    """Check ``execute`` params and resolve the runtime and its limits.

    Args:
        params: the request's named fields.
        resolve: language and version range to runtime; raises RuntimeUnknown.
        runtime_limits: the resolved caps of a runtime (config, package, overrides).
        max_tests: how many ``tests`` a request may carry (``PISTON_MAX_TESTS``); 0: none.

    Returns:
        The request, its runtime and its caps.

    Raises:
        InvalidParams: the first failed rule, with its message.
        RuntimeUnknown: no installed runtime matches.
    """
    unknown = sorted(set(params) - FIELDS)
    if unknown:
        raise InvalidParams(f"unknown field {unknown[0]!r}")
    message = piston_field_error(params)
    if message is not None:
        raise InvalidParams(message)
    language, version, raw_files = params["language"], params["version"], params["files"]
    runtime = resolve(language, version)
    files = _decode_files(raw_files)
    if runtime.language != "file" and not any(file.is_text for file in files):
        raise InvalidParams("files must include at least one utf8 encoded file")
    caps = runtime_limits(runtime)
    limits = {name: _check_limit(params, name, caps) for name in REQUEST_LIMIT_KEYS}
    stdin = _stdin(params.get("stdin"), "stdin")
    args = _args(params.get("args"), "args")
    request = ExecuteRequest(
        language=language,
        version=version,
        files=files,
        main=_main_file(params.get("main"), files, any_file=runtime.language == "file"),
        stdin=stdin,
        args=args,
        limits={name: value for name, value in limits.items() if value is not None},
        compile_cache=_flag(params.get("compile_cache"), "compile_cache", default=True),
        tests=_tests(params.get("tests"), stdin=stdin, args=args, max_tests=max_tests),
        compare=_comparison(params.get("compare")),
    )
    return request, runtime, caps


def piston_field_error(params: Mapping[str, Any]) -> str | None:
    """Piston's checks 1 to 4 (piston-v2.md §1.4), in order: the first failure's text, or None.

    Content may be text or bytes (msgpack bin: what the gateway decoded from base64 or hex).
    """
    language = params.get("language")
    if not isinstance(language, str) or not language:
        return "language is required as a string"
    version = params.get("version")
    if not isinstance(version, str) or not version:
        return "version is required as a string"
    files = params.get("files")
    if not isinstance(files, list):
        return "files is required as an array"
    for index, raw in enumerate(files):
        content = raw.get("content") if isinstance(raw, dict) else None
        if not isinstance(content, str | bytes):
            return f"files[{index}].content is required as a string"
    return None


def _decode_files(raw_files: list[Any]) -> tuple[SourceFile, ...]:
    if len(raw_files) > MAX_FILES:
        raise InvalidParams(f"files cannot hold more than {MAX_FILES} files")
    files: list[SourceFile] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_files):
        extra = sorted(set(raw) - FILE_FIELDS, key=str)
        if extra:
            raise InvalidParams(f"files[{index}] has an unknown field {extra[0]!r}")
        name = raw.get("name")
        if name is None:
            name = f"file{index}.code"
        if not isinstance(name, str):
            raise InvalidParams(f"files[{index}].name must be a string")
        if not name:
            raise InvalidParams(f"files[{index}].name cannot be empty")
        check_file_name(name)
        if name in seen:
            raise InvalidParams(f'File path "{name}" is given twice')
        seen.add(name)
        content, is_text = _decode_content(index, raw["content"], raw.get("encoding"))
        files.append(SourceFile(name=name, content=content, is_text=is_text))
    for name in seen:
        parts = name.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in seen:
                raise InvalidParams(f'File path "{name}" is inside the file "{parent}"')
    return tuple(files)


def check_file_name(name: str) -> None:
    """Reject a submitted file name that is not a plain relative path inside the box.

    Raises:
        InvalidParams: the name is absolute, has ``..``, ``.`` or empty components, a NUL
            byte, or is too long or too deep.
    """
    if "\0" in name:
        raise InvalidParams("File names cannot contain NUL bytes")
    parts = name.split("/")
    if name.startswith("/") or ".." in parts:
        raise InvalidParams(f'File path "{name}" tries to escape parent directory')
    if len(name) > MAX_NAME_LENGTH or len(parts) > MAX_NAME_DEPTH:
        raise InvalidParams(f"File path {name[:64]!r}... is too long")
    for part in parts:
        if part in ("", "."):
            raise InvalidParams(f'File path "{name}" has an empty or "." component')
        if len(part.encode()) > MAX_NAME_COMPONENT:
            raise InvalidParams(f"File path {name[:64]!r}... has a component over 255 bytes")


def _decode_content(index: int, content: str | bytes, encoding: object) -> tuple[bytes, bool]:
    if isinstance(content, bytes):
        if encoding is not None:
            raise InvalidParams(f"files[{index}].encoding must be absent for binary content")
        return content, False
    if encoding is None or encoding == "utf8":
        return content.encode("utf-8", errors="surrogatepass"), True
    if encoding == "base64":
        try:
            return base64.b64decode(content, validate=True), False
        except binascii.Error:
            raise InvalidParams(f"files[{index}].content is not valid base64") from None
    if encoding == "hex":
        try:
            return bytes.fromhex(content), False
        except ValueError:
            raise InvalidParams(f"files[{index}].content is not valid hex") from None
    raise InvalidParams(f"files[{index}].encoding must be one of utf8, base64, hex")


def _check_limit(params: Mapping[str, Any], name: str, caps: Limits) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidParams(f"If specified, {name} must be a number")
    limit: int = getattr(caps, name)
    if name.endswith("_memory_limit") and value == -1:
        return None
    if value == 0:
        raise InvalidParams(f"{name} must be positive")
    if value < 0:
        raise InvalidParams(f"{name} must be non-negative")
    if limit > 0 and value > limit:
        raise InvalidParams(f"{name} cannot exceed the configured limit of {limit}")
    return value


def _main_file(main: object, files: tuple[SourceFile, ...], *, any_file: bool) -> str:
    if main is None:
        for file in files:
            if file.is_text or any_file:
                return file.name
        raise InvalidParams("files must include at least one file")
    if not isinstance(main, str):
        raise InvalidParams("main must be a string")
    if not any(file.name == main for file in files):
        raise InvalidParams(f"main names no submitted file: {main[:64]!r}")
    return main


def _stdin(stdin: object, field: str) -> bytes:
    if stdin is None:
        return b""
    if isinstance(stdin, bytes):
        return stdin
    if isinstance(stdin, str):
        return stdin.encode("utf-8", errors="surrogatepass")
    raise InvalidParams(f"{field} must be a string")


def _args(args: object, field: str) -> tuple[str, ...]:
    if args is None:
        return ()
    if not isinstance(args, list) or not all(isinstance(arg, str) for arg in args):
        raise InvalidParams(f"{field} must be an array of strings")
    if len(args) > MAX_ARGS:
        raise InvalidParams(f"{field} cannot hold more than {MAX_ARGS} arguments")
    total = 0
    for index, arg in enumerate(args):
        size = len(arg.encode("utf-8", errors="surrogatepass"))
        if "\0" in arg:
            raise InvalidParams(f"{field}[{index}] cannot contain NUL bytes")
        if size > MAX_ARG_LENGTH:
            raise InvalidParams(f"{field}[{index}] is longer than {MAX_ARG_LENGTH} bytes")
        total += size + 1
    if total > MAX_ARGS_TOTAL:
        raise InvalidParams(f"{field} are longer than {MAX_ARGS_TOTAL} bytes in all")
    return tuple(args)


def _flag(value: object, field: str, *, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidParams(f"{field} must be a boolean")
    return value


def _comparison(value: object) -> Comparison:
    if value is None:
        return Comparison.EXACT
    names = ", ".join(member.value for member in Comparison)
    if not isinstance(value, str):
        raise InvalidParams(f"compare must be one of {names}")
    try:
        return Comparison(value)
    except ValueError:
        raise InvalidParams(f"compare must be one of {names}") from None


def _tests(
    raw: object, *, stdin: bytes, args: tuple[str, ...], max_tests: int
) -> tuple[TestCase, ...] | None:
    """The request's ``tests``; each test's stdin and args default to the request's."""
    if raw is None:
        return None
    if max_tests == 0:
        raise InvalidParams("tests are not accepted by this daemon")
    if not isinstance(raw, list):
        raise InvalidParams("tests must be an array of tests")
    if not raw:
        raise InvalidParams("tests must hold at least one test")
    if len(raw) > max_tests:
        raise InvalidParams(f"tests cannot hold more than {max_tests} tests")
    tests: list[TestCase] = []
    for index, test in enumerate(raw):
        where = f"tests[{index}]"
        if not isinstance(test, dict):
            raise InvalidParams(f"{where} must be a map")
        extra = sorted(set(test) - TEST_FIELDS, key=str)
        if extra:
            raise InvalidParams(f"{where} has an unknown field {extra[0]!r}")
        name = test.get("name")
        if name is not None and not isinstance(name, str):
            raise InvalidParams(f"{where}.name must be a string")
        if name is not None and len(name) > MAX_TEST_NAME_LENGTH:
            raise InvalidParams(f"{where}.name is longer than {MAX_TEST_NAME_LENGTH} characters")
        expected = test.get("expected_output")
        if isinstance(expected, bytes):
            expected = expected.decode("utf-8", errors="replace")
        elif expected is not None and not isinstance(expected, str):
            raise InvalidParams(f"{where}.expected_output must be a string")
        tests.append(
            TestCase(
                name=name,
                stdin=stdin
                if test.get("stdin") is None
                else _stdin(test["stdin"], f"{where}.stdin"),
                args=args if test.get("args") is None else _args(test["args"], f"{where}.args"),
                expected_output=expected,
            )
        )
    return tuple(tests)
