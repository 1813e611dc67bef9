"""An API key's ``max_limits``: the most its requests may ask of each limit.

Applied to the RPC params of an execute, a WebSocket ``init`` or a submission, after Piston's
translation (:func:`pistond.gateway.v2.execute_params`) and before the daemon validates them:

- a limit the request names above the key's cap: 403 ``{"message": "this API key may not
  request run_timeout above 3000"}``;
- a limit it leaves out (or gives as ``-1`` memory, which means "the configured one") is set to
  the key's cap, or to the configured limit when that is lower, so the key never gets more than
  its cap from the configured defaults either.

The configured limits are the daemon's defaults (its ``status``). A runtime whose own limit is
lower still (a package's or ``PISTON_LIMIT_OVERRIDES``' override) answers a filled-in value
above it with Piston's ``... cannot exceed the configured limit of N``;
:func:`relaxed` lowers such a value to ``N`` so that the request can be sent again.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

from pistond.gateway.errors import HttpError

if TYPE_CHECKING:
    from collections.abc import Mapping

_CONFIGURED: Final = re.compile(r"([a-z_]+) cannot exceed the configured limit of (\d+)")


def cap_request(
    params: dict[str, Any], caps: Mapping[str, int], configured: Mapping[str, int] | None
) -> dict[str, int]:
    """Apply ``caps`` to ``params`` in place; the values filled in, by name.

    Args:
        params: the RPC params (changed in place).
        caps: the key's ``max_limits``.
        configured: the daemon's configured limits (``-1`` / ``0``: none); None when unknown.

    Raises:
        HttpError: 403 for a requested value above its cap.
    """
    filled: dict[str, int] = {}
    for name, cap in caps.items():
        value = params.get(name)
        if value is None:
            limit = (configured or {}).get(name, 0)
            params[name] = filled[name] = cap if limit <= 0 else min(cap, limit)
        elif isinstance(value, int) and not isinstance(value, bool) and value > cap:
            raise HttpError(403, f"this API key may not request {name} above {cap}")
    return filled


def relaxed(params: dict[str, Any], filled: dict[str, int], message: str) -> bool:
    """Lower a filled-in limit the daemon refused as above a runtime's own (see the module's
    description); whether it did, so that the request may be sent again."""
    match = _CONFIGURED.fullmatch(message)
    if match is None:
        return False
    name, limit = match.group(1), int(match.group(2))
    if name not in filled or not 0 < limit < filled[name]:
        return False
    params[name] = filled[name] = limit
    return True
