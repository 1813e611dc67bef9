"""pistond.gateway.metrics: bounded labels and the collectors' exposition."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from pistond.gateway.metrics import GatewayMetrics, route_label


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("/", "/"),
        ("/api/v2/execute", "/api/v2/execute"),
        ("/api/v2/execute/", "/api/v2/execute"),
        ("/api/v2/connect", "/api/v2/connect"),
        ("/random/123", "other"),
        ("/api/v2/execute/../x", "other"),
    ],
)
def test_metrics_route_labels_are_bounded(path: str, label: str) -> None:
    """Known routes keep their path (slash-insensitive); every other path is "other"."""
    assert route_label(path) == label


def test_metrics_registries_are_independent() -> None:
    """Each GatewayMetrics has its own registry, so apps (and tests) do not share counters."""
    first, second = GatewayMetrics(), GatewayMetrics()
    first.job_finished(None)
    first.job_finished("TO")
    text = generate_latest(first.registry).decode()
    assert 'pistond_gateway_jobs_total{status="ok"} 1.0' in text
    assert 'pistond_gateway_jobs_total{status="TO"} 1.0' in text
    assert "status=" not in generate_latest(second.registry).decode()
