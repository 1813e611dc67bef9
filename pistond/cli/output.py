"""``piston --json``: results as JSON on stdout, through the one converter."""

from __future__ import annotations

import json
import sys
from typing import Any

from pistond.convert import converter


def emit_json(value: Any) -> None:
    """Print ``value`` (attrs records, lists, dicts) as indented JSON; bytes as UTF-8 text."""
    json.dump(converter.unstructure(value), sys.stdout, indent=2, default=_json_bytes)
    sys.stdout.write("\n")


def _json_bytes(value: object) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
