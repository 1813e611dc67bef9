"""Cgroup backends: a faked cgroupfs tree first, then the kernel at hand.

Rules: the fake tests build a tree of plain files in tmp_path and an emulation of the few
kernel rules the backends depend on (mkdir makes control files, cgroup.procs moves a pid, the
no-internal-processes rule, cgroup.kill, rmdir). The real tests run as root on this host's
hierarchies in a jobs group named for the test run, and a fixture asserts that no group, and
no process, is left behind.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import pytest

from pistond.config import DaemonConfig
from pistond.errors import SandboxError
from pistond.sandbox.cgroups import (
    CgroupLimits,
    HybridBackend,
    NoneBackend,
    RunGroup,
    V2Backend,
    _kernfs,
    detect,
)
from pistond.sandbox.cgroups._layout import Mount, read_mounts

if TYPE_CHECKING:
    from collections.abc import Iterator

MiB = 1024 * 1024
OWN = "/system.slice/pistond.service"
ALL_CONTROLLERS = "cpuset cpu io memory hugetlb pids"


# --- a faked cgroup2 filesystem -------------------------------------------------------------


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@attrs.define(eq=False)
class FakeCgroup2:
    """Plain files under ``root`` that behave like cgroup2 where the backends look."""

    root: Path
    writes: list[tuple[str, str]] = attrs.field(factory=list)
    refuse: set[str] = attrs.field(factory=set)
    """Control files and controllers whose writes the emulated kernel refuses."""
    _mkdir: object = os.mkdir
    _rmdir: object = os.rmdir

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root.mkdir()
        self._populate(self.root, ALL_CONTROLLERS, is_root=True)
        monkeypatch.setattr(os, "mkdir", self.mkdir)
        monkeypatch.setattr(os, "rmdir", self.rmdir)
        monkeypatch.setattr(_kernfs, "write", self.write)
        monkeypatch.setattr(_kernfs, "PeakCounter", FakePeak)

    def _inside(self, path: Path | str) -> bool:
        return Path(path).is_relative_to(self.root)

    def _populate(self, path: Path, controllers: str, *, is_root: bool = False) -> None:
        files = {
            "cgroup.controllers": controllers,
            "cgroup.subtree_control": "",
            "cgroup.procs": "",
            "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
        }
        if not is_root:
            files |= {
                "cgroup.type": "domain\n",
                "cgroup.events": "populated 0\nfrozen 0\n",
                "cgroup.kill": "",
            }
            if "memory" in controllers.split():
                files |= {
                    "memory.max": "max\n",
                    "memory.swap.max": "max\n",
                    "memory.oom.group": "0\n",
                    "memory.current": "0\n",
                    "memory.peak": "0\n",
                    "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
                }
            if "pids" in controllers.split():
                files |= {"pids.max": "max\n", "pids.current": "0\n", "pids.events": "max 0\n"}
        for name, text in files.items():
            (path / name).write_text(text)

    def mkdir(self, path: str | Path, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        self._mkdir(path, mode, dir_fd=dir_fd)  # type: ignore[operator]
        if self._inside(path):
            parent = Path(path).parent
            self._populate(Path(path), " ".join(_lines(parent / "cgroup.subtree_control")))

    def rmdir(self, path: str | Path, *, dir_fd: int | None = None) -> None:
        target = Path(path)
        if self._inside(target) and target.is_dir():
            if any(p.is_dir() for p in target.iterdir()) or _lines(target / "cgroup.procs"):
                raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(path))
            for child in target.iterdir():
                child.unlink()
        self._rmdir(path, dir_fd=dir_fd)  # type: ignore[operator]

    def _set_procs(self, group: Path, pids: list[str]) -> None:
        (group / "cgroup.procs").write_text("".join(f"{p}\n" for p in pids))
        if (group / "cgroup.events").exists():
            (group / "cgroup.events").write_text(f"populated {int(bool(pids))}\nfrozen 0\n")

    def write(self, path: Path, value: str, *, group: str) -> None:
        self.writes.append((str(path.relative_to(self.root)), value))
        if not path.exists() or path.name in self.refuse:
            raise SandboxError(f"cgroup {group}: cannot write {path.name} (refused)")
        directory = path.parent
        if path.name == "cgroup.procs":
            for procs in self.root.rglob("cgroup.procs"):
                self._set_procs(procs.parent, [p for p in _lines(procs) if p != value])
            self._set_procs(directory, [*_lines(path), value])
        elif path.name == "cgroup.subtree_control":
            enabled = _lines(path)
            for token in value.split():
                offered = _lines(directory / "cgroup.controllers")
                if token[1:] not in offered or token[1:] in self.refuse:
                    raise SandboxError(f"cgroup {group}: cannot write {path.name} (EINVAL)")
                if _lines(directory / "cgroup.procs") and (directory / "cgroup.type").exists():
                    raise SandboxError(f"cgroup {group}: cannot write {path.name} (EBUSY)")
                enabled.append(token[1:])
            path.write_text(" ".join(enabled))
        elif path.name == "cgroup.kill":
            self._set_procs(directory, [])
        else:
            path.write_text(value)


@attrs.define(eq=False)
class FakePeak:
    """memory.peak as Linux 6.12 has it: a reset through the descriptor restarts the peak
    from memory.current (emulated by writing that value into the plain file)."""

    path: Path
    resettable: bool = True

    @classmethod
    def open(cls, path: Path) -> FakePeak:
        return cls(path=path, resettable=path.exists())

    def reset(self) -> None:
        if self.resettable:
            self.path.write_text((self.path.parent / "memory.current").read_text())

    def read(self) -> int | None:
        if not self.resettable or not self.path.exists():
            self.resettable = False
            return None
        return int(self.path.read_text())

    def close(self) -> None:
        pass


def _mountinfo(path: Path, *lines: str) -> Path:
    path.write_text("".join(f"{n + 30} 1 0:{n} {line}\n" for n, line in enumerate(lines)))
    return path


def _self_cgroup(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def fake_v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCgroup2:
    fake = FakeCgroup2(root=tmp_path / "cgroup")
    fake.install(monkeypatch)
    (fake.root / "cgroup.subtree_control").write_text("cpu memory pids")
    own = fake.root / OWN.lstrip("/")
    os.makedirs(own)
    (own.parent / "cgroup.subtree_control").write_text("cpu memory pids")
    (own / "cgroup.controllers").write_text("cpu memory pids")
    (own / "cgroup.procs").write_text("100\n101\n")
    return fake


def _detect_v2(fake: FakeCgroup2, membership: str = OWN, cgroup_root: str = "") -> V2Backend:
    backend = detect(
        DaemonConfig(cgroup_root=cgroup_root),
        root=fake.root,
        proc_self_cgroup=_self_cgroup(fake.root.parent / "self_cgroup", f"0::{membership}\n"),
        mountinfo=_mountinfo(
            fake.root.parent / "mountinfo",
            f"/ {fake.root} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate",
            "/ /proc rw - proc proc rw",
        ),
    )
    assert isinstance(backend, V2Backend)
    return backend


LIMITS = CgroupLimits(memory_bytes=32 * MiB, max_processes=8)


def test_detect_v2_moves_daemon_into_leaf(fake_v2: FakeCgroup2) -> None:
    """On pure v2 the daemon's processes move to <own>/daemon and controllers reach <own>/jobs."""
    backend = _detect_v2(fake_v2)
    own = fake_v2.root / OWN.lstrip("/")
    assert backend.kind == "v2"
    assert backend.jobs == own / "jobs"
    assert _lines(own / "cgroup.procs") == []
    assert _lines(own / "daemon" / "cgroup.procs") == ["100", "101"]
    assert _lines(own / "cgroup.subtree_control") == ["memory", "pids", "cpu"]
    assert _lines(own / "jobs" / "cgroup.subtree_control") == ["memory", "pids", "cpu"]
    assert backend.controllers == {"memory", "pids", "cpu"}


def test_detect_v2_optional_cpu_refused(fake_v2: FakeCgroup2) -> None:
    """A refused cpu controller is skipped; memory and pids are still enabled and used."""
    fake_v2.refuse.add("cpu")
    backend = _detect_v2(fake_v2)
    assert backend.controllers == {"memory", "pids"}
    backend.create("box-1-run-1", LIMITS)
    assert (backend.jobs / "box-1-run-1" / "pids.max").read_text() == "8"


def test_detect_v2_restart_from_leaf_uses_parent(fake_v2: FakeCgroup2) -> None:
    """A daemon restarted inside <own>/daemon puts jobs in <own>/jobs again, not deeper."""
    _detect_v2(fake_v2)
    again = _detect_v2(fake_v2, membership=f"{OWN}/daemon")
    assert again.jobs == fake_v2.root / OWN.lstrip("/") / "jobs"


def test_detect_v2_cgroup_root_is_parent(fake_v2: FakeCgroup2) -> None:
    """With cgroup_root set, job groups go under <cgroup_root>/jobs, made if missing."""
    backend = _detect_v2(fake_v2, cgroup_root="/pistond.slice")
    assert backend.jobs == fake_v2.root / "pistond.slice" / "jobs"
    assert _lines(fake_v2.root / OWN.lstrip("/") / "cgroup.procs") == ["100", "101"]


def test_detect_v2_missing_controller_raises(fake_v2: FakeCgroup2) -> None:
    """A v2 group without the memory controller delegated stops the daemon with a clear error."""
    (fake_v2.root / OWN.lstrip("/") / "cgroup.controllers").write_text("cpu pids")
    with pytest.raises(SandboxError, match="controller memory is not available"):
        _detect_v2(fake_v2)


def test_v2_create_writes_limits(fake_v2: FakeCgroup2) -> None:
    """create writes memory.max, memory.swap.max=0, memory.oom.group=1 and pids.max."""
    backend = _detect_v2(fake_v2)
    group = backend.create("box-3-run-17", LIMITS)
    path = backend.jobs / "box-3-run-17"
    assert group.name == "box-3-run-17"
    assert group.procs_files == (str(path / "cgroup.procs"),)
    assert (path / "memory.max").read_text() == str(32 * MiB)
    assert (path / "memory.swap.max").read_text() == "0"
    assert (path / "memory.oom.group").read_text() == "1"
    assert (path / "pids.max").read_text() == "8"


def test_v2_create_without_memory_limit_keeps_max(fake_v2: FakeCgroup2) -> None:
    """A None memory limit leaves memory.max at max but still turns swap off."""
    backend = _detect_v2(fake_v2)
    backend.create("box-1-run-1", CgroupLimits(memory_bytes=None, max_processes=4))
    path = backend.jobs / "box-1-run-1"
    assert (path / "memory.max").read_text() == "max\n"
    assert (path / "memory.swap.max").read_text() == "0"


def test_v2_create_failure_removes_group(fake_v2: FakeCgroup2) -> None:
    """A refused limit removes the new group and raises an error naming only the group."""
    backend = _detect_v2(fake_v2)
    fake_v2.refuse.add("pids.max")
    with pytest.raises(SandboxError) as raised:
        backend.create("box-2-run-5", LIMITS)
    assert "box-2-run-5" in str(raised.value)
    assert str(fake_v2.root) not in str(raised.value)
    assert not (backend.jobs / "box-2-run-5").exists()


def test_v2_create_rejects_taken_and_bad_names(fake_v2: FakeCgroup2) -> None:
    """Names must be new, and one plain path component."""
    backend = _detect_v2(fake_v2)
    backend.create("box-1-run-1", LIMITS)
    with pytest.raises(SandboxError, match="already exists"):
        backend.create("box-1-run-1", LIMITS)
    for bad in ("../escape", "a/b", "", ".hidden"):
        with pytest.raises(SandboxError, match="invalid cgroup name"):
            backend.create(bad, LIMITS)


def test_v2_readings_parsed(fake_v2: FakeCgroup2) -> None:
    """cpu.stat, memory.peak, memory.events, pids.events and cgroup.events are parsed."""
    backend = _detect_v2(fake_v2)
    group = backend.create("box-1-run-1", LIMITS)
    path = backend.jobs / "box-1-run-1"
    assert (group.cpu_time_ns(), group.memory_peak()) == (0, 0)
    assert not group.oom_killed()
    assert not group.pids_limit_hit()
    assert not group.populated()
    (path / "cpu.stat").write_text("usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\n")
    (path / "memory.peak").write_text("33550000\n")
    (path / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n")
    (path / "pids.events").write_text("max 3\n")
    (path / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    assert group.cpu_time_ns() == 1_234_567_000
    assert group.memory_peak() == 33_550_000
    assert group.oom_killed()
    assert group.pids_limit_hit()
    assert group.populated()


def test_v2_memory_peak_tracks_current_without_peak_file(fake_v2: FakeCgroup2) -> None:
    """Without memory.peak the highest memory.current seen while polling is the peak."""
    backend = _detect_v2(fake_v2)
    group = backend.create("box-1-run-1", LIMITS)
    path = backend.jobs / "box-1-run-1"
    (path / "memory.peak").unlink()
    for current in (1000, 9000, 4000):
        (path / "memory.current").write_text(f"{current}\n")
        group.cpu_time_ns()
    (path / "memory.current").write_text("0\n")
    assert group.memory_peak() == 9000


def test_v2_kill_writes_cgroup_kill(fake_v2: FakeCgroup2) -> None:
    """kill writes 1 to the group's cgroup.kill, which empties it."""
    backend = _detect_v2(fake_v2)
    group = backend.create("box-1-run-1", LIMITS)
    _kernfs.write(Path(group.procs_files[0]), "4242", group="test")
    assert group.populated()
    group.kill()
    assert (f"{OWN.lstrip('/')}/jobs/box-1-run-1/cgroup.kill", "1") in fake_v2.writes
    assert not group.populated()


def test_v2_remove_rmdirs_and_is_idempotent(fake_v2: FakeCgroup2) -> None:
    """remove rmdirs the group; a second remove does nothing; a busy group raises."""
    backend = _detect_v2(fake_v2)
    group = backend.create("box-1-run-1", LIMITS)
    busy = backend.create("box-1-run-2", LIMITS)
    _kernfs.write(Path(busy.procs_files[0]), "4242", group="test")
    group.remove()
    group.remove()
    assert not (backend.jobs / "box-1-run-1").exists()
    with pytest.raises(SandboxError, match=r"box-1-run-2: cannot remove \(Device or resource busy"):
        busy.remove()


def test_v2_reset_writes_only_changed_limits(fake_v2: FakeCgroup2) -> None:
    """A reused group gets only the limits that changed; a lifted memory limit is written max."""
    backend = _detect_v2(fake_v2)
    group = backend.create("box-1-run", LIMITS)
    path = backend.jobs / "box-1-run"
    fake_v2.writes.clear()
    group.reset(LIMITS)
    assert [name for name, _ in fake_v2.writes] == []
    group.reset(CgroupLimits(memory_bytes=None, max_processes=16))
    written = {name.rsplit("/", 1)[1]: value for name, value in fake_v2.writes}
    assert written == {"memory.max": "max", "pids.max": "16"}
    assert (path / "memory.max").read_text() == "max"


def test_v2_readings_count_from_the_reset(fake_v2: FakeCgroup2) -> None:
    """CPU, peak, OOM kills and pids events of a reused group are the new stage's only, and
    page cache held from before is not counted as the new stage's memory."""
    backend = _detect_v2(fake_v2)
    group = backend.create("box-1-run", LIMITS)
    path = backend.jobs / "box-1-run"
    (path / "cpu.stat").write_text("usage_usec 5000\n")
    (path / "memory.events").write_text("oom_kill 1\n")
    (path / "pids.events").write_text("max 2\n")
    (path / "memory.current").write_text("4000\n")
    group.reset(LIMITS)
    assert (group.cpu_time_ns(), group.memory_peak()) == (0, 0)
    assert not group.oom_killed()
    assert not group.pids_limit_hit()
    (path / "cpu.stat").write_text("usage_usec 7500\n")
    (path / "memory.peak").write_text("10000\n")
    (path / "memory.events").write_text("oom_kill 2\n")
    assert group.cpu_time_ns() == 2_500_000
    assert group.memory_peak() == 6000
    assert group.oom_killed()


def test_v2_killed_group_is_made_anew(fake_v2: FakeCgroup2) -> None:
    """After cgroup.kill the group is removed and made again before its next stage (clone3
    into a killed group kills the child on some kernels), with its limits written again."""
    backend = _detect_v2(fake_v2)
    group = backend.create("box-1-run", LIMITS)
    path = backend.jobs / "box-1-run"
    group.kill()
    (path / "memory.max").write_text("stale")
    fake_v2.writes.clear()
    group.reset(LIMITS)
    assert (path / "memory.max").read_text() == str(32 * MiB)
    assert (path / "memory.oom.group").read_text() == "1"
    assert (path / "pids.max").read_text() == "8"
    group.reset(LIMITS)
    assert "box-1-run/memory.max" in [name.split("jobs/", 1)[-1] for name, _ in fake_v2.writes]


def test_v1_reset_raises_memsw_first_and_lowers_it_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, v1_files: None
) -> None:
    """The kernel keeps memsw >= memory: a reused group's memsw is raised before memory and
    lowered after it; the peak restarts (memory.max_usage_in_bytes is written)."""
    root = tmp_path / "cgroup"
    backend = _detect_files(tmp_path, _v1_lines(root, unified=True), DaemonConfig())
    group = backend.create("box-1-run", LIMITS)
    written: list[tuple[str, str]] = []
    real_write = _kernfs.write

    def record(path: Path, value: str, *, group: str) -> None:
        written.append((path.name, value))
        real_write(path, value, group=group)

    monkeypatch.setattr(_kernfs, "write", record)
    group.reset(CgroupLimits(memory_bytes=64 * MiB, max_processes=8))
    names = [name for name, _ in written]
    assert names.index("memory.memsw.limit_in_bytes") < names.index("memory.limit_in_bytes")
    assert ("memory.max_usage_in_bytes", "0") in written
    written.clear()
    group.reset(CgroupLimits(memory_bytes=16 * MiB, max_processes=8))
    names = [name for name, _ in written]
    assert names.index("memory.limit_in_bytes") < names.index("memory.memsw.limit_in_bytes")
    assert "pids.max" not in names


def test_v1_readings_count_from_the_reset(tmp_path: Path, v1_files: None) -> None:
    """A reused v1 group: CPU from zero (cpuacct.usage reset), peak above what it held, OOM
    kills since the reset."""
    root = tmp_path / "cgroup"
    backend = _detect_files(tmp_path, _v1_lines(root, unified=False), DaemonConfig())
    group = backend.create("box-1-run", LIMITS)
    assert group.cpuacct is not None
    (group.memory / "memory.usage_in_bytes").write_text(f"{3 * MiB}\n")
    (group.memory / "memory.oom_control").write_text("under_oom 0\noom_kill 4\n")
    group.reset(LIMITS)
    assert (group.cpuacct / "cpuacct.usage").read_text() == "0"
    (group.memory / "memory.max_usage_in_bytes").write_text(f"{10 * MiB}\n")
    assert group.memory_peak() == 7 * MiB
    assert not group.oom_killed()
    (group.memory / "memory.oom_control").write_text("under_oom 0\noom_kill 5\n")
    assert group.oom_killed()


def test_v2_cleanup_stale_kills_and_removes(fake_v2: FakeCgroup2) -> None:
    """cleanup_stale kills and removes every group left in jobs/ and counts them."""
    backend = _detect_v2(fake_v2)
    for name in ("box-1-run-1", "box-2-compile-2"):
        group = backend.create(name, LIMITS)
        _kernfs.write(Path(group.procs_files[0]), "777", group="test")
    restarted = _detect_v2(fake_v2, membership=f"{OWN}/daemon")
    assert restarted.cleanup_stale() == 2
    assert _kernfs.subdirectories(backend.jobs) == []
    assert restarted.cleanup_stale() == 0


# --- detection of the other layouts (plain files) ------------------------------------------


def _v1_lines(root: Path, *, unified: bool) -> list[str]:
    lines = [
        f"/ {root} rw - tmpfs tmpfs rw,mode=755",
        f"/ {root}/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct",
        f"/ {root}/memory rw - cgroup cgroup rw,memory",
        f"/ {root}/pids rw - cgroup cgroup rw,pids",
        f"/ {root}/freezer rw - cgroup cgroup rw,freezer",
        f"/ {root}/systemd rw - cgroup cgroup rw,xattr,name=systemd",
    ]
    if unified:
        lines.append(f"/ {root}/unified rw - cgroup2 cgroup2 rw,nsdelegate")
    return lines


V1_SELF = (
    "6:freezer:/\n5:pids:/\n4:memory:/process_api/abc\n2:cpu,cpuacct:/\n1:name=systemd:/\n0::/\n"
)


V1_FILES = {
    "memory": {
        "memory.limit_in_bytes": "9223372036854771712\n",
        "memory.memsw.limit_in_bytes": "9223372036854771712\n",
        "memory.usage_in_bytes": "0\n",
        "memory.max_usage_in_bytes": "0\n",
        "memory.failcnt": "0\n",
        "memory.swappiness": "60\n",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
    },
    "pids": {"pids.max": "max\n", "pids.events": "max 0\n"},
    "cpu,cpuacct": {"cpuacct.usage": "0\n"},
    "freezer": {"freezer.state": "THAWED\n"},
    "unified": {
        "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
        "cgroup.events": "populated 0\nfrozen 0\n",
        "cgroup.kill": "",
    },
}
"""The control files a v1 or unified group gets from the kernel, by hierarchy."""


@pytest.fixture
def v1_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """mkdir under tmp_path/cgroup fills a group with its hierarchy's control files."""
    real_mkdir = os.mkdir
    root = tmp_path / "cgroup"

    def mkdir(path: str | Path, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        real_mkdir(path, mode, dir_fd=dir_fd)
        target = Path(path)
        if dir_fd is None and target.is_relative_to(root) and "pistond-jobs" in target.parts[:-1]:
            hierarchy = target.relative_to(root).parts[0]
            files = {"cgroup.procs": "", "tasks": "", **V1_FILES.get(hierarchy, {})}
            for name, text in files.items():
                (target / name).write_text(text)

    monkeypatch.setattr(os, "mkdir", mkdir)


def _detect_files(tmp_path: Path, lines: list[str], config: DaemonConfig) -> HybridBackend:
    root = tmp_path / "cgroup"
    for hierarchy in ("cpu,cpuacct", "memory/process_api/abc", "pids", "freezer", "unified"):
        os.makedirs(root / hierarchy)
    backend = detect(
        config,
        root=root,
        proc_self_cgroup=_self_cgroup(tmp_path / "self_cgroup", V1_SELF),
        mountinfo=_mountinfo(tmp_path / "mountinfo", *lines),
    )
    assert isinstance(backend, HybridBackend)
    return backend


def test_detect_hybrid_uses_own_groups(tmp_path: Path) -> None:
    """Hybrid: each hierarchy's parent is the daemon's own group; co-mounted cpuacct works."""
    root = tmp_path / "cgroup"
    backend = _detect_files(tmp_path, _v1_lines(root, unified=True), DaemonConfig())
    assert backend.kind == "hybrid"
    assert backend.memory == root / "memory/process_api/abc/pistond-jobs"
    assert backend.pids == root / "pids/pistond-jobs"
    assert backend.unified == root / "unified/pistond-jobs"
    # plain files offer no cgroup.kill nor cpu.stat: freezer and cpuacct take over
    assert backend.cpuacct == root / "cpu,cpuacct/pistond-jobs"
    assert backend.freezer == root / "freezer/pistond-jobs"
    assert all(d.is_dir() for d in backend.jobs_dirs)


def test_detect_v1_only(tmp_path: Path) -> None:
    """v1 controllers without a cgroup2 mount give the v1 backend with a freezer."""
    root = tmp_path / "cgroup"
    backend = _detect_files(tmp_path, _v1_lines(root, unified=False), DaemonConfig())
    assert backend.kind == "v1"
    assert backend.unified is None
    assert backend.freezer == root / "freezer/pistond-jobs"


def test_detect_v1_cgroup_root(tmp_path: Path) -> None:
    """cgroup_root replaces the daemon's own group in every hierarchy."""
    root = tmp_path / "cgroup"
    config = DaemonConfig(cgroup_root="/pistond")
    backend = _detect_files(tmp_path, _v1_lines(root, unified=True), config)
    assert backend.memory == root / "memory/pistond/pistond-jobs"
    assert backend.pids == root / "pids/pistond/pistond-jobs"


def test_detect_none_without_cgroup_mounts(tmp_path: Path) -> None:
    """No cgroup filesystem under the root gives the none backend, whose groups measure 0."""
    backend = detect(
        DaemonConfig(),
        root=tmp_path,
        proc_self_cgroup=_self_cgroup(tmp_path / "self_cgroup", "0::/\n"),
        mountinfo=_mountinfo(tmp_path / "mountinfo", "/ / rw - ext4 /dev/root rw"),
    )
    assert isinstance(backend, NoneBackend)
    assert backend.kind == "none"
    group = backend.create("box-1-run-1", LIMITS)
    group.kill()
    assert (group.procs_files, group.cpu_time_ns(), group.memory_peak()) == ((), 0, 0)
    assert not group.oom_killed()
    assert not group.pids_limit_hit()
    assert not group.populated()
    group.remove()
    assert backend.cleanup_stale() == 0


def test_detect_rejects_group_outside_mount(tmp_path: Path) -> None:
    """A membership outside the mounted subtree is an error that points at cgroup_root."""
    root = tmp_path / "cgroup"
    lines = [f"/docker/abc {root} rw - cgroup2 cgroup2 rw"]
    root.mkdir()
    with pytest.raises(SandboxError, match="PISTON_CGROUP_ROOT"):
        detect(
            DaemonConfig(),
            root=root,
            proc_self_cgroup=_self_cgroup(tmp_path / "self_cgroup", "0::/elsewhere\n"),
            mountinfo=_mountinfo(tmp_path / "mountinfo", *lines),
        )


def test_mountinfo_escapes_decoded(tmp_path: Path) -> None:
    """Octal escapes in mountinfo paths (a space is \\040) are decoded."""
    mounts = read_mounts(_mountinfo(tmp_path / "mi", r"/ /sys/fs/my\040cg rw - cgroup2 cgroup2 rw"))
    assert [m.point for m in mounts] == [Path("/sys/fs/my cg")]


def test_hybrid_limits_memory_before_memsw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, v1_files: None
) -> None:
    """v1 memory.limit_in_bytes is written before memsw with the same value, then pids.max."""
    root = tmp_path / "cgroup"
    backend = _detect_files(tmp_path, _v1_lines(root, unified=True), DaemonConfig())
    written: list[tuple[str, str]] = []
    real_write = _kernfs.write

    def record(path: Path, value: str, *, group: str) -> None:
        written.append((path.name, value))
        real_write(path, value, group=group)

    monkeypatch.setattr(_kernfs, "write", record)
    group = backend.create("box-1-run-1", LIMITS)
    names = [name for name, _ in written]
    assert names.index("memory.limit_in_bytes") < names.index("memory.memsw.limit_in_bytes")
    assert ("memory.memsw.limit_in_bytes", str(32 * MiB)) in written
    assert ("pids.max", "8") in written
    assert len(group.procs_files) == 5


def test_cgroup_limits_validated() -> None:
    """Limits reject a non-positive memory or process count."""
    with pytest.raises(ValueError, match="memory_bytes"):
        CgroupLimits(memory_bytes=0, max_processes=1)
    with pytest.raises(ValueError, match="max_processes"):
        CgroupLimits(memory_bytes=None, max_processes=0)


def test_v1_readings_parsed(tmp_path: Path, v1_files: None) -> None:
    """v1 readings: cpuacct.usage, max_usage_in_bytes, oom_control, pids.events, cgroup.procs."""
    root = tmp_path / "cgroup"
    backend = _detect_files(tmp_path, _v1_lines(root, unified=False), DaemonConfig())
    group = backend.create("box-1-run-1", LIMITS)
    assert group.cpuacct is not None
    (group.cpuacct / "cpuacct.usage").write_text("987654321\n")
    (group.memory / "memory.max_usage_in_bytes").write_text(f"{31 * MiB}\n")
    (group.memory / "memory.oom_control").write_text(
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"
    )
    (group.pids / "pids.events").write_text("max 5\n")
    (group.pids / "cgroup.procs").write_text("")
    (group.memory / "cgroup.procs").write_text("4242\n")
    assert group.cpu_time_ns() == 987_654_321
    assert group.memory_peak() == 31 * MiB
    assert group.oom_killed()
    assert group.pids_limit_hit()
    assert group.populated()


def test_v1_oom_without_oom_kill_counter(tmp_path: Path, v1_files: None) -> None:
    """Old kernels without oom_kill: under_oom, or failures with the peak at the limit, count."""
    root = tmp_path / "cgroup"
    backend = _detect_files(tmp_path, _v1_lines(root, unified=False), DaemonConfig())
    group = backend.create("box-1-run-1", LIMITS)
    control = group.memory / "memory.oom_control"
    (group.memory / "memory.failcnt").write_text("0\n")
    (group.memory / "memory.max_usage_in_bytes").write_text(f"{32 * MiB}\n")
    control.write_text("oom_kill_disable 0\nunder_oom 0\n")
    assert not group.oom_killed()
    control.write_text("oom_kill_disable 0\nunder_oom 1\n")
    assert group.oom_killed()
    control.write_text("oom_kill_disable 0\nunder_oom 0\n")
    (group.memory / "memory.failcnt").write_text("3\n")
    assert group.oom_killed()


# --- the kernel at hand ---------------------------------------------------------------------

PYTHON = "/usr/bin/python3.11"
CGROUP_ROOT = Path("/sys/fs/cgroup")
JOIN = """
import os, sys
count = int(sys.argv[1])
for name in sys.argv[2 : 2 + count]:
    with open(name, "w") as procs:
        procs.write(str(os.getpid()))
os.execv(sys.argv[2 + count], sys.argv[2 + count :])
"""
HOG = """
chunks = []
while True:
    chunks.append(b"x" * (1 << 20))
"""
FORK_BOMB = """
import os, time
children, failures = 0, 0
for _ in range(32):
    try:
        pid = os.fork()
    except OSError:
        failures += 1
        continue
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    children += 1
print(children, failures, flush=True)
"""
BUSY = """
import time
start = time.process_time()
while time.process_time() - start < 0.3:
    pass
"""
STOPPED_TREE = """
import os, signal, sys
for _ in range(3):
    if os.fork() == 0:
        os.kill(os.getpid(), signal.SIGSTOP)
        os._exit(0)
print("ready", flush=True)
os.kill(os.getpid(), signal.SIGSTOP)
"""


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create cgroups")
    if not Path(PYTHON).exists():
        pytest.skip(f"{PYTHON} is not installed")


def _mounted() -> list[Mount]:
    return [
        m for m in read_mounts(Path("/proc/self/mountinfo")) if m.point.is_relative_to(CGROUP_ROOT)
    ]


@attrs.define
class Started:
    """Processes started into groups, killed and reaped at teardown whatever happens."""

    processes: list[subprocess.Popen[str]] = attrs.field(factory=list)

    def start(self, group: RunGroup, code: str) -> subprocess.Popen[str]:
        files = list(group.procs_files)
        argv = [PYTHON, "-c", JOIN, str(len(files)), *files, PYTHON, "-c", code]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
            if process.stdout is not None:
                process.stdout.close()


@pytest.fixture
def started() -> Iterator[Started]:
    processes = Started()
    try:
        yield processes
    finally:
        processes.close()


@contextmanager
def _no_groups_left(backend: HybridBackend | V2Backend) -> Iterator[None]:
    """Teardown: every jobs directory is empty (then removed), else the test fails."""
    leftovers: list[str] = []
    try:
        yield
    finally:
        for directory in backend.jobs_dirs:
            leftovers += [f"{directory.name}/{n}" for n in _kernfs.subdirectories(directory)]
        if leftovers:
            backend.cleanup_stale()
        for directory in backend.jobs_dirs:
            _kernfs.remove_dir(directory, group="test")
    assert not leftovers, f"cgroups left behind: {leftovers}"


def _real_backend(tmp_path: Path, *, unified: bool) -> HybridBackend:
    _need_root()
    if not any("memory" in m.controllers for m in _mounted()):
        pytest.skip("no v1 memory hierarchy on this host (not hybrid or v1)")
    mountinfo = Path("/proc/self/mountinfo")
    if not unified:
        lines = mountinfo.read_text().splitlines()
        mountinfo = tmp_path / "mountinfo"
        mountinfo.write_text("".join(f"{line}\n" for line in lines if " - cgroup2 " not in line))
    backend = detect(
        DaemonConfig(), mountinfo=mountinfo, jobs_group=f"pistond-test-{uuid.uuid4().hex[:12]}"
    )
    assert isinstance(backend, HybridBackend)
    return backend


@pytest.fixture
def hybrid(tmp_path: Path) -> Iterator[HybridBackend]:
    backend = _real_backend(tmp_path, unified=True)
    if backend.kind != "hybrid":
        for directory in backend.jobs_dirs:
            _kernfs.remove_dir(directory, group="test")
        pytest.skip("no cgroup2 hierarchy beside the v1 ones")
    with _no_groups_left(backend):
        yield backend


@pytest.fixture
def v1_only(tmp_path: Path) -> Iterator[HybridBackend]:
    backend = _real_backend(tmp_path, unified=False)
    if backend.freezer is None:
        for directory in backend.jobs_dirs:
            _kernfs.remove_dir(directory, group="test")
        pytest.skip("no v1 freezer hierarchy on this host")
    with _no_groups_left(backend):
        yield backend


@pytest.fixture
def unified() -> Iterator[V2Backend]:
    _need_root()
    cgroup2 = [
        m.point
        for m in _mounted()
        if m.fstype == "cgroup2" and m.point in (CGROUP_ROOT, CGROUP_ROOT / "unified")
    ]
    if not cgroup2:
        pytest.skip("no cgroup2 hierarchy mounted")
    backend = V2Backend.prepare(
        cgroup2[-1],
        own_group=False,
        required=frozenset(),
        wanted=(),
        jobs_group=f"pistond-test-{uuid.uuid4().hex[:12]}",
    )
    with _no_groups_left(backend):
        yield backend


def _empty(group: RunGroup) -> None:
    """Kill until the group has no task, as the supervisor does."""
    deadline = time.monotonic() + 5
    while group.populated():
        assert time.monotonic() < deadline, "tasks survived the kill"
        group.kill()
        time.sleep(0.005)


def test_hybrid_detected_on_this_host(hybrid: HybridBackend) -> None:
    """Hybrid here: v1 memory under the daemon's own (nested) group, kill by unified cgroup.kill."""
    own_memory = next(
        line.split(":", 2)[2]
        for line in Path("/proc/self/cgroup").read_text().splitlines()
        if line.split(":")[1] == "memory"
    )
    assert hybrid.memory.parent == CGROUP_ROOT / "memory" / own_memory.lstrip("/")
    assert hybrid.unified_kill
    assert hybrid.unified is not None


def test_hybrid_memory_hog_is_oom_killed(hybrid: HybridBackend, started: Started) -> None:
    """A program allocating past 32 MiB is OOM-killed; oom_killed and memory_peak say so."""
    group = hybrid.create("box-1-run-1", LIMITS)
    process = started.start(group, HOG)
    assert process.wait(timeout=20) == -signal.SIGKILL
    assert group.oom_killed()
    assert 24 * MiB <= group.memory_peak() <= 33 * MiB
    _empty(group)
    group.remove()


def test_hybrid_fork_bomb_hits_pids_limit(hybrid: HybridBackend, started: Started) -> None:
    """With pids.max 8 a fork loop gets 7 children, the rest fail, and pids_limit_hit is True."""
    group = hybrid.create("box-1-run-2", LIMITS)
    process = started.start(group, FORK_BOMB)
    assert process.stdout is not None
    assert process.stdout.readline().split() == ["7", "25"]
    assert process.wait(timeout=20) == 0
    assert group.pids_limit_hit()
    assert not group.oom_killed()
    _empty(group)
    group.remove()


def test_hybrid_busy_loop_counts_cpu_time(hybrid: HybridBackend, started: Started) -> None:
    """0.3 s of busy loop shows as at least 0.25 s of the group's CPU time."""
    group = hybrid.create("box-1-run-3", LIMITS)
    assert started.start(group, BUSY).wait(timeout=20) == 0
    assert 250_000_000 <= group.cpu_time_ns() <= 5_000_000_000
    assert not group.pids_limit_hit()
    group.remove()


def _stopped_tree_is_killed(backend: HybridBackend | V2Backend, started: Started) -> None:
    group = backend.create("box-1-run-4", LIMITS)
    process = started.start(group, STOPPED_TREE)
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"
    assert group.populated()
    _empty(group)
    assert process.wait(timeout=10) == -signal.SIGKILL
    group.remove()
    group.remove()
    assert not any(os.path.exists(os.path.dirname(f)) for f in group.procs_files)


def test_hybrid_kill_empties_stopped_tree(hybrid: HybridBackend, started: Started) -> None:
    """cgroup.kill empties a group of SIGSTOPped processes; remove leaves no directory."""
    _stopped_tree_is_killed(hybrid, started)


def test_v1_freezer_kill_empties_stopped_tree(v1_only: HybridBackend, started: Started) -> None:
    """Without a unified hierarchy, freeze + SIGKILL + thaw empties a stopped process tree."""
    assert v1_only.kind == "v1"
    _stopped_tree_is_killed(v1_only, started)


def test_hybrid_cleanup_stale_removes_leftovers(hybrid: HybridBackend, started: Started) -> None:
    """A new daemon's cleanup_stale kills and removes the groups a previous one left."""
    busy = hybrid.create("box-1-run-5", LIMITS)
    hybrid.create("box-2-run-6", LIMITS)
    process = started.start(busy, STOPPED_TREE)
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"
    restarted = detect(DaemonConfig(), jobs_group=hybrid.memory.name)
    assert restarted.cleanup_stale() == 2
    assert process.wait(timeout=10) == -signal.SIGKILL
    assert not any(_kernfs.subdirectories(d) for d in hybrid.jobs_dirs)


def test_unified_kill_without_controllers(unified: V2Backend, started: Started) -> None:
    """The v2 backend's cgroup.kill empties a real cgroup2 group that has no controllers."""
    assert unified.controllers == frozenset()
    _stopped_tree_is_killed(unified, started)


def test_unified_cpu_stat_without_controllers(unified: V2Backend, started: Started) -> None:
    """cpu.stat usage_usec counts a busy loop in a real cgroup2 group without controllers."""
    group = unified.create("box-1-run-7", LIMITS)
    assert started.start(group, BUSY).wait(timeout=20) == 0
    assert 250_000_000 <= group.cpu_time_ns() <= 5_000_000_000
    assert (group.memory_peak(), group.oom_killed(), group.pids_limit_hit()) == (0, False, False)
    group.remove()
