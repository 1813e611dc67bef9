"""ppman end to end: pack an installed package, serve it from an index, install it elsewhere."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pistond.testing.daemon import DaemonProcess

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root")


@pytest.mark.slow
def test_ppman_pack_index_install_and_uninstall(tmp_path: Path) -> None:
    """A built package packs, installs on another daemon from a file:// index (sha256
    checked), runs from its own root, and uninstalls with no index."""
    quiet = {"PISTON_HOST_RUNTIMES": "false"}
    with DaemonProcess.start(tmp_path / "builder", quiet) as builder:
        builder.piston("ppman", "install", "lua")
        version = builder.piston_json("runtimes")[0]["version"]
        packed = subprocess.run(
            [sys.executable, "-m", "pistond.cli.piston", "ppman", "pack", "lua", version,
             "-o", str(tmp_path / "repo")],
            env=builder.environ, capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
    line = packed.stdout.strip()
    name, listed_version, digest, url = line.split(",")
    tarball = tmp_path / "repo" / f"lua-{version}.pkg.tar.gz"
    assert (name, listed_version, url) == ("lua", version, tarball.as_uri())
    assert digest == hashlib.sha256(tarball.read_bytes()).hexdigest()
    index = tmp_path / "repo" / "index"
    index.write_text(line + "\n")

    no_recipes = tmp_path / "no-recipes"
    no_recipes.mkdir()
    settings = {
        **quiet,
        "PISTON_REPO_URL": index.as_uri(),
        "PISTON_RECIPES_DIRECTORY": str(no_recipes),  # the index is the only source here
    }
    with DaemonProcess.start(tmp_path / "host", settings) as daemon:
        entry = {"language": "lua", "version": version, "installed": False, "source": "index"}
        assert entry in daemon.piston_json("ppman", "list")
        daemon.piston("ppman", "install", f"lua={version}")
        assert [r["language"] for r in daemon.piston_json("runtimes")] == ["lua"]
        program = tmp_path / "hello.lua"
        program.write_text("print('from-index', _VERSION)\n")
        result = daemon.piston_json("run", "lua", str(program))
        assert result["run"]["stdout"] == "from-index\tLua 5.4\n"
        daemon.piston("ppman", "uninstall", "lua")
        assert daemon.piston_json("runtimes") == []


def test_ppman_index_with_wrong_sha256_is_refused(tmp_path: Path) -> None:
    """An index entry whose tarball does not match its sha256 installs nothing."""
    repo = tmp_path / "repo"
    repo.mkdir()
    tarball = repo / "bash-1.0.0.pkg.tar.gz"
    tarball.write_bytes(b"not what the index promised")
    (repo / "index").write_text(f"bash,1.0.0,{'0' * 64},{tarball.as_uri()}\n")
    settings = {"PISTON_HOST_RUNTIMES": "false", "PISTON_REPO_URL": (repo / "index").as_uri()}
    with DaemonProcess.start(tmp_path / "host", settings) as daemon:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pistond.cli.piston",
                "--socket",
                str(daemon.socket),
                "ppman",
                "install",
                "bash=1.0.0",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 1
        assert "Checksum miss-match want: " + "0" * 64 in result.stderr
        assert daemon.piston_json("runtimes") == []
        assert not (daemon.data_directory / "packages" / "bash").exists()
