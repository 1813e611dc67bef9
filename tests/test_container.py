"""contrib/container: the image builds without pulling anything, runs pistond and the gateway with
the documented least privilege, serves the Piston API on port 2000, and stops cleanly.

The image is built once per module (``build_image.py``: mmdebstrap from the host's apt sources,
piped into ``podman import``) under a tag of this run's own, and removed at the end. Containers
use runc (crun refuses hybrid cgroup hosts) and ``nofile``/``nproc`` ulimits at the host's hard
limits (a container cannot raise them without CAP_SYS_RESOURCE, which some hosts withhold).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

CHECKOUT = Path(__file__).resolve().parent.parent
BUILD = CHECKOUT / "contrib" / "container" / "build_image.py"
CAPABILITIES = (
    "SYS_ADMIN",
    "NET_ADMIN",
    "SETUID",
    "SETGID",
    "SETPCAP",
    "SYS_CHROOT",
    "KILL",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
)
"""The least privilege of docs/deploy.md: every other capability dropped."""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="rootful podman and mmdebstrap need root"),
    pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed"),
    pytest.mark.skipif(shutil.which("mmdebstrap") is None, reason="mmdebstrap is not installed"),
]


def _podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


ULIMITS = (("nofile", resource.RLIMIT_NOFILE, 16384), ("nproc", resource.RLIMIT_NPROC, 4096))
"""docs/deploy.md's values: enough for the daemon (jobs run under their own uids and limits),
below what the engine's own processes may set without CAP_SYS_RESOURCE."""


def _ulimits() -> list[str]:
    flags = []
    for name, limit, wanted in ULIMITS:
        hard = resource.getrlimit(limit)[1]
        value = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        flags.append(f"--ulimit={name}={value}:{value}")
    return flags


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    """The image of this checkout, tagged for this run only; skipped with podman's own words
    where this kernel cannot run a container at all."""
    tag = f"localhost/pistond-test:{uuid.uuid4().hex[:12]}"
    built = subprocess.run(
        [sys.executable, str(BUILD), "--tag", tag],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-4000:]
    try:
        probe = _podman("run", "--rm", "--runtime=runc", *_ulimits(), "--entrypoint=/bin/true", tag)
        if probe.returncode != 0:
            lines = (probe.stderr or probe.stdout).strip().splitlines() or ["no output"]
            pytest.skip(f"podman with runc cannot start a container here: {lines[-1]}")
        yield tag
    finally:
        _podman("rmi", "--force", tag)


def _start(image: str, *options: str) -> str:
    name = f"pistond-test-{uuid.uuid4().hex[:12]}"
    started = _podman(
        "run",
        "--detach",
        f"--name={name}",
        "--runtime=runc",
        "--publish=127.0.0.1::2000",
        *_ulimits(),
        *options,
        image,
    )
    assert started.returncode == 0, started.stderr
    return name


def _url(name: str) -> str:
    port = _podman("port", name, "2000/tcp").stdout.strip().rsplit(":", 1)[-1]
    return f"http://127.0.0.1:{port}"


def _wait_serving(name: str) -> str | None:
    """The gateway's URL once it answers; None if the container exited first."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = json.loads(_podman("inspect", name).stdout)[0]["State"]
        if state["Status"] == "exited":
            return None
        try:
            url = _url(name)
            httpx.get(url + "/", timeout=2)
            return url
        except (httpx.TransportError, ValueError):
            time.sleep(0.3)
    raise AssertionError(f"{name} did not serve in time: {_podman('logs', name).stderr[-2000:]}")


@pytest.fixture
def container(image: str) -> Iterator[str]:
    """The image with exactly the documented privileges."""
    name = _start(
        image, "--cgroupns=private", "--cap-drop=ALL", f"--cap-add={','.join(CAPABILITIES)}"
    )
    try:
        yield name
    finally:
        _podman("rm", "--force", name)


def _execute(url: str, code: str, **limits: int) -> dict[str, object]:
    body = {"language": "python", "version": "*", "files": [{"content": code}], **limits}
    answer = httpx.post(url + "/api/v2/execute", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    result: dict[str, object] = answer.json()
    return result


def test_container_serves_the_piston_api_with_least_privilege(container: str) -> None:
    """With ten capabilities, a private cgroup namespace and no --privileged, the image runs a
    program, enforces a memory limit through its own cgroups, serves as the gateway user, and
    stops gracefully on SIGTERM (exit status 0)."""
    url = _wait_serving(container)
    assert url is not None, _podman("logs", container).stderr[-2000:]
    run = _execute(url, "print(6 * 7)")["run"]
    assert isinstance(run, dict)
    assert (run["stdout"], run["code"]) == ("42\n", 0)
    hog = _execute(url, "x = bytearray(300_000_000)", run_memory_limit=64_000_000)["run"]
    assert isinstance(hog, dict)
    assert hog["status"] == "ML"
    logs = _podman("logs", container).stderr
    assert "serving as pistond-gateway" in logs
    stopped = _podman("stop", "--time=30", container)
    assert stopped.returncode == 0, stopped.stderr
    state = json.loads(_podman("inspect", container).stdout)[0]["State"]
    assert state["ExitCode"] == 0, _podman("logs", container).stderr[-2000:]


@pytest.mark.parametrize(
    ("missing", "symptom"),
    [
        ("SYS_ADMIN", "permission denied"),  # remounting its cgroups, then every namespace
        ("NET_ADMIN", "network: Operation not permitted"),  # the job's loopback interface
    ],
)
def test_container_each_privilege_is_needed(image: str, missing: str, symptom: str) -> None:
    """Without SYS_ADMIN the image stops at start; without NET_ADMIN jobs fail to set up."""
    capabilities = ",".join(cap for cap in CAPABILITIES if cap != missing)
    name = _start(image, "--cgroupns=private", "--cap-drop=ALL", f"--cap-add={capabilities}")
    try:
        url = _wait_serving(name)
        if url is None:
            assert symptom in _podman("logs", name).stderr
        else:
            run = _execute(url, "print(1)")["run"]
            assert isinstance(run, dict)
            assert (run["status"], run["message"]) == ("XX", symptom)
    finally:
        _podman("rm", "--force", name)
