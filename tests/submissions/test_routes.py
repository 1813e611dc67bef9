"""pistond.submissions.routes: /api/v2/submissions over HTTP, in front of the fake daemon.

Rules: the real app and server on 127.0.0.1, port 0; SQLite in a temporary directory unless a
test says otherwise; no name is resolved through DNS (the stack's resolver knows localhost).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pytest
import schemathesis
import trio
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from pistond.gateway.openapi import openapi_document
from pistond.submissions.addresses import CallbackPolicy
from pistond.submissions.tokens import is_token

from .support import HELLO, eventually, hosts_only, open_stack, wait_done

if TYPE_CHECKING:
    from pathlib import Path

    from .support import Stack

SLEEPY = {**HELLO, "files": [{"content": "import time; time.sleep(2)"}]}


async def test_routes_submit_then_poll_gives_the_execute_answer(short_directory: Path) -> None:
    """POST answers 201 at once with a queued submission, its token and Location; GET later
    has state done and exactly the answer POST /api/v2/execute gives for the same body."""
    async with open_stack(short_directory) as stack:
        answer = await stack.http.post("/api/v2/submissions", json=HELLO)
        assert answer.status_code == 201, answer.text
        submission = answer.json()
        assert is_token(submission["token"])
        assert answer.headers["location"] == f"/api/v2/submissions/{submission['token']}"
        assert submission["state"] in ("queued", "running")
        assert submission["result"] is None
        done = await wait_done(stack.http, submission["token"])
        direct = (await stack.http.post("/api/v2/execute", json=HELLO)).json()
    assert done["result"] == direct
    assert done["result"]["run"]["stdout"] == "hello\n"
    assert (done["error"], done["truncated"], done["callback"]) == (None, False, None)
    assert done["created_at"] <= done["started_at"] <= done["finished_at"]
    assert done["finished_at"].endswith("Z")


async def test_routes_wait_true_answers_once_done(short_directory: Path) -> None:
    """?wait=true answers with the result when the job is quicker than the longest wait."""
    async with open_stack(short_directory) as stack:
        answer = await stack.http.post("/api/v2/submissions?wait=true", json=HELLO)
    assert answer.status_code == 201
    assert answer.json()["state"] == "done"
    assert answer.json()["result"]["run"]["stdout"] == "hello\n"


async def test_routes_wait_is_bounded(short_directory: Path) -> None:
    """A job longer than PISTON_SUBMISSION_MAX_WAIT gets its current state, then finishes."""
    async with open_stack(short_directory, max_wait=0.3) as stack:
        start = trio.current_time()
        answer = await stack.http.post("/api/v2/submissions?wait=true", json=SLEEPY)
        waited = trio.current_time() - start
        assert answer.status_code == 201
        assert answer.json()["state"] == "running"
        assert 0.3 <= waited < 1.5
        await wait_done(stack.http, answer.json()["token"])


@pytest.mark.parametrize("value", ["maybe", "2"])
async def test_routes_wait_must_be_a_flag(short_directory: Path, value: str) -> None:
    """wait takes true or false."""
    async with open_stack(short_directory) as stack:
        answer = await stack.http.post(f"/api/v2/submissions?wait={value}", json=HELLO)
    assert (answer.status_code, answer.json()) == (400, {"message": "wait must be true or false"})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "language is required as a string"),
        ({"language": "python"}, "version is required as a string"),
        ({**HELLO, "files": "x"}, "files is required as an array"),
        ({**HELLO, "files": [{"content": 1}]}, "files[0].content is required as a string"),
        ({**HELLO, "language": "cobol"}, "cobol-3.x runtime is unknown"),
        ({**HELLO, "files": [{"name": "../x", "content": "print(1)"}]},
         'File path "../x" tries to escape parent directory'),
        ({**HELLO, "stdin": 5}, "stdin must be a string"),
        ({**HELLO, "run_timeout": "fast"}, "If specified, run_timeout must be a number"),
        ({**HELLO, "run_timeout": -5}, "run_timeout must be non-negative"),
        ({**HELLO, "callback_url": "ftp://x/"}, "callback_url must be an http:// or https:// URL"),
        ({**HELLO, "callback_url": "http://10.0.0.1/"},
         "callback_url is not an address this server may call back (see PISTON_CALLBACK_ALLOW)"),
        ({**HELLO, "callback_url": "http://hooks.internal/"},
         "callback_url is not an address this server may call back (see PISTON_CALLBACK_ALLOW)"),
    ],
)  # fmt: skip
async def test_routes_submission_checked_when_accepted(
    short_directory: Path, body: dict[str, Any], message: str
) -> None:
    """A bad submission is refused at once with Piston's (or pistond's) message; none is stored."""
    async with open_stack(short_directory) as stack:
        answer = await stack.http.post("/api/v2/submissions", json=body)
        assert (answer.status_code, answer.json()) == (400, {"message": message})
        counts = await stack.service.store.counts()
    assert sum(counts.values()) == 0


async def test_routes_limits_above_the_configured_are_the_daemons_to_refuse(
    short_directory: Path,
) -> None:
    """A limit above the configured one (which only the daemon knows) is accepted, and the
    submission is done with the daemon's refusal as its error."""
    async with open_stack(short_directory) as stack:
        answer = await stack.http.post("/api/v2/submissions", json={**HELLO, "run_timeout": 10**7})
        done = await wait_done(stack.http, answer.json()["token"])
    assert done["result"] is None
    assert done["error"] == {
        "status": 400,
        "message": "run_timeout cannot exceed the configured limit of 3000",
    }


async def test_routes_tests_reach_the_daemon(short_directory: Path) -> None:
    """tests and compare reach execute; each test's stdin ends in a newline as the body's."""
    body = {
        **HELLO,
        "stdin": "all",
        "tests": [{"stdin": "1 2", "expected_output": "3\n", "name": "sum"}, {"args": ["x"]}],
        "compare": "trailing_whitespace",
    }
    async with open_stack(short_directory) as stack:
        answer = await stack.http.post("/api/v2/submissions?wait=true", json=body)
        assert answer.status_code == 201, answer.text
        sent = stack.fake.last("execute")
    assert sent["tests"] == [
        {"stdin": "1 2\n", "expected_output": "3\n", "name": "sum"},
        {"args": ["x"]},
    ]
    assert (sent["stdin"], sent["compare"]) == ("all\n", "trailing_whitespace")


async def test_routes_bad_tests_are_refused(short_directory: Path) -> None:
    """A malformed tests field is refused when accepted, in the daemon's words."""
    async with open_stack(short_directory) as stack:
        answer = await stack.http.post("/api/v2/submissions", json={**HELLO, "tests": [{"x": 1}]})
    assert answer.status_code == 400
    assert answer.json() == {"message": "tests[0] has an unknown field 'x'"}


async def test_routes_callbacks_disabled(short_directory: Path) -> None:
    """With PISTON_CALLBACK_ALLOW=none, any callback_url is refused."""
    async with open_stack(short_directory, policy=CallbackPolicy.from_entries(["none"])) as stack:
        answer = await stack.http.post(
            "/api/v2/submissions", json={**HELLO, "callback_url": "http://127.0.0.1:9/"}
        )
    assert answer.json() == {
        "message": "callback_url is not accepted: this server makes no callbacks"
    }


@pytest.mark.parametrize(
    "path",
    [
        "/api/v2/submissions/" + "0" * 32,
        "/api/v2/submissions/not-a-token",
        "/api/v2/submissions/" + "A" * 32,
        "/api/v2/submissions/" + "0" * 32 + "/",
    ],
)
async def test_routes_unknown_tokens_are_not_found(short_directory: Path, path: str) -> None:
    """Anything but an existing token answers the same 404."""
    async with open_stack(short_directory) as stack:
        await stack.http.post("/api/v2/submissions", json=HELLO)
        answer = await stack.http.get(path)
    assert (answer.status_code, answer.json()) == (404, {"message": "submission not found"})


async def test_routes_batch_of_50(short_directory: Path) -> None:
    """A batch of 50 answers 50 submissions in order; all of them get done; GET batch reads
    them, with null for tokens that are not submissions."""
    bodies = [{**HELLO, "files": [{"content": f"print('job {n}')"}]} for n in range(50)]
    async with open_stack(short_directory) as stack:
        answer = await stack.http.post("/api/v2/submissions/batch", json={"submissions": bodies})
        assert answer.status_code == 201, answer.text
        tokens = [item["token"] for item in answer.json()]
        assert len(set(tokens)) == 50

        async def all_done() -> bool:
            read = await stack.http.get(
                "/api/v2/submissions/batch", params={"tokens": ",".join(tokens)}
            )
            return all(item["state"] == "done" for item in read.json())

        await eventually(all_done, seconds=30, interval=0.1)
        read = await stack.http.get(
            "/api/v2/submissions/batch",
            params={"tokens": ",".join([tokens[0], "0" * 32, "junk", tokens[49]])},
        )
        everything = await stack.http.get(
            "/api/v2/submissions/batch", params={"tokens": ",".join(tokens)}
        )
    outputs = [item["result"]["run"]["stdout"] for item in everything.json()]
    assert outputs == [f"job {n}\n" for n in range(50)]
    first, unknown, junk, last = read.json()
    assert (first["token"], unknown, junk, last["token"]) == (tokens[0], None, None, tokens[49])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "submissions is required as a non-empty array"),
        ({"submissions": []}, "submissions is required as a non-empty array"),
        ({"submissions": [HELLO] * 6}, "submissions cannot hold more than 5 submissions"),
        ({"submissions": [HELLO, {**HELLO, "language": 3}]},
         "submissions[1]: language is required as a string"),
    ],
)  # fmt: skip
async def test_routes_batch_all_or_none(
    short_directory: Path, body: dict[str, Any], message: str
) -> None:
    """A batch with a bad (or one too many) submission is refused whole."""
    async with open_stack(short_directory, max_batch=5) as stack:
        answer = await stack.http.post("/api/v2/submissions/batch", json=body)
        assert (answer.status_code, answer.json()) == (400, {"message": message})
        assert sum((await stack.service.store.counts()).values()) == 0


async def test_routes_batch_read_needs_tokens(short_directory: Path) -> None:
    """GET batch without tokens, or with too many, is a 400."""
    async with open_stack(short_directory, max_batch=2) as stack:
        missing = await stack.http.get("/api/v2/submissions/batch")
        many = await stack.http.get("/api/v2/submissions/batch", params={"tokens": "a,b,c"})
    assert missing.status_code == many.status_code == 400
    assert many.json() == {"message": "tokens cannot hold more than 2 tokens"}


async def test_routes_queue_full_is_503(short_directory: Path) -> None:
    """Beyond PISTON_SUBMISSION_MAX_PENDING queued or running submissions: 503, Retry-After."""
    async with open_stack(short_directory, max_pending=2, workers=0) as stack:
        for _ in range(2):
            assert (await stack.http.post("/api/v2/submissions", json=HELLO)).status_code == 201
        answer = await stack.http.post("/api/v2/submissions", json=HELLO)
    assert answer.status_code == 503
    assert answer.json() == {"message": "the submission queue is full, try again later"}
    assert answer.headers["retry-after"]


async def test_routes_database_unreachable_is_503(short_directory: Path) -> None:
    """A configured database that cannot be reached: 503 for submissions, Piston's API works."""
    url = "postgresql://nobody:secret@127.0.0.1:9/none"
    async with open_stack(short_directory, url=url) as stack:
        await eventually(lambda: stack.service._open_failed)
        answer = await stack.http.post("/api/v2/submissions", json=HELLO)
        read = await stack.http.get("/api/v2/submissions/" + "0" * 32)
        direct = await stack.http.post("/api/v2/execute", json=HELLO)
    assert (answer.status_code, read.status_code, direct.status_code) == (503, 503, 200)
    assert answer.json() == {"message": "the submission database is unavailable, try again later"}


async def test_routes_default_database_is_created_by_the_first_submission(
    short_directory: Path,
) -> None:
    """A gateway that never takes a submission writes no database; reads before the first
    submission find nothing; the first submission creates the SQLite file."""
    database = short_directory / "submissions.sqlite3"
    async with open_stack(short_directory) as stack:
        read = await stack.http.get("/api/v2/submissions/" + "0" * 32)
        assert read.status_code == 404
        assert not database.exists()
        answer = await stack.http.post("/api/v2/submissions", json=HELLO)
        assert answer.status_code == 201
        assert database.exists()
        await wait_done(stack.http, answer.json()["token"])


async def test_routes_stored_output_is_capped(short_directory: Path) -> None:
    """Output beyond PISTON_SUBMISSION_MAX_RESULT_SIZE is cut (prefix kept) and flagged."""
    body = {**HELLO, "files": [{"content": "print('x' * 800)"}], "output_max_size": 1000}
    async with open_stack(short_directory, max_result_size=100) as stack:
        answer = await stack.http.post("/api/v2/submissions?wait=true", json=body)
    submission = answer.json()
    assert submission["truncated"] is True
    run = submission["result"]["run"]
    assert run["stdout"] == "x" * 50
    assert run["status"] is None


async def test_routes_logs_hold_no_source_output_or_token(
    short_directory: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Stored source, output and tokens never reach the log, even at DEBUG."""
    caplog.set_level(logging.DEBUG)
    body = {**HELLO, "files": [{"content": "print('SECRET-OUTPUT-31337')"}], "stdin": "STDIN-42"}
    async with open_stack(short_directory) as stack:
        answer = await stack.http.post("/api/v2/submissions?wait=true", json=body)
        refused = await stack.http.post(
            "/api/v2/submissions", json={**body, "language": "cobol-SOURCE-7"}
        )
    assert answer.json()["result"]["run"]["stdout"] == "SECRET-OUTPUT-31337\n"
    assert refused.status_code == 400
    server_side = "\n".join(
        record.getMessage()
        for record in caplog.records
        if record.name.split(".")[0] in ("pistond", "hypercorn", "sqlalchemy", "alembic")
    )
    assert "submission 1: done" in server_side
    for secret in ("SECRET-OUTPUT-31337", "STDIN-42", "SOURCE-7", answer.json()["token"]):
        assert secret not in server_side


async def test_routes_openapi_describes_submissions(short_directory: Path) -> None:
    """With submissions served, the OpenAPI document lists their routes."""
    async with open_stack(short_directory) as stack:
        document = (await stack.http.get("/api/v2/openapi.json")).json()
    operations = {(path, method) for path, item in document["paths"].items() for method in item}
    assert {
        ("/api/v2/submissions", "post"),
        ("/api/v2/submissions/batch", "post"),
        ("/api/v2/submissions/batch", "get"),
        ("/api/v2/submissions/{token}", "get"),
    } <= operations
    assert document == openapi_document(submissions=True)


_schema = schemathesis.openapi.from_dict(openapi_document(submissions=True)).include(
    path_regex="^/api/v2/submissions"
)


@pytest.fixture(scope="module")
def fuzz_stack() -> Any:
    """A stack in its own thread for schemathesis' synchronous calls."""
    import queue  # noqa: PLC0415  (only this fixture runs a loop in a thread)
    import shutil  # noqa: PLC0415
    import tempfile  # noqa: PLC0415
    import threading  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    directory = Path(tempfile.mkdtemp(prefix="pistond-fuzz-", dir="/tmp"))
    ready: queue.Queue[Any] = queue.Queue()

    async def serve() -> None:
        policy = CallbackPolicy.from_entries(["127.0.0.0/8"], resolver=hosts_only)
        with trio.CancelScope() as scope:
            async with open_stack(directory, policy=policy, max_wait=1.0) as stack:
                ready.put((stack, trio.lowlevel.current_trio_token(), scope))
                await trio.sleep_forever()

    thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    thread.start()
    stack, token, scope = ready.get(timeout=30)
    yield stack
    trio.from_thread.run_sync(scope.cancel, trio_token=token)
    thread.join(10)
    shutil.rmtree(directory, ignore_errors=True)


@_schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_routes_fuzz_never_fails_the_server(case: Any, fuzz_stack: Stack) -> None:
    """Generated submission requests never get a 5xx and always conform to the document."""
    response = case.call_and_validate(
        base_url=fuzz_stack.url, timeout=10, excluded_checks=[positive_data_acceptance]
    )
    assert response.status_code < 500, response.text
