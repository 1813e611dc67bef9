"""piston-v2.md §1 as tests: every HTTP route, field, message and status code of the gateway.

Rules: a real gateway on 127.0.0.1 (port 0) in front of the fake daemon (conftest.py), every
request under a deadline, exact bodies compared, key order compared where Piston fixes it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import trio

from pistond.errors import (
    Forbidden,
    InternalError,
    Overloaded,
    PackageError,
    PackageNotFound,
    RuntimeUnknown,
)
from pistond.semver import max_satisfying

from .conftest import MAX_BODY_SIZE, open_http

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx

    from .conftest import GatewayStack
    from .fake_daemon import FakeDaemon

STAGE_KEYS = [
    "signal", "stdout", "stderr", "code", "output", "memory", "message", "status",
    "cpu_time", "wall_time",
]  # fmt: skip
HELLO = 'print("hi")'


def body(**fields: Any) -> dict[str, Any]:
    """An execute body for the python runtime, with ``fields`` replacing the defaults."""
    base: dict[str, Any] = {"language": "python", "version": "3.x", "files": [{"content": HELLO}]}
    base.update(fields)
    return base


async def execute(http: httpx.AsyncClient, payload: Any) -> httpx.Response:
    with trio.fail_after(10):
        return await http.post("/api/v2/execute", json=payload)


async def test_root_answers_piston_version(http: httpx.AsyncClient) -> None:
    """GET / answers 200 {"message":"Piston v3.1.1"}."""
    response = await http.get("/")
    assert response.status_code == 200
    assert response.json() == {"message": "Piston v3.1.1"}


@pytest.mark.parametrize("path", ["/nope", "/api/v2", "/api/v2/execute/x", "/api/v3/runtimes"])
async def test_unknown_route_not_found(http: httpx.AsyncClient, path: str) -> None:
    """An unknown route answers 404 {"message":"Not Found"}."""
    response = await http.get(path)
    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}


async def test_wrong_method_answers_json_405(http: httpx.AsyncClient) -> None:
    """A known route with the wrong method answers a JSON 405, never HTML."""
    response = await http.get("/api/v2/execute")
    assert response.status_code == 405
    assert response.json() == {"message": "Method Not Allowed"}


async def test_runtimes_shape_order_and_runtime_key(
    http: httpx.AsyncClient, fake: FakeDaemon
) -> None:
    """/runtimes lists language, version, aliases, and runtime only for provides packages."""
    response = await http.get("/api/v2/runtimes")
    assert response.status_code == 200
    runtimes = response.json()
    assert runtimes[0] == {
        "language": "python",
        "version": "3.12.0",
        "aliases": ["py", "py3", "python3", "python3.12"],
    }
    assert list(runtimes[0]) == ["language", "version", "aliases"]
    cpp = next(r for r in runtimes if r["language"] == "c++")
    assert cpp == {
        "language": "c++",
        "version": "10.2.0",
        "aliases": ["cpp", "g++"],
        "runtime": "gcc",
    }
    assert list(cpp) == ["language", "version", "aliases", "runtime"]


@pytest.mark.parametrize("path", ["/api/v2/runtimes/", "/api/v2/packages/"])
async def test_trailing_slash_routes_answer(http: httpx.AsyncClient, path: str) -> None:
    """D15: routes with a trailing slash answer like the plain ones."""
    response = await http.get(path)
    assert response.status_code == 200
    assert isinstance(response.json(), list)


async def test_execute_answer_has_piston_keys_in_order(http: httpx.AsyncClient) -> None:
    """/execute answers run, language, version, stage keys in Piston's order, language resolved."""
    runtimes = (await http.get("/api/v2/runtimes")).json()
    versions = [r["version"] for r in runtimes if r["language"] == "python"]
    response = await execute(http, body(language="py"))
    assert response.status_code == 200
    answer = response.json()
    assert list(answer) == ["run", "language", "version"]
    assert list(answer["run"]) == STAGE_KEYS
    assert answer["language"] == "python"
    assert answer["version"] == max_satisfying(versions, "3.x")
    assert answer["run"]["stdout"] == "hi\n"
    assert answer["run"]["code"] == 0
    assert answer["run"]["status"] is None
    assert answer["run"]["signal"] is None


async def test_execute_compiled_answer_starts_with_compile(
    http: httpx.AsyncClient, fake: FakeDaemon
) -> None:
    """A compiled runtime answers compile, run, language, version."""
    response = await execute(http, body(language="gcc", version="*"))
    assert response.status_code == 200
    answer = response.json()
    assert list(answer) == ["compile", "run", "language", "version"]
    assert answer["language"] == "c"
    assert answer["run"]["stdout"] == "hi\n"


async def test_execute_failed_compile_is_mirrored_in_run(
    http: httpx.AsyncClient, fake: FakeDaemon
) -> None:
    """When compilation fails, run is the same object as compile."""
    failing = body(language="c", version="*", files=[{"content": "syntax error"}])
    answer = (await execute(http, failing)).json()
    assert answer["compile"]["code"] == 1
    assert answer["compile"]["status"] == "RE"
    assert answer["run"] == answer["compile"]


VALIDATION = [
    ({}, "language is required as a string"),
    ([1, 2], "language is required as a string"),
    (body(language=""), "language is required as a string"),
    (body(language=5), "language is required as a string"),
    (body(version=None), "version is required as a string"),
    (body(version=""), "version is required as a string"),
    (body(files=None), "files is required as an array"),
    (body(files={"content": "x"}), "files is required as an array"),
    (body(files=[{"content": 5}]), "files[0].content is required as a string"),
    (body(files=[{"content": "x"}, {"name": "b"}]), "files[1].content is required as a string"),
    (body(files=[None]), "files[0].content is required as a string"),
    (body(language="cobol", version="1.0.0"), "cobol-1.0.0 runtime is unknown"),
    (body(version="latest"), "python-latest runtime is unknown"),
    (body(files=[]), "files must include at least one utf8 encoded file"),
    (
        body(files=[{"content": "aGk=", "encoding": "base64"}]),
        "files must include at least one utf8 encoded file",
    ),
    (body(run_timeout="3000"), "If specified, run_timeout must be a number"),
    (body(compile_cpu_time=True), "If specified, compile_cpu_time must be a number"),
    (body(run_timeout=5000), "run_timeout cannot exceed the configured limit of 3000"),
    (body(run_cpu_time=10**30), "run_cpu_time cannot exceed the configured limit of 3000"),
    (body(compile_memory_limit=-5), "compile_memory_limit must be non-negative"),
    (body(run_timeout=-3), "run_timeout must be non-negative"),
    (
        body(run_memory_limit="x", run_timeout="y"),
        "If specified, run_memory_limit must be a number",
    ),
    (body(version="9", run_timeout="y"), "python-9 runtime is unknown"),
    (
        body(files=[{"name": "../x", "content": HELLO}]),
        'File path "../x" tries to escape parent directory',
    ),
    (
        body(files=[{"name": "/etc/passwd", "content": HELLO}]),
        'File path "/etc/passwd" tries to escape parent directory',
    ),
    (body(stdin=5), "stdin must be a string"),
    (body(args="x"), "args must be an array of strings"),
    (body(args=[1]), "args must be an array of strings"),
    (body(files=[{"name": 5, "content": HELLO}]), "files[0].name must be a string"),
]


@pytest.mark.parametrize(("payload", "message"), VALIDATION)
async def test_execute_validation_messages(
    http: httpx.AsyncClient, payload: Any, message: str
) -> None:
    """Piston's checks run in its order and answer 400 with its exact message."""
    response = await execute(http, payload)
    assert response.status_code == 400
    assert response.json() == {"message": message}


@pytest.mark.parametrize("value", [0, None, "", False, 0.0])
async def test_execute_falsy_limits_are_never_forwarded(
    http: httpx.AsyncClient, fake: FakeDaemon, value: Any
) -> None:
    """D1: 0 and other falsy limits mean "not given" and are never sent to the daemon."""
    fields = {name: value for name in ("run_timeout", "compile_timeout", "run_cpu_time")}
    response = await execute(http, body(**fields))
    assert response.status_code == 200
    sent = fake.last("execute")
    assert not {"run_timeout", "compile_timeout", "run_cpu_time"} & set(sent)


async def test_execute_minus_one_memory_means_configured(
    http: httpx.AsyncClient, fake: FakeDaemon
) -> None:
    """D16: -1 memory limits are accepted although a limit is configured, and not forwarded."""
    response = await execute(http, body(compile_memory_limit=-1, run_memory_limit=-1))
    assert response.status_code == 200
    assert "run_memory_limit" not in fake.last("execute")


async def test_execute_limits_are_forwarded_as_integers(
    http: httpx.AsyncClient, fake: FakeDaemon
) -> None:
    """Given limits reach the daemon as integers; fractions round up (memory stays in bytes)."""
    response = await execute(http, body(run_timeout=1500.2, run_memory_limit=1_000_000))
    assert response.status_code == 200
    sent = fake.last("execute")
    assert sent["run_timeout"] == 1501
    assert sent["run_memory_limit"] == 1_000_000


@pytest.mark.parametrize(
    ("stdin", "expected"),
    [("a", "a\n"), ("a\n", "a\n"), (None, "\n"), ("", "\n"), ("x\ny", "x\ny\n")],
)
async def test_execute_stdin_gets_trailing_newline(
    http: httpx.AsyncClient, stdin: str | None, expected: str
) -> None:
    """D7: stdin gets a newline appended unless it already ends with one."""
    echo = "import sys; sys.stdout.write(sys.stdin.read())"
    payload = body(files=[{"content": echo}])
    if stdin is not None:
        payload["stdin"] = stdin
    answer = (await execute(http, payload)).json()
    assert answer["run"]["stdout"] == expected


async def test_execute_args_reach_the_program(http: httpx.AsyncClient) -> None:
    """args are passed to the program after the main file."""
    program = 'import sys; print(" ".join(sys.argv[1:]))'
    answer = (await execute(http, body(files=[{"content": program}], args=["1", "two"]))).json()
    assert answer["run"]["stdout"] == "1 two\n"


@pytest.mark.parametrize(
    ("file", "content"),
    [
        ({"content": "aGk=", "encoding": "base64"}, b"hi"),
        ({"content": "a G!k", "encoding": "base64"}, b"hi"),
        ({"content": "aGk=garbage", "encoding": "base64"}, b"hi"),
        ({"content": "aGl-_w", "encoding": "base64"}, b"hi~\xff"),
        ({"content": "6869", "encoding": "hex"}, b"hi"),
        ({"content": "6869zz41", "encoding": "hex"}, b"hi"),
        ({"content": "686", "encoding": "hex"}, b"h"),
        ({"content": "héllo", "encoding": "latin1"}, "héllo"),
        ({"content": "héllo", "encoding": 7}, "héllo"),
        ({"content": "bad \ud800 half", "encoding": "utf8"}, "bad \ufffd half"),
    ],
)
async def test_execute_file_encodings_decode_as_node(
    http: httpx.AsyncClient, fake: FakeDaemon, file: dict[str, Any], content: bytes | str
) -> None:
    """Files decode as Node decodes them; unknown encodings mean utf8; text stays text."""
    payload = json.dumps(body(files=[{"content": HELLO}, file]))
    response = await http.post("/api/v2/execute", content=payload, headers=_JSON)
    assert response.status_code == 200
    assert fake.last("execute")["files"][1]["content"] == content


@pytest.mark.parametrize("name", ["", None])
async def test_execute_empty_or_null_name_means_default(
    http: httpx.AsyncClient, fake: FakeDaemon, name: str | None
) -> None:
    """D2: a name that is "" or null is treated as absent (the daemon names it file<i>.code)."""
    response = await execute(http, body(files=[{"name": name, "content": HELLO}]))
    assert response.status_code == 200
    assert "name" not in fake.last("execute")["files"][0]


async def test_execute_unknown_fields_are_ignored(
    http: httpx.AsyncClient, fake: FakeDaemon
) -> None:
    """Unknown fields (top level and per file) are ignored, as Piston does."""
    payload = body(colour="blue", files=[{"content": HELLO, "mode": 7}], output_max_size=1)
    response = await execute(http, payload)
    assert response.status_code == 200
    sent = fake.last("execute")
    assert "colour" not in sent
    assert "output_max_size" not in sent
    assert set(sent["files"][0]) == {"content"}


_JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    "headers", [{"content-type": "text/plain;charset=UTF-8"}, {}, {"content-type": "x/y"}]
)
async def test_execute_json_body_accepted_whatever_content_type(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    """D14: a JSON body is accepted with any or no Content-Type."""
    response = await http.post("/api/v2/execute", content=json.dumps(body()), headers=headers)
    assert response.status_code == 200
    assert response.json()["run"]["stdout"] == "hi\n"


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        ("language=python&version=3", {"content-type": "application/x-www-form-urlencoded"}),
        ("{nope", {"content-type": "text/plain"}),
        ("", {}),
    ],
)
async def test_execute_non_json_body_is_415(
    http: httpx.AsyncClient, content: str, headers: dict[str, str]
) -> None:
    """A body that is not JSON and not declared as JSON answers 415 with Piston's message."""
    response = await http.post("/api/v2/execute", content=content, headers=headers)
    assert response.status_code == 415
    assert response.json() == {"message": "requests must be of type application/json"}


@pytest.mark.parametrize(
    "content", ["{nope", '{"language": NaN}', "[" * 50_000, '{"a": Infinity}', "\xff\xfe"]
)
async def test_execute_malformed_json_is_400_without_stack(
    http: httpx.AsyncClient, content: str
) -> None:
    """D3: malformed JSON declared as JSON answers 400 {"message":"invalid JSON body"}."""
    response = await http.post("/api/v2/execute", content=content.encode("latin-1"), headers=_JSON)
    assert response.status_code == 400
    assert response.json() == {"message": "invalid JSON body"}


async def test_execute_empty_json_body_is_a_validation_failure(http: httpx.AsyncClient) -> None:
    """An empty body declared as JSON is an empty object, as express.json makes it."""
    response = await http.post("/api/v2/execute", content=b"", headers=_JSON)
    assert response.status_code == 400
    assert response.json() == {"message": "language is required as a string"}


async def test_execute_too_large_body_is_413(http: httpx.AsyncClient) -> None:
    """D3: a body over the limit answers 413 {"message":"request body too large"}."""
    big = body(stdin="x" * (MAX_BODY_SIZE + 1))
    response = await http.post("/api/v2/execute", json=big)
    assert response.status_code == 413
    assert response.json() == {"message": "request body too large"}


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_execute_chunked_body_accepted(http: httpx.AsyncClient) -> None:
    """D15: a chunked request body is read whole."""
    data = json.dumps(body(stdin="z" * 1000)).encode()
    response = await http.post("/api/v2/execute", content=_chunks(data, 7), headers=_JSON)
    assert response.status_code == 200
    assert response.json()["language"] == "python"


async def test_execute_chunked_too_large_body_is_413(http: httpx.AsyncClient) -> None:
    """A chunked body over the limit answers 413 once the limit is passed."""
    data = b'{"stdin": "' + b"y" * (MAX_BODY_SIZE + 10) + b'"}'
    response = await http.post("/api/v2/execute", content=_chunks(data, 4096), headers=_JSON)
    assert response.status_code == 413


async def test_execute_trailing_slash_accepted(http: httpx.AsyncClient) -> None:
    """D15: POST /api/v2/execute/ runs the job like /api/v2/execute."""
    response = await http.post("/api/v2/execute/", json=body())
    assert response.status_code == 200


async def test_execute_output_cap_kills_with_sigkill(http: httpx.AsyncClient) -> None:
    """Over the output cap the stage is OL, signal SIGKILL, the prefix kept."""
    answer = (await execute(http, body(files=[{"content": 'print("x" * 5000)'}]))).json()
    assert answer["run"]["status"] == "OL"
    assert answer["run"]["signal"] == "SIGKILL"
    assert answer["run"]["stdout"] == "x" * 1024
    assert answer["run"]["message"] == "stdout length exceeded"


async def test_execute_timeout_reports_sigkill(http: httpx.AsyncClient) -> None:
    """A time limit shows as status TO and signal SIGKILL."""
    answer = (await execute(http, body(files=[{"content": "while True: pass"}]))).json()
    assert answer["run"]["status"] == "TO"
    assert answer["run"]["signal"] == "SIGKILL"
    assert answer["run"]["code"] is None


async def test_execute_memory_is_in_bytes(http: httpx.AsyncClient, fake: FakeDaemon) -> None:
    """D9: memory is the daemon's byte count, unchanged."""
    answer = (await execute(http, body())).json()
    assert answer["run"]["memory"] == 1_234_567


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        (Overloaded("job queue is full"), 503, "job queue is full"),
        (Forbidden("not allowed"), 403, "not allowed"),
        (InternalError("internal error in job 7f3a"), 500, "internal error in job 7f3a"),
        (InternalError(""), 500, "internal error"),
        (RuntimeUnknown("python-3.x runtime is unknown"), 400, "python-3.x runtime is unknown"),
    ],
)
async def test_execute_daemon_errors_map_to_http(
    http: httpx.AsyncClient, fake: FakeDaemon, error: Exception, status: int, message: str
) -> None:
    """Daemon errors become HTTP statuses with a non-empty {"message"}; 503 has Retry-After."""
    fake.errors["execute"] = error  # type: ignore[assignment]
    response = await execute(http, body())
    assert response.status_code == status
    assert response.json() == {"message": message}
    if status == 503:
        assert int(response.headers["retry-after"]) > 0


async def test_daemon_unreachable_is_503(gateway: GatewayStack) -> None:
    """With the daemon unreachable every API call answers 503 {"message"}, no path leaked."""
    async with open_http(gateway.down_url) as http:
        for response in (
            await http.get("/api/v2/runtimes"),
            await http.post("/api/v2/execute", json=body()),
            await http.get("/api/v2/packages"),
        ):
            assert response.status_code == 503
            assert response.json() == {
                "message": "the execution daemon is unavailable, try again later"
            }
            assert "sock" not in response.text
            assert "retry-after" in response.headers


async def test_packages_list_shape(http: httpx.AsyncClient, fake: FakeDaemon) -> None:
    """GET /packages lists language, language_version, installed."""
    response = await http.get("/api/v2/packages")
    assert response.status_code == 200
    assert response.json()[0] == {
        "language": "python",
        "language_version": "3.12.0",
        "installed": True,
    }
    assert list(response.json()[0]) == ["language", "language_version", "installed"]


async def test_packages_install_and_uninstall(http: httpx.AsyncClient, fake: FakeDaemon) -> None:
    """POST installs and DELETE uninstalls, each answering the resolved language and version."""
    install = await http.post("/api/v2/packages", json={"language": "python", "version": "3.10"})
    assert install.status_code == 200
    assert install.json() == {"language": "python", "version": "3.10.0"}
    again = await http.post("/api/v2/packages", json={"language": "python", "version": "3.10"})
    assert again.status_code == 500
    assert again.json() == {"message": "Already installed"}
    remove = await http.request(
        "DELETE", "/api/v2/packages", json={"language": "python", "version": "3.10.0"}
    )
    assert remove.status_code == 200
    assert remove.json() == {"language": "python", "version": "3.10.0"}
    gone = await http.request(
        "DELETE", "/api/v2/packages", json={"language": "python", "version": "3.10.0"}
    )
    assert gone.status_code == 500
    assert gone.json() == {"message": "python-3.10.0 is not installed"}


async def test_packages_unknown_is_404_with_piston_message(
    http: httpx.AsyncClient, fake: FakeDaemon
) -> None:
    """A package not in the index answers 404 with Piston's message."""
    response = await http.post("/api/v2/packages", json={"language": "cobol", "version": "*"})
    assert response.status_code == 404
    assert response.json() == {"message": "Requested package cobol-* does not exist"}


async def test_packages_uninstall_of_a_package_that_exists_nowhere(
    http: httpx.AsyncClient,
) -> None:
    """DELETE of a package in no recipe, no index and not installed: Piston's 404 text."""
    response = await http.request(
        "DELETE", "/api/v2/packages", json={"language": "nosuch", "version": "1.0.0"}
    )
    assert response.status_code == 404
    assert response.json() == {"message": "Requested package nosuch-1.0.0 does not exist"}


async def test_packages_uninstall_of_a_package_not_installed(
    http: httpx.AsyncClient, fake: FakeDaemon
) -> None:
    """DELETE of a package that exists but matches nothing installed: 404 `... is not installed`."""
    fake.errors["packages.uninstall"] = PackageNotFound("python-3.12.0 is not installed")
    response = await http.request(
        "DELETE", "/api/v2/packages", json={"language": "python", "version": "3.12.0"}
    )
    assert response.status_code == 404
    assert response.json() == {"message": "python-3.12.0 is not installed"}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "language is required as a string"),
        ({"language": "python"}, "version is required as a string"),
        ({"language": "python", "version": 3}, "version is required as a string"),
    ],
)
async def test_packages_body_validation(
    http: httpx.AsyncClient, payload: dict[str, Any], message: str
) -> None:
    """Package requests need language and version as strings (400)."""
    response = await http.post("/api/v2/packages", json=payload)
    assert response.status_code == 400
    assert response.json() == {"message": message}


@pytest.mark.parametrize(
    ("error", "status"), [(Forbidden("package changes need the admin group"), 403),
                          (PackageError("Checksum miss-match want: a got: b"), 500)]
)  # fmt: skip
async def test_packages_daemon_errors(
    http: httpx.AsyncClient, fake: FakeDaemon, error: Exception, status: int
) -> None:
    """forbidden answers 403 and package_error 500, each with the daemon's message."""
    fake.errors["packages.install"] = error  # type: ignore[assignment]
    response = await http.post("/api/v2/packages", json={"language": "python", "version": "*"})
    assert response.status_code == status
    assert response.json() == {"message": str(error)}


async def test_openapi_document_served(http: httpx.AsyncClient) -> None:
    """GET /api/v2/openapi.json describes the API's paths."""
    response = await http.get("/api/v2/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert {"/api/v2/execute", "/api/v2/runtimes", "/api/v2/packages"} <= set(document["paths"])


async def test_metrics_count_requests_and_jobs(http: httpx.AsyncClient) -> None:
    """GET /metrics exposes requests by route and code, latency and jobs, in Prometheus text."""
    await execute(http, body())
    await execute(http, {})
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert (
        'pistond_gateway_requests_total{code="200",method="POST",route="/api/v2/execute"}' in text
    )
    assert (
        'pistond_gateway_requests_total{code="400",method="POST",route="/api/v2/execute"}' in text
    )
    assert "pistond_gateway_request_duration_seconds_bucket" in text
    assert 'pistond_gateway_jobs_total{status="ok"}' in text
    assert 'pistond_gateway_jobs_total{status="rejected"}' in text
