"""contrib/kubernetes: the manifests are valid Kubernetes objects (checked offline against the
API schemas kubernetes-validate carries) and say what docs/deploy.md says: the container's least
privilege, probes on the gateway's routes, and resource requests from the capacity model."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pistond.config import DaemonConfig
from pistond.gateway.auth import Right, required_right
from pistond.gateway.health import FACTS_TIMEOUT

CHECKOUT = Path(__file__).resolve().parent.parent
MANIFESTS = CHECKOUT / "contrib" / "kubernetes"
KUBERNETES_VERSIONS = ("1.25.0", "1.37.0")
"""The oldest and the newest API versions the validator carries."""
BASE_MEMORY_MIB = 256
"""docs/deploy.md: pistond, the gateway and the fork servers, with headroom."""


def _kustomization() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    return data


def _objects() -> dict[str, dict[str, Any]]:
    """Every object of the kustomization, by kind."""
    objects = {}
    for name in _kustomization()["resources"]:
        for document in yaml.safe_load_all((MANIFESTS / name).read_text()):
            objects[document["kind"]] = document
    return objects


def test_kubernetes_every_manifest_is_in_the_kustomization() -> None:
    """kubectl apply -k applies every file of the directory."""
    listed = set(_kustomization()["resources"])
    present = {path.name for path in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_manifests_validate_offline(version: str) -> None:
    """Each object validates strictly (no unknown field) against the API schema."""
    for kind, document in _objects().items():
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{kind} is not a valid Kubernetes {version} object: {exc.message}")


def _container() -> dict[str, Any]:
    (container,) = _objects()["DaemonSet"]["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = container
    return result


def test_kubernetes_pods_have_the_documented_least_privilege() -> None:
    """The capabilities are exactly the container's tested set; not privileged; default
    seccomp profile."""
    readme = (CHECKOUT / "contrib" / "container" / "README.md").read_text()
    match = re.search(r"--cap-add=([A-Z_,]+)", readme)
    assert match is not None
    security = _container()["securityContext"]
    assert set(security["capabilities"]["add"]) == set(match.group(1).split(","))
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["privileged"] is False
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}


def test_kubernetes_probes_ask_the_gateway() -> None:
    """Readiness and start-up ask the gateway's readiness route (the daemon answers and has
    runtimes); liveness its liveness route (the gateway itself), both open without a key."""
    container = _container()
    (port,) = container["ports"]
    assert (port["name"], port["containerPort"]) == ("http", 2000)
    ready = {"path": "/api/v2/health/ready", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == ready
    assert container["startupProbe"]["httpGet"] == ready
    assert container["livenessProbe"]["httpGet"] == {"path": "/api/v2/health/live", "port": "http"}
    assert required_right("GET", "/api/v2/health/ready") is Right.OPEN
    assert required_right("GET", "/api/v2/health/live") is Right.OPEN
    # the probe's deadline covers the gateway's own deadline for the daemon's answer
    assert container["readinessProbe"]["timeoutSeconds"] > FACTS_TIMEOUT
    service = _objects()["Service"]["spec"]
    labels = _objects()["DaemonSet"]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    assert service["ports"][0]["targetPort"] == "http"


def _mebibytes(quantity: str) -> int:
    match = re.fullmatch(r"(\d+)(Mi|Gi)", quantity)
    assert match is not None, f"not a Mi/Gi quantity: {quantity}"
    return int(match.group(1)) * (1024 if match.group(2) == "Gi" else 1)


def test_kubernetes_requests_follow_the_capacity_model() -> None:
    """Memory: the base plus every concurrent job at its larger stage limit; requests equal
    limits (Guaranteed); the grace period covers the daemon's drain."""
    settings = _objects()["ConfigMap"]["data"]
    slots = int(settings["PISTON_MAX_CONCURRENT_JOBS"])
    per_job = max(
        int(settings["PISTON_RUN_MEMORY_LIMIT"]), int(settings["PISTON_COMPILE_MEMORY_LIMIT"])
    )
    resources = _container()["resources"]
    assert resources["requests"] == resources["limits"]
    assert _mebibytes(resources["requests"]["memory"]) == BASE_MEMORY_MIB + slots * per_job // 2**20
    pod = _objects()["DaemonSet"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] * 1000 > DaemonConfig().shutdown_grace
