"""Piston v2 JSON shapes to RPC params, and the daemon's typed results to Piston JSON.

Requests are translated, not validated: the daemon validates every ``execute`` and
``job.start`` once, in Piston's order and words (PROTOCOL.md, piston-v2.md §1.4), so a field
that does not have the shape Piston expects is passed on as it came and answered by the
daemon's message. What Piston's server does to a valid body happens here: files are decoded as
Node decodes them (lenient base64 and hex, unknown encodings mean utf8) and sent as text
(utf8) or bytes, an empty or null ``name`` means none, stdin gets Piston's trailing newline
(D7), falsy limits and ``-1`` memory limits are left out (D1, D16), unknown fields are dropped.
Results arrive as :mod:`pistond.models` records (the typed client structured them) and leave
in Piston's key order, with its quirks (``run`` mirrors a failed ``compile``, SIGKILL forced).
"""

from __future__ import annotations

import base64
import math
import re
from typing import TYPE_CHECKING, Any, Final

from pistond.config import PISTON_REQUEST_LIMIT_KEYS
from pistond.gateway.errors import bad_request
from pistond.models import StageStatus
from pistond.signals import SIGNALS

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pistond.models import JobExit, JobResult, PackageInfo, PackageRef, RuntimeInfo, StageResult

MEMORY_FIELDS: Final = frozenset({"compile_memory_limit", "run_memory_limit"})
_INT64_MAX: Final = 2**63 - 1
_KILLED_STATUSES: Final = frozenset(
    {StageStatus.TIMEOUT, StageStatus.STDOUT_LIMIT, StageStatus.STDERR_LIMIT}
)
_BASE64_ALPHABET: Final = re.compile(r"[^A-Za-z0-9+/]")
_LONE_SURROGATE: Final = re.compile(r"[\ud800-\udfff]")

SIGNAL_NAMES: Final = frozenset(SIGNALS)
"""Piston's signal table (piston-v2.md §4.3): names 1 to 31, then the real-time signals."""


def wire_text(text: str) -> str:
    """``text`` with lone surrogates (from JSON escapes) replaced by U+FFFD, as Node does."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def _wire_value(value: Any) -> Any:
    """A JSON value made encodable as msgpack: safe strings, bounded integers."""
    if isinstance(value, str):
        return wire_text(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return max(-_INT64_MAX, min(_INT64_MAX, value))
    if isinstance(value, list):
        return [_wire_value(item) for item in value]
    if isinstance(value, dict):
        return {wire_text(str(key)): _wire_value(item) for key, item in value.items()}
    return value


def decode_base64(text: str) -> bytes:
    """Decode base64 as Node's ``Buffer.from(text, "base64")``: URL-safe letters accepted,
    other characters skipped, decoding stops at the first ``=``, a lone trailing sextet dropped.
    """
    text = text.split("=", 1)[0].replace("-", "+").replace("_", "/")
    letters = _BASE64_ALPHABET.sub("", text)
    usable = len(letters) - (len(letters) % 4 == 1)
    letters = letters[:usable]
    return base64.b64decode(letters + "=" * (-len(letters) % 4))


def decode_hex(text: str) -> bytes:
    """Decode hex as Node's ``Buffer.from(text, "hex")``: stop at the first pair that is not hex."""
    out = bytearray()
    for start in range(0, len(text) - 1, 2):
        pair = text[start : start + 2]
        if not all(char in "0123456789abcdefABCDEF" for char in pair):
            break
        out.append(int(pair, 16))
    return bytes(out)


def _file_param(raw: Any) -> Any:
    """One Piston file as a PROTOCOL.md ``File``: utf8 files as text, others as bytes.

    A file without string content is passed on as it is, for the daemon to refuse.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("content"), str):
        return _wire_value(raw)
    file: dict[str, Any] = {}
    name = raw.get("name")
    if name is not None and name != "":
        file["name"] = _wire_value(name)
    content: str = raw["content"]
    encoding = raw.get("encoding")
    if encoding == "base64":
        file["content"] = decode_base64(content)
    elif encoding == "hex":
        file["content"] = decode_hex(content)
    else:
        file["content"] = wire_text(content)
    return file


def _limit_param(value: Any) -> Any:
    """A request limit as forwarded: numbers as integers (fractions rounded away from zero)."""
    if isinstance(value, float):
        rounded = math.ceil(value) if value > 0 else math.floor(value)
        if rounded == -1 and value != -1:
            rounded = -2  # -0.5 is a negative limit, not the "configured" marker -1
        return max(-_INT64_MAX, min(_INT64_MAX, rounded))
    return _wire_value(value)


def execute_params(body: object) -> dict[str, Any]:
    """The RPC ``execute`` / ``job.start`` params of a Piston execute body.

    Args:
        body: the parsed JSON body (any JSON value; non-objects have no fields).

    Returns:
        Params for the daemon, which checks them in Piston's order and words.
    """
    fields: Mapping[str, Any] = body if isinstance(body, dict) else {}
    params: dict[str, Any] = {
        name: _wire_value(fields[name]) for name in ("language", "version") if name in fields
    }
    files = fields.get("files")
    if files is not None:
        params["files"] = (
            [_file_param(file) for file in files] if isinstance(files, list) else _wire_value(files)
        )
    stdin = fields.get("stdin")
    if stdin is None:
        stdin = ""
    if isinstance(stdin, str):
        text = wire_text(stdin)
        params["stdin"] = text if text.endswith("\n") else text + "\n"
    else:
        params["stdin"] = _wire_value(stdin)
    args = fields.get("args")
    if args is not None:
        params["args"] = _wire_value(args)
    for name in PISTON_REQUEST_LIMIT_KEYS:
        value = fields.get(name)
        if not value:
            continue  # D1: absent, 0, null, "" and false all mean "not given"
        if name in MEMORY_FIELDS and value == -1 and not isinstance(value, bool):
            continue  # D16: -1 means the configured limit
        params[name] = _limit_param(value)
    return params


def interactive_params(body: Mapping[str, Any]) -> dict[str, Any]:
    """The ``job.start`` params of a WebSocket ``init`` frame: as execute, stdin written as is."""
    params = execute_params(body)
    stdin = body.get("stdin")
    if stdin is None or stdin == "":
        params.pop("stdin", None)
    elif isinstance(stdin, str):
        params["stdin"] = wire_text(stdin)
    return params


def package_params(body: object) -> tuple[str, str]:
    """Language and version of a ``POST`` or ``DELETE /api/v2/packages`` body.

    Raises:
        HttpError: 400 when ``language`` or ``version`` is not a non-empty string.
    """
    fields: Mapping[str, Any] = body if isinstance(body, dict) else {}
    language = fields.get("language")
    if not isinstance(language, str) or not language:
        raise bad_request("language is required as a string")
    version = fields.get("version")
    if not isinstance(version, str) or not version:
        raise bad_request("version is required as a string")
    return wire_text(language), wire_text(version)


def stage_json(stage: StageResult) -> dict[str, Any]:
    """A stage in Piston's key order; ``signal`` forced to SIGKILL for TO, OL and EL."""
    signal = "SIGKILL" if stage.status in _KILLED_STATUSES else stage.signal
    return {
        "signal": signal,
        "stdout": stage.stdout,
        "stderr": stage.stderr,
        "code": stage.code,
        "output": stage.output,
        "memory": stage.memory,
        "message": stage.message,
        "status": None if stage.status is None else stage.status.value,
        "cpu_time": stage.cpu_time,
        "wall_time": stage.wall_time,
    }


def job_result(result: JobResult) -> dict[str, Any]:
    """Piston's execute answer, in its key order; ``run`` is ``compile`` when compilation failed."""
    answer: dict[str, Any] = {}
    run = result.run
    if result.compile is not None:
        answer["compile"] = stage_json(result.compile)
        if result.compile.code != 0 or run is None:
            run = result.compile
    if run is not None:
        answer["run"] = stage_json(run)
    answer["language"] = result.language
    answer["version"] = result.version
    return answer


def runtime_json(runtime: RuntimeInfo) -> dict[str, Any]:
    """A ``/runtimes`` element: ``runtime`` only for packages that provide several languages."""
    answer: dict[str, Any] = {
        "language": runtime.language,
        "version": runtime.version,
        "aliases": list(runtime.aliases),
    }
    if runtime.runtime is not None:
        answer["runtime"] = runtime.runtime
    return answer


def runtimes(listed: list[RuntimeInfo]) -> list[dict[str, Any]]:
    """Piston's ``/runtimes`` answer, in the daemon's order."""
    return [runtime_json(runtime) for runtime in listed]


def packages(listed: list[PackageInfo]) -> list[dict[str, Any]]:
    """Piston's ``GET /packages`` answer."""
    return [
        {"language": item.language, "language_version": item.version, "installed": item.installed}
        for item in listed
    ]


def package_result(package: PackageRef) -> dict[str, Any]:
    """Piston's ``{"language", "version"}`` answer of a package install or uninstall."""
    return {"language": package.language, "version": package.version}


def exit_frame(event: JobExit) -> dict[str, Any]:
    """The WebSocket ``exit`` frame of a ``job.exit`` event."""
    signal = "SIGKILL" if event.status in _KILLED_STATUSES else event.signal
    return {"type": "exit", "stage": event.stage.value, "code": event.code, "signal": signal}
