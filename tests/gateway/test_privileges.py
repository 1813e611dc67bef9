"""pistond.gateway.privileges: started by root, the gateway serves as PISTON_GATEWAY_USER in the
socket's group, for good; it refuses a user that does not exist or is root; --allow-root keeps
root. What the running gateway is, is read from /proc, as an operator would check it."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from pistond.config import DEFAULT_GATEWAY_USER, load_config
from pistond.errors import ConfigError
from pistond.gateway.privileges import resolve_identity
from pistond.testing.daemon import DaemonProcess

if TYPE_CHECKING:
    from collections.abc import Iterator

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping root can only be seen as root")


def _gateway_user() -> pwd.struct_passwd:
    """The default gateway user; scripts/bootstrap creates it from systemd/sysusers.d."""
    return pwd.getpwnam(DEFAULT_GATEWAY_USER)


def test_privileges_default_user_joins_the_socket_group() -> None:
    """The default user keeps its own groups and gains the socket's."""
    user = _gateway_user()
    identity = resolve_identity(DEFAULT_GATEWAY_USER, socket_group=4242)
    assert (identity.user, identity.uid, identity.gid) == (
        DEFAULT_GATEWAY_USER,
        user.pw_uid,
        user.pw_gid,
    )
    assert 4242 in identity.groups
    assert user.pw_gid in identity.groups
    assert grp.getgrnam("pistond").gr_gid in identity.groups  # its sysusers.d membership


def test_privileges_user_group_and_numbers() -> None:
    """``user:group`` replaces the primary group; numeric ids work too."""
    nogroup = grp.getgrnam("nogroup").gr_gid
    identity = resolve_identity(f"{DEFAULT_GATEWAY_USER}:nogroup", socket_group=None)
    assert identity.gid == nogroup
    assert nogroup in identity.groups
    by_number = resolve_identity(f"{_gateway_user().pw_uid}:{nogroup}", socket_group=None)
    assert (by_number.user, by_number.gid) == (DEFAULT_GATEWAY_USER, nogroup)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no-such-user-h13", "PISTON_GATEWAY_USER: no such user: 'no-such-user-h13'"),
        (f"{DEFAULT_GATEWAY_USER}:no-such-group", "no such group: 'no-such-group'"),
        ("root", "'root' is root; name an unprivileged user (or pass --allow-root)"),
        ("0", "'0' is root"),
    ],
)
def test_privileges_refuses_missing_users_and_root(spec: str, message: str) -> None:
    """A user or group that does not exist, or root, is a configuration error."""
    with pytest.raises(ConfigError, match="PISTON_GATEWAY_USER") as raised:
        resolve_identity(spec, socket_group=None)
    assert message in str(raised.value)


@pytest.mark.parametrize("value", ["", ":pistond", "user:", "a:b:c"])
def test_privileges_setting_shape_is_checked_at_load(value: str) -> None:
    """PISTON_GATEWAY_USER must be user or user:group."""
    with pytest.raises(ConfigError, match="PISTON_GATEWAY_USER: must be user or user:group"):
        load_config({"PISTON_GATEWAY_USER": value})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


@pytest.fixture(scope="module")
def shared_daemon() -> Iterator[DaemonProcess]:
    """A real daemon whose socket the gateway's user can reach (a world-traversable directory;
    pytest's own temporary directories are root-only)."""
    directory = Path(tempfile.mkdtemp(prefix="pistond-gateway-user-"))
    directory.chmod(0o755)
    try:
        with DaemonProcess.start(directory / "daemon") as daemon:
            daemon.socket.parent.chmod(0o755)
            yield daemon
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _start_gateway(*args: str, **settings: str) -> tuple[subprocess.Popen[str], str]:
    port = _free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PISTON_")}
    environ.update(PISTON_BIND_ADDRESS=f"127.0.0.1:{port}", **settings)
    process = subprocess.Popen(
        [sys.executable, "-m", "pistond.gateway", *args],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(url + "/", timeout=1)
            return process, url
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                _stop(process)
                raise AssertionError(f"gateway did not start: {process.stderr}") from None
            time.sleep(0.05)


def _stop(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.stderr is not None
    return process.stderr.read()


@as_root
def test_privileges_root_start_serves_as_the_gateway_user(shared_daemon: DaemonProcess) -> None:
    """Started by root, the gateway runs a program for a client while /proc shows every uid and
    gid of it as the gateway user's, the socket's group among its groups, no capabilities and
    no_new_privs."""
    user = _gateway_user()
    process, url = _start_gateway(PISTON_SOCKET=str(shared_daemon.socket))
    try:
        body = {
            "language": "python",
            "version": "*",
            "files": [{"content": "print('served', 6 * 7)"}],
        }
        answer = httpx.post(url + "/api/v2/execute", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["run"]["stdout"] == "served 42\n"
        status = _proc_status(process.pid)
        assert status["Uid"].split() == [str(user.pw_uid)] * 4
        assert status["Gid"].split() == [str(user.pw_gid)] * 4
        assert str(shared_daemon.socket.stat().st_gid) in status["Groups"].split()
        assert "0" not in status["Groups"].split()
        assert int(status["CapEff"], 16) == int(status["CapPrm"], 16) == 0
        assert status["NoNewPrivs"] == "1"
    finally:
        log = _stop(process)
    assert process.returncode == 0, log
    assert f"serving as {DEFAULT_GATEWAY_USER} (uid {user.pw_uid}" in log


@as_root
def test_privileges_allow_root_keeps_root(tmp_path: Path) -> None:
    """--allow-root keeps its meaning: the gateway serves as root."""
    process, _url = _start_gateway("--allow-root", PISTON_SOCKET=str(tmp_path / "none.sock"))
    try:
        assert _proc_status(process.pid)["Uid"].split() == ["0"] * 4
    finally:
        _stop(process)


@as_root
def test_privileges_missing_user_refuses_to_start(tmp_path: Path) -> None:
    """A PISTON_GATEWAY_USER that does not exist stops the start with status 2 and one line."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PISTON_")}
    environ.update(PISTON_GATEWAY_USER="no-such-user-h13", PISTON_SOCKET=str(tmp_path / "x"))
    completed = subprocess.run(
        [sys.executable, "-m", "pistond.gateway"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        "pistond-gateway: PISTON_GATEWAY_USER: no such user: 'no-such-user-h13' "
        "(`pistond install-units --users-only` creates it; or name another user)"
    ]


@as_root
def test_privileges_unreadable_installation_is_reported(tmp_path: Path) -> None:
    """After the drop, a path the gateway user cannot read (a venv under /root) is named."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    probe = (
        "import sys; from pistond.gateway.privileges import *;"
        f"drop_privileges(resolve_identity({DEFAULT_GATEWAY_USER!r}, None));"
        "print(unreadable_paths([sys.argv[1], '/usr']))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe, str(private)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert completed.stdout.strip() == repr([str(private)])
