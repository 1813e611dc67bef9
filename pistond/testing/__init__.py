"""The public test kit: doubles and helpers for plugin authors and pistond's own tests."""

from __future__ import annotations

from pistond.testing.memory_rpc import current_credentials as current_credentials
from pistond.testing.memory_rpc import open_memory_rpc as open_memory_rpc
