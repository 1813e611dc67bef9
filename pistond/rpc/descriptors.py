"""Open-file limits of a server: lift the soft RLIMIT_NOFILE to what its connection cap needs."""

from __future__ import annotations

import logging
import resource

logger = logging.getLogger(__name__)


def lift_open_files_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE to ``wanted`` descriptors (up to the hard limit).

    Never lowers it. Logs a warning when the hard limit is below ``wanted``.

    Returns:
        The soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        logger.warning(
            "open files are limited to %d, fewer than the %d the connection cap may need",
            hard,
            wanted,
        )
    if soft != resource.RLIM_INFINITY and target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft
