"""Rules for the systemd units in systemd/: they verify cleanly, agree with the daemon's defaults,
give the daemon what the sandbox needs and the gateway nothing.

systemd-analyze runs on copies in tmp_path whose ExecStart points at an existing binary, so the
outcome does not depend on whether pistond is installed in /usr/local/bin.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pistond.config import DEFAULT_GATEWAY_USER, DaemonConfig

UNITS_DIR = Path(__file__).resolve().parent.parent / "systemd"
UNIT_NAMES = ("pistond.socket", "pistond.service", "pistond.slice", "pistond-gateway.service")
SANDBOX_NAMESPACES = {"mnt", "pid", "net", "ipc", "uts", "cgroup"}
DAEMON_CAPABILITIES = {
    "CAP_SYS_ADMIN",
    "CAP_SETUID",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SYS_RESOURCE",
    "CAP_KILL",
    "CAP_CHOWN",
    "CAP_FOWNER",
    "CAP_DAC_OVERRIDE",
    "CAP_SYS_CHROOT",
    "CAP_NET_ADMIN",
    "CAP_MKNOD",
}
# Settings that would break sandboxes or package builds if set on the daemon (see the comments
# in pistond.service for each).
SANDBOX_BREAKERS = (
    "ProtectKernelTunables",
    "ProtectControlGroups",
    "MemoryDenyWriteExecute",
    "PrivateDevices",
    "PrivateNetwork",
    "PrivateUsers",
    "ProtectProc",
    "ProcSubset",
    "ProtectHostname",
    "RestrictSUIDSGID",
    "MountFlags",
    "DynamicUser",
    "User",
)

Unit = dict[str, dict[str, list[str]]]


def parse_unit(path: Path) -> Unit:
    """Sections of a unit file, each key with every value it was assigned, in order."""
    sections: Unit = {}
    current: dict[str, list[str]] | None = None
    text = re.sub(r"\\\n", " ", path.read_text())
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}: assignment before any section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not an assignment: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def single(unit: Unit, section: str, key: str) -> str:
    values = unit[section][key]
    assert len(values) == 1, f"{key} is assigned {len(values)} times"
    return values[0]


def words(unit: Unit, section: str, key: str) -> set[str]:
    return {word for value in unit[section].get(key, []) for word in value.split()}


def seconds(value: str) -> float:
    """A systemd time span such as ``30``, ``30s``, ``1min 30s`` in seconds."""
    factors = {"": 1.0, "s": 1.0, "sec": 1.0, "ms": 0.001, "m": 60.0, "min": 60.0, "h": 3600.0}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * factors[unit]
    return total


@pytest.fixture(scope="module")
def units() -> dict[str, Unit]:
    return {name: parse_unit(UNITS_DIR / name) for name in UNIT_NAMES}


@pytest.fixture
def unit_copies(tmp_path: Path) -> Path:
    """The units in a temporary directory, ExecStart= pointing at an existing binary."""
    true = shutil.which("true")
    assert true is not None
    for name in UNIT_NAMES:
        text = (UNITS_DIR / name).read_text()
        text = re.sub(r"^ExecStart=\S+", f"ExecStart={true}", text, flags=re.MULTILINE)
        (tmp_path / name).write_text(text)
    return tmp_path


def systemd_analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SYSTEMD_COLORS": "0", "LANG": "C"}
    return subprocess.run(
        [analyze, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_units_verify_cleanly(unit_copies: Path) -> None:
    """systemd-analyze verify accepts every unit without a single warning."""
    result = systemd_analyze(
        "verify", "--man=no", *(f"./{name}" for name in UNIT_NAMES), cwd=unit_copies
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_units_gateway_exposure_low(unit_copies: Path) -> None:
    """The gateway's systemd exposure score stays at 2.0 ("OK") or below."""
    result = systemd_analyze(
        "security", "--offline=yes", "--threshold=20", "./pistond-gateway.service", cwd=unit_copies
    )
    if "--offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("this systemd-analyze has no offline security analysis")
    assert result.returncode == 0, result.stdout[-2000:]


def test_units_daemon_exposure_bounded(unit_copies: Path) -> None:
    """The root daemon's exposure score stays at 6.0 or below: no hardening silently dropped."""
    result = systemd_analyze(
        "security", "--offline=yes", "--threshold=60", "./pistond.service", cwd=unit_copies
    )
    if "--offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("this systemd-analyze has no offline security analysis")
    assert result.returncode == 0, result.stdout[-2000:]


def test_units_socket_matches_config(units: dict[str, Unit]) -> None:
    """The socket unit listens where the daemon would, mode 0660, group pistond, removed on stop."""
    socket = units["pistond.socket"]
    assert single(socket, "Socket", "ListenStream") == os.fspath(DaemonConfig().socket)
    assert single(socket, "Socket", "SocketMode") == "0660"
    assert single(socket, "Socket", "SocketGroup") == "pistond"
    assert single(socket, "Socket", "RemoveOnStop") == "yes"
    assert single(socket, "Socket", "Accept") == "no"


def test_units_service_notify_and_delegate(units: dict[str, Unit]) -> None:
    """The daemon is Type=notify with main-only notify access, a delegated subtree in its slice."""
    service = units["pistond.service"]["Service"]
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "ExecStart": "/usr/local/bin/pistond",
        "Delegate": "yes",
        "Slice": "pistond.slice",
        "KillMode": "mixed",
        "Restart": "on-failure",
        "OOMPolicy": "continue",
        "StateDirectory": "pistond",
        "RuntimeDirectory": "pistond",
        "RuntimeDirectoryPreserve": "yes",
    }
    assert {key: service[key] for key in expected} == {k: [v] for k, v in expected.items()}
    assert "pistond.socket" in words(units["pistond.service"], "Unit", "Requires")
    assert "pistond.socket" in words(units["pistond.service"], "Unit", "After")


def test_units_state_directory_is_data_directory() -> None:
    """StateDirectory=pistond is the configured default data directory."""
    assert DaemonConfig().data_directory == Path("/var/lib/pistond")


def test_units_stop_timeout_above_grace(units: dict[str, Unit]) -> None:
    """systemd waits longer than the daemon's drain grace before it sends SIGKILL."""
    timeout = seconds(single(units["pistond.service"], "Service", "TimeoutStopSec"))
    assert timeout >= DaemonConfig().shutdown_grace / 1000 + 10


def test_units_service_capabilities(units: dict[str, Unit]) -> None:
    """The daemon's bounding set is exactly what building sandboxes needs."""
    assert words(units["pistond.service"], "Service", "CapabilityBoundingSet") == (
        DAEMON_CAPABILITIES
    )


def test_units_service_keeps_sandbox_working(units: dict[str, Unit]) -> None:
    """The daemon may create every namespace the sandbox uses, but no user namespace."""
    service = units["pistond.service"]
    namespaces = words(service, "Service", "RestrictNamespaces")
    assert namespaces == SANDBOX_NAMESPACES
    assert single(service, "Service", "ProtectSystem") != "strict"
    assert not [key for key in SANDBOX_BREAKERS if key in service["Service"]]
    families = words(service, "Service", "RestrictAddressFamilies")
    assert families == {"AF_UNIX", "AF_NETLINK", "AF_INET", "AF_INET6"}
    assert single(service, "Service", "SystemCallErrorNumber") == "EPERM"


def test_units_slice_is_the_services(units: dict[str, Unit]) -> None:
    """The service's slice is the one shipped, with accounting on."""
    slice_unit = units["pistond.slice"]["Slice"]
    assert slice_unit["MemoryAccounting"] == ["yes"]
    assert slice_unit["TasksAccounting"] == ["yes"]


def test_units_gateway_unprivileged(units: dict[str, Unit]) -> None:
    """The gateway runs as its system user in group pistond with no capabilities at all."""
    gateway = units["pistond-gateway.service"]
    service = gateway["Service"]
    assert single(gateway, "Service", "ExecStart") == "/usr/local/bin/pistond-gateway"
    assert single(gateway, "Service", "User") == DEFAULT_GATEWAY_USER
    assert "DynamicUser" not in service
    assert single(gateway, "Service", "SupplementaryGroups") == "pistond"
    assert service["CapabilityBoundingSet"] == [""]
    assert service["AmbientCapabilities"] == [""]
    assert single(gateway, "Service", "NoNewPrivileges") == "yes"
    assert single(gateway, "Service", "ProtectSystem") == "strict"
    assert "PISTON_BIND_ADDRESS=0.0.0.0:2000" in service["Environment"]
    assert "pistond.socket" in words(gateway, "Unit", "Wants")
    assert "pistond.socket" in words(gateway, "Unit", "After")


def test_units_sysusers_creates_group_and_gateway_user(tmp_path: Path) -> None:
    """systemd-sysusers, applied to an empty root, creates the pistond group and the gateway's
    system user (no login shell) as a member of it."""
    sysusers = shutil.which("systemd-sysusers")
    if sysusers is None:
        pytest.skip("systemd-sysusers is not installed")
    (tmp_path / "etc").mkdir()
    result = subprocess.run(
        [sysusers, f"--root={tmp_path}", os.fspath(UNITS_DIR / "sysusers.d" / "pistond.conf")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    groups = {
        fields[0]: fields
        for fields in (
            line.split(":") for line in (tmp_path / "etc" / "group").read_text().splitlines()
        )
    }
    assert set(groups) == {"pistond", DEFAULT_GATEWAY_USER}
    assert groups["pistond"][3].split(",") == [DEFAULT_GATEWAY_USER]
    users = {
        fields[0]: fields
        for fields in (
            line.split(":") for line in (tmp_path / "etc" / "passwd").read_text().splitlines()
        )
    }
    assert set(users) == {DEFAULT_GATEWAY_USER}
    user = users[DEFAULT_GATEWAY_USER]
    assert int(user[2]) < 1000  # a system user
    assert user[3] == groups[DEFAULT_GATEWAY_USER][2]
    assert user[6] == "/usr/sbin/nologin"
