"""API keys at rest: their shape and digest, the key file, the database table and
``pistond-gateway keys add/list/revoke``.

Rules: files under tmp_path; the database on SQLite and on a real PostgreSQL (one server for
the module, started by the first test that needs it); the CLI is run through
``pistond.gateway.__main__.main`` with its own environment, and its stdout is the key alone.
"""

from __future__ import annotations

import io
import json
import os
import stat
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import pytest
import trio

from pistond.gateway import keyadmin
from pistond.gateway.__main__ import main
from pistond.gateway.apikeys import (
    ApiKey,
    KeyPolicy,
    KeyRecordError,
    KeyStoreUnavailable,
    digest,
    key_id,
    make_key,
)
from pistond.gateway.keydb import DatabaseKeyStore, add_key, get_key, list_keys, revoke_key
from pistond.gateway.keyfile import FileKeyStore, read_keys, render_keys, write_keys
from pistond.submissions.database import database_url, open_database
from pistond.testing.postgres import PostgresServer

if TYPE_CHECKING:
    from collections.abc import Iterator


def test_keys_have_a_public_id_and_only_their_digest_is_kept() -> None:
    """``pistond_<12 hex>_<43 base64url>``; the record holds the SHA-256, which matches."""
    made = make_key("editor")
    assert key_id(made.text) == made.record.id
    assert made.text.startswith(f"pistond_{made.record.id}_")
    assert len(made.text) == len("pistond_") + 12 + 1 + 43
    assert made.record.digest == digest(made.text)
    assert made.text not in repr(made.record)
    assert made.record.matches(made.text)
    assert not made.record.matches(made.text[:-1] + ("A" if made.text[-1] != "A" else "B"))
    assert key_id("pistond_zz_short") is None
    assert make_key().record.id != made.record.id


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"jobs_per_minute": -1}, "jobs_per_minute must be a non-negative integer, got -1"),
        ({"burst": 0}, "burst must be a positive integer, got 0"),
        ({"max_limits": {"run_timeout": 0}}, "max_limits: run_timeout must be a positive"),
        ({"max_limits": {"max_process_count": 5}}, "max_limits: 'max_process_count' is not one"),
    ],
)
def test_keys_policy_is_checked(policy: dict[str, object], message: str) -> None:
    """Bad policies are refused with the field named."""
    with pytest.raises(KeyRecordError, match=message):
        KeyPolicy(**policy)  # type: ignore[arg-type]


def test_keys_file_round_trip_and_mode(tmp_path: Path) -> None:
    """A written file reads back the same keys; a new file is 0640; no key text in it."""
    made = make_key("a", KeyPolicy(jobs_per_minute=6, max_limits={"run_timeout": 1000}))
    path = tmp_path / "etc" / "api-keys.toml"
    write_keys(path, {made.record.id: made.record})
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert made.text not in path.read_text()
    (back,) = read_keys(path).values()
    assert back == attrs.evolve(made.record, created=float(round(made.record.created)))
    os.chmod(path, 0o600)
    write_keys(path, {})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # an existing file keeps its mode
    assert read_keys(tmp_path / "missing.toml") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("keys = 1", "keys must be a table"),
        ("[other]", "unknown setting 'other'"),
        ("[keys.nothex]\nsha256 = 'x'", "keys.nothex: a key id is 12 lower-case hex digits"),
        ("[keys.0123456789ab]\nname = 'x'", "keys.0123456789ab: sha256 is required"),
        (
            "[keys.0123456789ab]\nsha256 = '" + "0" * 64 + "'\nrate = 5",
            "keys.0123456789ab: unknown setting 'rate'",
        ),
        ("[keys", "not valid TOML"),
    ],
)
def test_keys_file_errors_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    """An invalid file is refused with its path and the key at fault."""
    path = tmp_path / "api-keys.toml"
    path.write_text(text)
    with pytest.raises(KeyRecordError) as refused:
        read_keys(path)
    assert str(refused.value).startswith(str(path))
    assert message in str(refused.value)


async def test_keys_file_store_reloads_and_keeps_the_last_valid_keys(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """An added key counts after the file changes; a broken file keeps the previous keys."""
    path = tmp_path / "api-keys.toml"
    first, second = make_key("first"), make_key("second")
    write_keys(path, {first.record.id: first.record})
    store = FileKeyStore.open(path)
    assert (await store.find(first.record.id)) is not None
    write_keys(path, {first.record.id: first.record, second.record.id: second.record})
    assert await store.find(second.record.id) is None  # within the reload interval
    await trio.sleep(1.1)
    assert (await store.find(second.record.id)) is not None
    path.write_text("[keys")
    await trio.sleep(1.1)
    assert (await store.find(second.record.id)) is not None
    path.unlink()
    await trio.sleep(1.1)
    assert await store.find(first.record.id) is None  # no file: no keys


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the module."""
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def url_text(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database's URL of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/keys.sqlite3"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(f"keys_{os.getpid()}_{abs(hash(str(tmp_path))) % 10**8}")


def test_keys_database_add_get_list_revoke(url_text: str, tmp_path: Path) -> None:
    """Keys stored in the submissions database come back as they went in; revoking twice
    reports the second as not done."""
    database = open_database(database_url(url_text, tmp_path))
    try:
        made = make_key("db", KeyPolicy(concurrent_jobs=2, packages=True))
        add_key(database, made.record)
        assert get_key(database, made.record.id) == made.record
        assert list_keys(database) == [made.record]
        assert revoke_key(database, made.record.id, now=5.0)
        assert not revoke_key(database, made.record.id)
        assert get_key(database, made.record.id) == attrs.evolve(made.record, revoked=5.0)
        assert get_key(database, "0" * 12) is None
    finally:
        database.close()


async def test_keys_database_store_caches_and_reports_unavailable(
    url_text: str, tmp_path: Path
) -> None:
    """The store finds keys through its cache and says unavailable when it cannot open."""
    url = database_url(url_text, tmp_path)
    database = open_database(url)
    made = make_key("cached")
    add_key(database, made.record)
    store = DatabaseKeyStore(url)
    try:
        assert await store.find(made.record.id) == made.record
        revoke_key(database, made.record.id)
        assert (await store.find(made.record.id)) == made.record  # cached for a few seconds
        await store.check()
    finally:
        store.close()
        database.close()


async def test_keys_database_store_down_is_unavailable(tmp_path: Path) -> None:
    """A database that cannot be opened: KeyStoreUnavailable, not a crash."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = DatabaseKeyStore(database_url(f"sqlite:///{blocker}/sub/keys.sqlite3", tmp_path))
    with pytest.raises(KeyStoreUnavailable):
        await store.find("0" * 12)
    with pytest.raises(KeyStoreUnavailable):
        await store.check()


def _cli(environ: dict[str, str], *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update({k: v for k, v in saved.items() if not k.startswith("PISTON_")})
    os.environ.update(environ)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            status = main(["--allow-root", *args])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return status, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("store", ["file", "database"])
def test_keys_cli_add_list_revoke(tmp_path: Path, store: str) -> None:
    """``keys add`` prints the key once (stdout holds only it) and stores its digest; ``list``
    shows ids and policies but no key; ``revoke`` marks it; a second revoke exits 1."""
    environ = {
        "PISTON_GATEWAY_API_KEYS": store,
        "PISTON_GATEWAY_API_KEYS_FILE": str(tmp_path / "api-keys.toml"),
        "PISTON_GATEWAY_DATA_DIRECTORY": str(tmp_path / "data"),
    }
    status, out, err = _cli(
        environ,
        "keys",
        "add",
        "--name",
        "editor",
        "--jobs-per-minute",
        "30",
        "--max-limit",
        "run_timeout=1000",
        "--packages",
    )
    assert status == 0, err
    key = out.strip()
    found = key_id(key)
    assert found is not None
    assert f"added key {found}" in err
    status, listed, _ = _cli(environ, "keys", "list", "--json")
    assert status == 0
    (entry,) = json.loads(listed)
    assert entry == {
        "id": found,
        "name": "editor",
        "created": entry["created"],
        "revoked": None,
        "jobs_per_minute": 30,
        "max_limits": {"run_timeout": 1000},
        "packages": True,
    }
    assert key not in listed
    if store == "file":
        assert key not in (tmp_path / "api-keys.toml").read_text()
        assert digest(key) in (tmp_path / "api-keys.toml").read_text()
    assert _cli(environ, "keys", "revoke", found)[0] == 0
    status, _, err = _cli(environ, "keys", "revoke", key)  # the whole key names it too
    assert (status, "no active key" in err) == (1, True)
    status, plain, _ = _cli(environ, "keys", "list")
    assert status == 0
    assert found in plain
    assert "revoked" in plain


def test_keys_cli_refuses_bad_input(tmp_path: Path) -> None:
    """A bad --max-limit or id: exit 2 with the reason; keys off: a note, the file is used."""
    environ = {"PISTON_GATEWAY_API_KEYS_FILE": str(tmp_path / "k.toml")}
    status, _, err = _cli(environ, "keys", "add", "--max-limit", "run_timeout")
    assert (status, "--max-limit wants LIMIT=VALUE" in err) == (2, True)
    status, _, err = _cli(environ, "keys", "add", "--max-limit", "stdin=5")
    assert status == 2
    assert "'stdin' is not one of" in err
    status, _, err = _cli(environ, "keys", "revoke", "xyz")
    assert (status, "not a key id" in err) == (2, True)
    status, out, err = _cli(environ, "keys", "add")
    assert status == 0
    assert "API keys are off" in err
    assert key_id(out.strip()) in read_keys(tmp_path / "k.toml")


def test_keys_rendered_file_is_documented_toml(tmp_path: Path) -> None:
    """The file starts with a comment saying it holds digests only."""
    made = make_key("x")
    text = render_keys({made.record.id: made.record})
    assert text.startswith("# API keys of pistond-gateway: SHA-256 digests only")
    assert f"[keys.{made.record.id}]" in text


def test_keys_cli_help_names_the_actions() -> None:
    """``pistond-gateway keys --help`` lists add, list and revoke."""
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit):
        main(["keys", "--help"])
    for action in ("add", "list", "revoke"):
        assert action in out.getvalue()
    assert keyadmin.EXIT_NOT_FOUND == 1


def test_keys_record_rejects_a_bad_digest() -> None:
    """A record's digest must be 64 hex digits."""
    with pytest.raises(KeyRecordError, match="sha256 must be 64"):
        ApiKey(id="0123456789ab", digest="abc")
