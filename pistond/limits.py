"""Limit resolution: configuration, then the package's overrides, then PISTON_LIMIT_OVERRIDES.

The resolved values are both the defaults and the caps of a request: a request may only lower
them (PROTOCOL.md; piston-v2.md §3.5).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from pistond.config import LIMIT_KEYS, DaemonConfig, Limits
from pistond.sandbox.spec import StageLimits

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pistond.models import StageName


def runtime_limits(
    config: DaemonConfig,
    language: str,
    package_overrides: Mapping[str, int],
) -> Limits:
    """The limits of one runtime language.

    Per key, the first truthy of: ``PISTON_LIMIT_OVERRIDES[language][key]``, the package's
    ``limit_overrides[key]``, the global setting (an override of 0 falls through, as in Piston).
    """
    configured = config.limit_overrides.get(language, {})
    values = {}
    for key in LIMIT_KEYS:
        values[key] = (
            configured.get(key) or package_overrides.get(key) or getattr(config.limits, key)
        )
    return Limits(**values)


def stage_limits(limits: Limits, stage: StageName, *, output_max_size: int) -> StageLimits:
    """The sandbox limits of one stage from resolved (and request-lowered) limits."""
    prefix = stage.value
    memory = getattr(limits, f"{prefix}_memory_limit")
    return StageLimits(
        wall_time_ms=getattr(limits, f"{prefix}_timeout"),
        cpu_time_ms=getattr(limits, f"{prefix}_cpu_time"),
        memory_bytes=None if memory == -1 else memory,
        max_processes=limits.max_process_count,
        max_open_files=limits.max_open_files,
        max_file_size=limits.max_file_size,
        output_max_size=output_max_size,
    )


def lowered(limits: Limits, requested: Mapping[str, int]) -> Limits:
    """``limits`` with the request's (already validated) lower values applied."""
    return attrs.evolve(limits, **dict(requested))
