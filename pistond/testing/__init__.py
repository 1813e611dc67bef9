"""The public test kit: doubles and helpers for plugin authors and pistond's own tests."""

from __future__ import annotations

from pistond.testing.conformance import check_runtime as check_runtime
from pistond.testing.daemon import DaemonProcess as DaemonProcess
from pistond.testing.fake_sandbox import FakeSandbox as FakeSandbox
from pistond.testing.fake_sandbox import FakeStage as FakeStage
from pistond.testing.fake_sandbox import stage_result as stage_result
from pistond.testing.memory_rpc import current_credentials as current_credentials
from pistond.testing.memory_rpc import open_memory_rpc as open_memory_rpc
