"""Submissions and API keys, through the real gateway: a submission belongs to its key.

Rules: one gateway with submissions (SQLite) over the fake daemon, requiring the keys of a
fresh key file; every refusal is compared with the answer for a token that does not exist, so
that another key's token tells its holder nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy
import trio

from pistond.gateway.apikeys import make_key
from pistond.gateway.keyfile import FileKeyStore, write_keys
from pistond.submissions.schema import submissions
from pistond.submissions.tokens import new_token

from .support import HELLO, open_stack

if TYPE_CHECKING:
    from pathlib import Path

    from .support import Stack


def _bearer(text: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {text}"}


async def _wait_done(stack: Stack, token: str, key: str) -> dict[str, Any]:
    """Poll the submission with its own key until it is done."""
    with trio.fail_after(15):
        while True:
            answer = await stack.http.get(f"/api/v2/submissions/{token}", headers=_bearer(key))
            assert answer.status_code == 200, answer.text
            body: dict[str, Any] = answer.json()
            if body["state"] == "done":
                return body
            await trio.sleep(0.02)


async def test_ownership_other_keys_read_a_submission_as_unknown(short_directory: Path) -> None:
    """The key that made a submission reads it (also its result once done); another valid key
    gets exactly the 404 of a token that does not exist; no key at all gets the 401."""
    alice, bob = make_key("alice"), make_key("bob")
    path = short_directory / "keys.toml"
    write_keys(path, {alice.record.id: alice.record, bob.record.id: bob.record})
    async with open_stack(short_directory, keys=FileKeyStore.open(path)) as stack:
        made = await stack.http.post("/api/v2/submissions", json=HELLO, headers=_bearer(alice.text))
        assert made.status_code == 201, made.text
        token = made.json()["token"]
        done = await _wait_done(stack, token, alice.text)
        assert done["result"]["run"]["stdout"] == "hello\n"

        theirs = await stack.http.get(f"/api/v2/submissions/{token}", headers=_bearer(bob.text))
        unknown = await stack.http.get(
            f"/api/v2/submissions/{new_token()}", headers=_bearer(bob.text)
        )
        anonymous = await stack.http.get(f"/api/v2/submissions/{token}")
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json() == unknown.json() == {"message": "submission not found"}
    assert theirs.content == unknown.content
    assert anonymous.status_code == 401
    assert token not in theirs.text


async def test_ownership_batches_show_only_the_callers_own(short_directory: Path) -> None:
    """A batch made with one key is stored with that key's id; a batch read with another key
    holds null for those tokens and the reader's own submissions where it has them."""
    alice, bob = make_key("alice"), make_key("bob")
    path = short_directory / "keys.toml"
    write_keys(path, {alice.record.id: alice.record, bob.record.id: bob.record})
    async with open_stack(short_directory, keys=FileKeyStore.open(path)) as stack:
        batch = await stack.http.post(
            "/api/v2/submissions/batch",
            json={"submissions": [HELLO, HELLO, HELLO]},
            headers=_bearer(alice.text),
        )
        assert batch.status_code == 201, batch.text
        hers = [item["token"] for item in batch.json()]
        own = await stack.http.post("/api/v2/submissions", json=HELLO, headers=_bearer(bob.text))
        his = own.json()["token"]
        tokens = ",".join([*hers, his])
        read_by_bob = await stack.http.get(
            f"/api/v2/submissions/batch?tokens={tokens}", headers=_bearer(bob.text)
        )
        read_by_alice = await stack.http.get(
            f"/api/v2/submissions/batch?tokens={tokens}", headers=_bearer(alice.text)
        )
        with stack.service.store.database.reading() as connection:
            rows = connection.execute(
                sqlalchemy.select(submissions.c.token, submissions.c.owner)
            ).all()
        owners = {row.token: row.owner for row in rows}
    assert read_by_bob.status_code == read_by_alice.status_code == 200
    assert [item and item["token"] for item in read_by_bob.json()] == [None, None, None, his]
    assert [item and item["token"] for item in read_by_alice.json()] == [*hers, None]
    assert owners == {**dict.fromkeys(hers, alice.record.id), his: bob.record.id}


async def test_ownership_keys_off_submissions_have_no_owner(short_directory: Path) -> None:
    """Without keys (Piston's default) any holder of a token reads it, and nothing is stored
    as its owner."""
    async with open_stack(short_directory) as stack:
        made = await stack.http.post("/api/v2/submissions", json=HELLO)
        token = made.json()["token"]
        again = await stack.http.get(f"/api/v2/submissions/{token}")
        with stack.service.store.database.reading() as connection:
            owner = connection.execute(
                sqlalchemy.select(submissions.c.owner).where(submissions.c.token == token)
            ).scalar_one()
    assert again.status_code == 200
    assert again.json()["token"] == token
    assert owner is None
