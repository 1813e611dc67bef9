"""Rules for pistond.notify: sd_notify datagrams reach a fake NOTIFY_SOCKET (path or abstract),
the variable never reaches children, and failures never reach the daemon.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from typing import TYPE_CHECKING

import pytest
import trio

from pistond.notify import Notifier

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def no_notify_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket bound to a path, as systemd's notify socket; yields (value, socket)."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(os.fspath(path))
        sock.settimeout(5)
        yield os.fspath(path), sock


@pytest.fixture
def abstract_receiver() -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket bound to a unique abstract name; yields ("@name", socket)."""
    name = f"pistond-test-notify-{secrets.token_hex(8)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        yield "@" + name, sock


def received(sock: socket.socket) -> bytes:
    return sock.recv(4096)


@pytest.mark.usefixtures("no_notify_env")
def test_notify_ready_status_stopping(receiver: tuple[str, socket.socket]) -> None:
    """ready(), status() and stopping() each send one datagram in sd_notify's KEY=value form."""
    value, sock = receiver
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": value})
    try:
        notifier.ready()
        notifier.status("serving; 3 runtimes")
        notifier.stopping()
        assert received(sock) == b"READY=1"
        assert received(sock) == b"STATUS=serving; 3 runtimes"
        assert received(sock) == b"STOPPING=1"
    finally:
        notifier.close()


@pytest.mark.usefixtures("no_notify_env")
def test_notify_abstract_socket(abstract_receiver: tuple[str, socket.socket]) -> None:
    """A NOTIFY_SOCKET starting with @ names an abstract socket."""
    value, sock = abstract_receiver
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": value})
    try:
        notifier.ready()
        assert received(sock) == b"READY=1"
    finally:
        notifier.close()


@pytest.mark.usefixtures("no_notify_env")
def test_notify_status_is_one_line(receiver: tuple[str, socket.socket]) -> None:
    """A status text with newlines cannot inject other assignments: it is sent as one line."""
    value, sock = receiver
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": value})
    try:
        notifier.status("draining\nREADY=1\tjobs")
        assert received(sock) == b"STATUS=draining READY=1 jobs"
    finally:
        notifier.close()


def test_notify_unset_from_environment(
    receiver: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """NOTIFY_SOCKET is removed from os.environ so the fork server and sandboxes never see it."""
    value, sock = receiver
    monkeypatch.setenv("NOTIFY_SOCKET", value)
    notifier = Notifier.from_environ()
    try:
        assert "NOTIFY_SOCKET" not in os.environ
        notifier.ready()
        assert received(sock) == b"READY=1"
    finally:
        notifier.close()


def test_notify_unset_from_given_copy(
    receiver: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a copy of the environment, the variable leaves both the copy and os.environ."""
    value, _ = receiver
    monkeypatch.setenv("NOTIFY_SOCKET", value)
    environ = dict(os.environ)
    Notifier.from_environ(environ).close()
    assert "NOTIFY_SOCKET" not in environ
    assert "NOTIFY_SOCKET" not in os.environ


@pytest.mark.usefixtures("no_notify_env")
def test_notify_noop_without_socket() -> None:
    """Without NOTIFY_SOCKET the notifier is disabled and every call is a no-op."""
    notifier = Notifier.from_environ({})
    assert not notifier.enabled
    notifier.ready()
    notifier.status("anything")
    notifier.stopping()
    notifier.close()


@pytest.mark.usefixtures("no_notify_env")
@pytest.mark.parametrize("value", ["relative/path", "@", "vsock:2:1234"])
def test_notify_unusable_address_disabled(value: str) -> None:
    """A NOTIFY_SOCKET that is neither an absolute path nor @name disables notifications."""
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": value})
    assert not notifier.enabled
    notifier.ready()


@pytest.mark.usefixtures("no_notify_env")
def test_notify_failure_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A send to a socket that is gone is logged at debug level and does not raise."""
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": os.fspath(tmp_path / "gone.sock")})
    with caplog.at_level(logging.DEBUG, logger="pistond.notify"):
        notifier.ready()
        notifier.stopping()
    notifier.close()
    failures = [r for r in caplog.records if r.levelno == logging.DEBUG and "failed" in r.message]
    assert len(failures) == 2


@pytest.mark.usefixtures("no_notify_env")
def test_notify_full_queue_does_not_block(tmp_path: Path) -> None:
    """When systemd does not read, sends fail fast instead of blocking the daemon."""
    path = tmp_path / "slow.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(os.fspath(path))
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": os.fspath(path)})
        started = time.monotonic()
        try:
            for _ in range(2000):
                notifier.status("x" * 512)
        finally:
            notifier.close()
        assert time.monotonic() - started < 5


async def test_notify_from_trio(receiver: tuple[str, socket.socket], no_notify_env: None) -> None:
    """The notifier is usable from trio tasks without any awaiting."""
    value, sock = receiver
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": value})
    try:
        with trio.fail_after(5):
            notifier.ready()
            await trio.lowlevel.checkpoint()
        assert received(sock) == b"READY=1"
    finally:
        notifier.close()
