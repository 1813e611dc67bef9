"""pistond.gateway.auth through a real gateway: keys required, 401 and 403, per-key policies.

Rules: one gateway per module over the fake daemon, with a key file of four keys (plain, with
the packages right, with limits, revoked); every answer is checked for its status, its JSON
body and its headers; WebSocket refusals are HTTP answers to the handshake.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import attrs
import httpx
import pytest
import trio
import trio_websocket

from pistond.gateway.apikeys import KeyPolicy, make_key
from pistond.gateway.auth import (
    INVALID_KEY,
    KEY_REQUIRED,
    NO_PACKAGES_RIGHT,
    REVOKED_KEY,
    Right,
    presented_key,
    required_right,
)
from pistond.gateway.keyfile import write_keys

from .conftest import StackSettings, start_stack

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from .conftest import GatewayStack

HELLO = {"language": "python", "version": "3.12.0", "files": [{"content": 'print("hi")'}]}
SLEEP = {
    "language": "python",
    "version": "3.12.0",
    "files": [{"content": "import time; time.sleep(1)"}],
}


@attrs.frozen
class Keyed:
    """The keyed gateway and its keys' texts."""

    stack: GatewayStack
    keys: dict[str, str]
    ids: dict[str, str]


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keyed]:
    """A gateway requiring the keys of a fresh key file."""
    made = {
        "plain": make_key("plain"),
        "admin": make_key("admin", KeyPolicy(packages=True)),
        "limited": make_key(
            "limited", KeyPolicy(concurrent_jobs=1, max_limits={"run_timeout": 1000})
        ),
        "revoked": make_key("revoked"),
    }
    records = {new.record.id: new.record for new in made.values()}
    revoked = made["revoked"].record
    records[revoked.id] = attrs.evolve(revoked, revoked=time.time())
    path: Path = tmp_path_factory.mktemp("keys") / "api-keys.toml"
    write_keys(path, records)
    stack = start_stack(None, StackSettings(keys_file=path))
    try:
        yield Keyed(
            stack,
            {name: new.text for name, new in made.items()},
            {name: new.record.id for name, new in made.items()},
        )
    finally:
        stack.stop()


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _post(url: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        return await client.post("/api/v2/execute", json=body, headers=headers)


def test_auth_routes_need_a_key_except_the_open_ones() -> None:
    """Every route needs a key but the banner, playground, health, info and OpenAPI; package
    changes need the packages right; listing packages needs a key."""
    for path in ("/", "/playground", "/playground/assets/x.js", "/api/v2/health", "/api/v2/info/"):
        assert required_right("GET", path) is Right.OPEN
    for path in ("/api/v2/runtimes", "/api/v2/packages", "/status", "/metrics", "/nowhere"):
        assert required_right("GET", path) is Right.KEY
    assert required_right("POST", "/api/v2/execute") is Right.KEY
    assert required_right("POST", "/api/v2/packages/") is Right.PACKAGES
    assert required_right("DELETE", "/api/v2/packages") is Right.PACKAGES


def test_auth_key_travels_as_bearer_or_bare() -> None:
    """``Authorization: Bearer <key>`` (any case) and Piston's bare ``Authorization: <key>``."""
    assert presented_key(httpx.Headers({"authorization": "Bearer abc"})) == "abc"
    assert presented_key(httpx.Headers({"authorization": "bearer  abc "})) == "abc"
    assert presented_key(httpx.Headers({"authorization": "abc"})) == "abc"
    assert presented_key(httpx.Headers({})) is None


async def test_auth_missing_key_is_401_with_a_challenge(keyed: Keyed) -> None:
    """No key: 401, the message saying how to send one, and WWW-Authenticate."""
    with trio.fail_after(10):
        response = await _post(keyed.stack.url, HELLO)
    assert response.status_code == 401
    assert response.json() == {"message": KEY_REQUIRED}
    assert response.headers["www-authenticate"] == 'Bearer realm="pistond"'


@pytest.mark.parametrize(
    "presented",
    ["nonsense", "Bearer pistond_000000000000_" + "A" * 43, "Basic dXNlcjpwdw=="],
    ids=["not-a-key", "unknown-id", "basic"],
)
async def test_auth_invalid_key_is_401(keyed: Keyed, presented: str) -> None:
    """A key that is not one: 401 ``invalid API key``, ``error="invalid_token"``."""
    with trio.fail_after(10):
        response = await _post(keyed.stack.url, HELLO, {"Authorization": presented})
    assert response.status_code == 401
    assert response.json() == {"message": INVALID_KEY}
    assert response.headers["www-authenticate"] == 'Bearer realm="pistond", error="invalid_token"'


async def test_auth_wrong_secret_for_a_known_id_is_401(keyed: Keyed) -> None:
    """The right id with another secret is refused like any other bad key."""
    forged = keyed.keys["plain"][:-4] + (
        "AAAA" if not keyed.keys["plain"].endswith("AAAA") else "BBBB"
    )
    with trio.fail_after(10):
        response = await _post(keyed.stack.url, HELLO, _bearer(forged))
    assert (response.status_code, response.json()) == (401, {"message": INVALID_KEY})


async def test_auth_revoked_key_is_401(keyed: Keyed) -> None:
    """A revoked key: 401 ``this API key was revoked``."""
    with trio.fail_after(10):
        response = await _post(keyed.stack.url, HELLO, _bearer(keyed.keys["revoked"]))
    assert (response.status_code, response.json()) == (401, {"message": REVOKED_KEY})


async def test_auth_valid_key_runs_as_bearer_and_bare(keyed: Keyed) -> None:
    """A valid key runs the job, sent either way."""
    with trio.fail_after(10):
        bearer = await _post(keyed.stack.url, HELLO, _bearer(keyed.keys["plain"]))
        bare = await _post(keyed.stack.url, HELLO, {"Authorization": keyed.keys["plain"]})
    for response in (bearer, bare):
        assert response.status_code == 200
        assert response.json()["run"]["stdout"] == "hi\n"


async def test_auth_package_routes_are_never_anonymous(keyed: Keyed) -> None:
    """Listing packages needs a key; installing needs the packages right (403 without)."""
    body = {"language": "python", "version": "3.10.0"}
    async with httpx.AsyncClient(base_url=keyed.stack.url, timeout=10) as client:
        with trio.fail_after(10):
            anonymous_list = await client.get("/api/v2/packages")
            anonymous_install = await client.post("/api/v2/packages", json=body)
            listed = await client.get("/api/v2/packages", headers=_bearer(keyed.keys["plain"]))
            refused = await client.post(
                "/api/v2/packages", json=body, headers=_bearer(keyed.keys["plain"])
            )
            removal = await client.request(
                "DELETE", "/api/v2/packages", json=body, headers=_bearer(keyed.keys["plain"])
            )
            allowed = await client.post(
                "/api/v2/packages", json=body, headers=_bearer(keyed.keys["admin"])
            )
    assert anonymous_list.status_code == 401
    assert anonymous_install.status_code == 401
    assert listed.status_code == 200
    assert (refused.status_code, refused.json()) == (403, {"message": NO_PACKAGES_RIGHT})
    assert (removal.status_code, removal.json()) == (403, {"message": NO_PACKAGES_RIGHT})
    assert allowed.status_code == 200
    assert allowed.json() == {"language": "python", "version": "3.10.0"}


async def test_auth_open_routes_need_no_key(keyed: Keyed) -> None:
    """The banner, health, information and OpenAPI answer without a key; runtimes do not."""
    async with httpx.AsyncClient(base_url=keyed.stack.url, timeout=10) as client:
        with trio.fail_after(10):
            answers = {
                path: await client.get(path)
                for path in ("/", "/api/v2/health", "/api/v2/info", "/api/v2/openapi.json")
            }
            runtimes = await client.get("/api/v2/runtimes")
            unknown = await client.get("/api/v2/nowhere")
    assert {path: answer.status_code for path, answer in answers.items()} == dict.fromkeys(
        answers, 200
    )
    assert runtimes.status_code == 401
    assert unknown.status_code == 401


async def test_auth_info_shows_the_callers_own_policy(keyed: Keyed) -> None:
    """/api/v2/info names the presented key's id and policy, never its digest."""
    async with httpx.AsyncClient(base_url=keyed.stack.url, timeout=10) as client:
        with trio.fail_after(10):
            mine = await client.get("/api/v2/info", headers=_bearer(keyed.keys["limited"]))
            anonymous = await client.get("/api/v2/info")
    assert mine.json()["key"] == {
        "id": keyed.ids["limited"],
        "name": "limited",
        "concurrent_jobs": 1,
        "max_limits": {"run_timeout": 1000},
        "packages": False,
    }
    assert mine.json()["gateway"]["api_keys"] is True
    assert "key" not in anonymous.json()
    assert keyed.keys["limited"] not in mine.text


async def test_auth_key_limits_cap_and_fill_request_limits(keyed: Keyed) -> None:
    """Above the key's cap: 403; below: as asked; left out: the key's cap is sent."""
    fake = keyed.stack.fake
    assert fake is not None
    key = _bearer(keyed.keys["limited"])
    with trio.fail_after(10):
        above = await _post(keyed.stack.url, {**HELLO, "run_timeout": 2000}, key)
        below = await _post(keyed.stack.url, {**HELLO, "run_timeout": 500}, key)
        asked_below = fake.last("execute")["run_timeout"]
        unset = await _post(keyed.stack.url, HELLO, key)
        filled = fake.last("execute")["run_timeout"]
        other = await _post(keyed.stack.url, HELLO, _bearer(keyed.keys["plain"]))
    assert (above.status_code, above.json()) == (
        403,
        {"message": "this API key may not request run_timeout above 1000"},
    )
    assert (below.status_code, asked_below) == (200, 500)
    assert (unset.status_code, filled) == (200, 1000)
    assert other.status_code == 200
    assert "run_timeout" not in fake.last("execute")


async def test_auth_key_concurrency_is_its_own(keyed: Keyed) -> None:
    """A key with concurrent_jobs 1 gets 429 for a second job at once; other keys do not."""
    key = _bearer(keyed.keys["limited"])
    answers: dict[str, httpx.Response] = {}

    async def run(name: str, headers: dict[str, str]) -> None:
        answers[name] = await _post(keyed.stack.url, SLEEP, headers)

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "first", key)
            await trio.sleep(0.3)
            nursery.start_soon(run, "other key", _bearer(keyed.keys["plain"]))
            second = await _post(keyed.stack.url, HELLO, key)
    assert (second.status_code, second.json()) == (
        429,
        {"message": "too many jobs from this client (at most 1)"},
    )
    assert answers["first"].status_code == 200
    assert answers["other key"].status_code == 200


async def _handshake(url: str, headers: list[tuple[str, str]]) -> trio_websocket.ConnectionRejected:
    with pytest.raises(trio_websocket.ConnectionRejected) as rejected:
        async with trio_websocket.open_websocket_url(url, extra_headers=headers):
            pass
    return rejected.value


async def test_auth_websocket_needs_a_key(keyed: Keyed) -> None:
    """A handshake without a key, or with a bad one, gets the HTTP 401 answer; with a key
    the session runs."""
    with trio.fail_after(10):
        missing = await _handshake(keyed.stack.ws_url, [])
        bad = await _handshake(keyed.stack.ws_url, [("Authorization", "Bearer nonsense")])
        async with trio_websocket.open_websocket_url(
            keyed.stack.ws_url, extra_headers=[("Authorization", keyed.keys["plain"])]
        ) as websocket:
            await websocket.send_message(
                '{"type": "init", "language": "python", "version": "3.12.0", '
                '"files": [{"content": "print(\\"hi\\")"}]}'
            )
            first = await websocket.get_message()
    assert missing.status_code == 401
    assert missing.body is not None
    assert b'"an API key is required' in missing.body
    assert bad.status_code == 401
    assert bad.body is not None
    assert INVALID_KEY.encode() in bad.body
    assert json.loads(first)["type"] == "runtime"


async def test_auth_keys_off_ignores_authorization(http: httpx.AsyncClient) -> None:
    """Without keys (the default), a client sending an Authorization header runs as before."""
    with trio.fail_after(10):
        response = await http.post(
            "/api/v2/execute",
            json={**HELLO, "version": "*"},
            headers={"Authorization": "some-old-emkc-key"},
        )
    assert response.status_code == 200
    assert response.json()["language"] == "python"
