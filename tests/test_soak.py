"""Soak in CI: 2,000 mixed jobs through the socket and the gateway at once (see soak.py).

Bounded on purpose (a long soak is ``tests/soak.py --jobs 10000``): every result is checked,
nothing of the daemon's sandboxes may be left, and the daemon's memory must stay flat.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest
import trio
from soak import DAEMON_SETTINGS, RSS_GROWTH_KIB, Plan, gateway_process, run_soak

from pistond.testing.daemon import DaemonProcess

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root"),
    pytest.mark.slow,
]

JOBS = 2000


def test_soak_2000_mixed_jobs_through_socket_and_gateway(tmp_path: Path) -> None:
    """Every job of every kind gets its expected result; nothing is left; RSS stays flat."""
    plan = Plan.of(JOBS)
    with (
        DaemonProcess.start(tmp_path, DAEMON_SETTINGS) as daemon,
        gateway_process(daemon, {"PISTON_GATEWAY_MAX_JOBS_PER_CLIENT": "0"}) as (_, url),
    ):
        report = trio.run(run_soak, daemon, url, plan)
    assert not report.failures, report.failures[:10]
    assert report.jobs == plan.total >= JOBS
    assert all(report.counts[kind] for kind in ("websocket-cut", "interactive-cut", "hello-c"))
    assert not report.leftovers, report.leftovers[:10]
    growth = report.rss_after_kib - report.rss_before_kib
    assert growth < RSS_GROWTH_KIB, report.summary()
