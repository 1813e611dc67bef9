"""Suite-wide rule: the whole test run leaves no sandbox behind.

After the last test, no process may run as a box uid (every test daemon uses uids from 60000
up, never the host's), no box tmpfs may stay mounted, and no job cgroup may remain. Any
leftover fails the run, listed by what it is. The jobs groups of daemons that were already
running when the run started (another checkout's, a host service) are not the run's.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

BOX_UIDS = range(60_000, 2**31 - 1)
NOBODY = 65_534
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _box_processes() -> list[str]:
    listing = subprocess.run(
        ["ps", "-eo", "uid=,pid=,comm="], capture_output=True, text=True, check=True
    ).stdout
    return [
        f"process {line.strip()}"
        for line in listing.splitlines()
        if int(line.split()[0]) in BOX_UIDS and int(line.split()[0]) != NOBODY
    ]


def _box_mounts() -> list[str]:
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    return [
        f"mount {line.split()[4]}"
        for line in mounts
        if "/boxes/" in line.split()[4] and "pytest-of-" in line.split()[4]
    ]


_EARLIER_JOBS_GROUPS: set[Path] = set()
"""Jobs groups present when the run started: other daemons' (filled at session start)."""


def _jobs_groups() -> list[Path]:
    return _walk_quietly(CGROUP_ROOT, "**/pistond-jobs*")


def _job_cgroups() -> list[str]:
    """Job groups of the run's daemons that still exist (each removes its groups when it
    stops)."""
    found = []
    for jobs in _jobs_groups():
        if jobs not in _EARLIER_JOBS_GROUPS:
            found += [f"cgroup {group}" for group in _walk_quietly(jobs, "box-*") if group.is_dir()]
    return found


def _walk_quietly(root: Path, pattern: str) -> list[Path]:
    """``root.glob(pattern)``, tolerating directories that vanish while it walks (cgroups of
    other daemons on the host come and go)."""
    try:
        return list(root.glob(pattern))
    except FileNotFoundError:
        return []


def leftovers() -> list[str]:
    """Sandbox processes, box mounts and job cgroups alive now."""
    return _box_processes() + _box_mounts() + _job_cgroups()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Note the jobs groups of daemons already running on the host."""
    _EARLIER_JOBS_GROUPS.update(_jobs_groups())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if it left any sandbox behind (root only: others cannot make any)."""
    if os.geteuid() != 0 or hasattr(session.config, "workerinput"):
        return
    found = leftovers()
    if found:
        print("\nThe test run left sandboxes behind:\n  " + "\n  ".join(found[:50]))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
