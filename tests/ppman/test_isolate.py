"""The build jail: the sandbox's namespaces and filesystem with the build profile."""

from __future__ import annotations

import os
import subprocess
import time
from typing import TYPE_CHECKING

import pytest

from pistond.ppman.isolate import IsolatedCommand, IsolationError, run_jailed
from pistond.sandbox.spec import Bind

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.usefixtures("needs_jail")

PROBE = (
    "echo uid=$(id -u) groups=$(id -G) host=$(hostname) cwd=$PWD;"
    "echo links=$(ls /sys/class/net 2>/dev/null | wc -l) net=$(readlink /proc/self/ns/net);"
    "echo env=$(env | cut -d= -f1 | sort | tr '\\n' ,);"
    "touch /box/written && echo box=ok;"
    "touch /usr/denied 2>/dev/null || echo usr=read-only;"
    "touch /root-file 2>/dev/null && echo root=writable || echo root=read-only"
)


def _run(command: IsolatedCommand, timeout: float = 30) -> tuple[int, dict[str, str], list[str]]:
    lines: list[str] = []
    done = run_jailed(command, timeout=timeout, on_line=lines.append, capture=True)
    fields = {}
    for word in done.stdout.decode().split():
        key, _, value = word.partition("=")
        fields[key] = value
    return done.code, fields, lines


def _tiny_root(tmp_path: Path) -> Path:
    """A root filesystem of mount points and links; the host's /usr is bound into it."""
    root = tmp_path / "root"
    for name in ("usr", "box", "tmp", "dev", "proc", "etc"):
        (root / name).mkdir(parents=True)
    for name in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{name}"):
            (root / name).symlink_to(os.readlink(f"/{name}"))
    (root / "etc" / "passwd").write_text("root:x:0:0::/:/bin/sh\n")
    return root


def _box(tmp_path: Path, uid: int = 65534) -> str:
    box = tmp_path / "box"
    box.mkdir()
    os.chown(box, uid, uid)
    return str(box)


def test_isolate_host_view_as_nobody_without_network(tmp_path: Path) -> None:
    """Host view: nobody with no groups, a network namespace of its own, exactly the given
    environment, a writable /box and a read-only everything else."""
    command = IsolatedCommand(
        argv=("/bin/bash", "-c", PROBE),
        box=_box(tmp_path),
        cwd="/box",
        env={"PATH": "/usr/bin:/bin", "MARK": "1"},
    )
    code, fields, _lines = _run(command)
    assert code == 0
    assert fields["uid"] == "65534"
    assert fields["groups"] == "65534"
    assert fields["host"] == "pistond-build"
    assert fields["cwd"] == "/box"
    assert fields["net"] != os.readlink("/proc/self/ns/net")
    assert fields["env"] == "MARK,PATH,PWD,SHLVL,_,"
    assert fields["box"] == "ok"
    assert (tmp_path / "box" / "written").exists()
    assert fields["usr"] == "read-only"
    assert fields["root"] == "read-only"


def test_isolate_registry_profile_shares_the_host_network(tmp_path: Path) -> None:
    """network=True (registry clients) is the host's own network namespace."""
    command = IsolatedCommand(
        argv=("/bin/bash", "-c", PROBE), box=_box(tmp_path), network=True, cwd="/box"
    )
    code, fields, _lines = _run(command)
    assert code == 0
    assert fields["net"] == os.readlink("/proc/self/ns/net")


def test_isolate_writable_root_profile(tmp_path: Path) -> None:
    """warm's profile: root over the build's own root, writable (nosuid, nodev), binds kept
    read-only unless asked otherwise."""
    root = _tiny_root(tmp_path)
    (root / "opt" / "out").mkdir(parents=True)
    source = tmp_path / "package"
    source.mkdir()
    (root / "piston").mkdir()
    command = IsolatedCommand(
        argv=(
            "/bin/bash",
            "-c",
            "echo warm > /opt/out/cache && touch /piston/x 2>/dev/null || echo bind=read-only;"
            "grep ' / ' /proc/self/mounts | cut -d' ' -f4 | tr , '\\n' | grep -x nosuid",
        ),
        box=_box(tmp_path, 0),
        root=str(root),
        binds=(Bind("/usr", "/usr"), Bind(str(source), "/piston")),
        writable_root=True,
        uid=0,
    )
    lines: list[str] = []
    done = run_jailed(command, timeout=30, on_line=lines.append, capture=True)
    assert done.code == 0, lines
    assert (root / "opt" / "out" / "cache").read_text() == "warm\n"
    assert done.stdout.decode().split() == ["bind=read-only", "nosuid"]
    assert not list(source.iterdir())


def test_isolate_read_only_root_refuses_writes(tmp_path: Path) -> None:
    """The .env profile: the root stays read-only even for writes the uid could make."""
    root = _tiny_root(tmp_path)
    command = IsolatedCommand(
        argv=("/bin/bash", "-c", "touch /etc/x 2>/dev/null && echo root=writable || echo root=ro"),
        box=_box(tmp_path, 0),
        root=str(root),
        binds=(Bind("/usr", "/usr"),),
        uid=0,
    )
    code, fields, _lines = _run(command)
    assert (code, fields["root"]) == (0, "ro")
    assert not (root / "etc" / "x").exists()


def _process_list() -> str:
    return subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout


def test_isolate_timeout_kills_the_whole_jail(tmp_path: Path) -> None:
    """A command past its deadline is an IsolationError, and nothing of the jail survives it."""
    marker = f"pistond-jail-timeout-{os.getpid()}"
    command = IsolatedCommand(
        argv=("/bin/bash", "-c", f"(exec -a {marker} sleep 60 &) ; exec -a {marker} sleep 60"),
        box=_box(tmp_path),
    )
    started = time.monotonic()
    with pytest.raises(IsolationError, match="timed out after 1 s"):
        run_jailed(command, timeout=1, on_line=lambda _line: None)
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 5
    while marker in _process_list():
        assert time.monotonic() < deadline, "a jailed process outlived the timeout"
        time.sleep(0.1)


def test_isolate_setup_failure_is_reported(tmp_path: Path) -> None:
    """A jail that cannot be built exits 127 with a 'build jail:' line and runs nothing."""
    command = IsolatedCommand(argv=("/bin/true",), box=str(tmp_path / "missing"))
    lines: list[str] = []
    done = run_jailed(command, timeout=30, on_line=lines.append)
    assert done.code == 127
    assert any(line.startswith("build jail: ") and "box" in line for line in lines)
