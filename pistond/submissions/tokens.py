"""Submission tokens: 128 random bits, the only way to read a submission."""

from __future__ import annotations

import re
import secrets
from typing import Final

TOKEN_BYTES: Final = 16
"""128 bits from the operating system's CSPRNG."""
_TOKEN: Final = re.compile(r"[0-9a-f]{32}")


def new_token() -> str:
    """A fresh token: 32 lower-case hex digits."""
    return secrets.token_hex(TOKEN_BYTES)


def is_token(text: str) -> bool:
    """Whether ``text`` has the shape of a token (anything else is looked up nowhere)."""
    return _TOKEN.fullmatch(text) is not None
