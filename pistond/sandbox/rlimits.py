"""Resource limits of the sandboxed program: only ever lowered, soft and hard both set.

Applied in the program's process before the privilege drop (DESIGN.md step 5); without
CAP_SYS_RESOURCE the program can then raise a soft limit only up to its hard limit.

- CORE 1 (soft and hard): no core files, since one byte is below the smallest dump, and the
  kernel skips a pipe ``core_pattern`` helper (apport, systemd-coredump) for exactly this
  value, so a crashing job never starts a root process on the host. 0 would still run it.
- FSIZE ``max_file_size``: bigger writes get SIGXFSZ / EFBIG.
- NOFILE ``max_open_files``.
- STACK: soft kept (at most 64 MiB), hard capped at 64 MiB, enough for Python, Java and deep
  recursion in compiled programs; memory is bounded by the cgroup anyway.
- MEMLOCK 64 KiB: nothing in a sandbox needs to pin memory.
- NPROC ``max_processes``: counts every process of the uid, which is unique to the box slot,
  so it bounds the box (a backstop behind the cgroup's pids.max).
- MSGQUEUE 0: no POSIX message-queue memory.
- CPU: ``cpu_time_ms`` rounded up to seconds, plus one second, as SIGKILL backstop behind the
  daemon's cgroup CPU polling (per process, so it is only a backstop).
"""

from __future__ import annotations

import resource
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from pistond.sandbox.spec import StageLimits

STACK_MAX: Final = 64 * 1024 * 1024
MEMLOCK_MAX: Final = 64 * 1024
CORE_LIMIT: Final = 1
"""RLIMIT_CORE of 1 byte: see the module docstring (``do_coredump`` skips pipe helpers)."""


def wanted_limits(limits: StageLimits) -> dict[int, int]:
    """The ceiling of each RLIMIT_* resource for a stage."""
    cpu_seconds = -(-limits.cpu_time_ms // 1000) + 1
    return {
        resource.RLIMIT_CORE: CORE_LIMIT,
        resource.RLIMIT_FSIZE: limits.max_file_size,
        resource.RLIMIT_NOFILE: limits.max_open_files,
        resource.RLIMIT_STACK: STACK_MAX,
        resource.RLIMIT_MEMLOCK: MEMLOCK_MAX,
        resource.RLIMIT_NPROC: limits.max_processes,
        resource.RLIMIT_MSGQUEUE: 0,
        resource.RLIMIT_CPU: cpu_seconds,
    }


def apply(limits: StageLimits) -> None:
    """Lower every limit of this process to its ceiling (never raising one).

    Raises:
        OSError: the kernel refused a limit.
    """
    for which, ceiling in wanted_limits(limits).items():
        soft, hard = resource.getrlimit(which)
        new_hard = _lower(hard, ceiling)
        new_soft = _lower(soft, new_hard)
        if which in (resource.RLIMIT_CPU, resource.RLIMIT_CORE):
            new_soft = new_hard
        try:
            resource.setrlimit(which, (new_soft, new_hard))
        except (OSError, ValueError) as exc:
            raise OSError(getattr(exc, "errno", 0), f"rlimit {which}: {exc}") from None


def _lower(current: int, ceiling: int) -> int:
    """The smaller of two limits, RLIM_INFINITY being the largest."""
    if current == resource.RLIM_INFINITY:
        return ceiling
    return min(current, ceiling)
