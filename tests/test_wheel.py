"""pistond as users install it: an sdist, a wheel built from it, a fresh venv outside the checkout.

The distributions are built once per module with ``python -m build`` (sdist first, then the wheel
from the unpacked sdist, so both must carry everything). The installed daemon runs on a private
socket and data directory, is stopped by SIGTERM, and leaves nothing running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

CHECKOUT = Path(__file__).resolve().parent.parent
SHIPPED_IN_WHEEL = (
    "pistond/share/packages/python/host/metadata.json",
    "pistond/share/packages/lua/5.4.4/metadata.json",
    "pistond/share/systemd/pistond.service",
    "pistond/share/systemd/pistond.socket",
    "pistond/share/systemd/pistond.slice",
    "pistond/share/systemd/pistond-gateway.service",
    "pistond/share/systemd/sysusers.d/pistond.conf",
    "pistond/share/docs/protocol.md",
    "pistond/share/docs/deploy.md",
    "pistond/share/README.md",
    "pistond/share/contrib/example-plugin/pyproject.toml",
    "pistond/share/examples/hello.py",
)


def _clean_environ(**extra: str) -> dict[str, str]:
    """The environment without this checkout's venv or any PISTON_* setting."""
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PISTON_") and key not in ("VIRTUAL_ENV", "PYTHONPATH")
    }
    environ.update(extra)
    return environ


@pytest.fixture(scope="module")
def distributions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sdist and the wheel built from it."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(CHECKOUT)],
        check=True,
        capture_output=True,
        timeout=600,
        env=_clean_environ(),
    )
    (sdist,) = out.glob("pistond-*.tar.gz")
    (wheel,) = out.glob("pistond-*.whl")
    return sdist, wheel


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, distributions: tuple[Path, Path]) -> Path:
    """A fresh virtualenv outside the checkout with the wheel installed (not editable)."""
    directory = tmp_path_factory.mktemp("venv")
    assert not directory.is_relative_to(CHECKOUT)
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True, timeout=120)
    subprocess.run(
        [str(directory / "bin" / "python"), "-m", "pip", "install", "-q", str(distributions[1])],
        check=True,
        capture_output=True,
        timeout=600,
        env=_clean_environ(),
    )
    return directory


def test_wheel_carries_recipes_units_docs_and_examples(distributions: tuple[Path, Path]) -> None:
    """The wheel holds the recipes, units, sysusers.d, docs, contrib and examples under
    pistond/share, and neither the build steps nor the tests."""
    with zipfile.ZipFile(distributions[1]) as wheel:
        names = set(wheel.namelist())
    missing = [name for name in SHIPPED_IN_WHEEL if name not in names]
    assert not missing, f"not in the wheel: {missing}"
    assert not [name for name in names if name.startswith(("build_hooks/", "tests/", "web/"))]
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_sdist_carries_what_the_wheel_is_built_from(distributions: tuple[Path, Path]) -> None:
    """The sdist holds the build steps, the data directories and the tests."""
    with tarfile.open(distributions[0]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for wanted in (
        "MANIFEST.in",
        "build_hooks/shipped.py",
        "build_hooks/command.py",
        "setup.py",
        "web/playground/package-lock.json",
        "packages/python/host/metadata.json",
        "systemd/sysusers.d/pistond.conf",
        "plugins/pistond_packages/__init__.py",
        "tests/test_wheel.py",
    ):
        assert wanted in names, f"not in the sdist: {wanted}"


def test_wheel_finds_its_files_through_the_package(venv: Path) -> None:
    """An installed (non-editable) pistond finds its recipes inside its own package."""
    probe = (
        "import pistond, pistond_packages, pistond.resources as r;"
        "print(pistond.__file__); print(pistond_packages.shipped_recipes());"
        "print(r.shipped(r.UNITS)); print(r.editable_checkout())"
    )
    completed = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=venv,
        env=_clean_environ(),
    )
    module, recipes, units, checkout = completed.stdout.splitlines()
    package = Path(module).parent
    assert package.is_relative_to(venv)
    assert Path(recipes) == package / "share" / "packages"
    assert Path(units) == package / "share" / "systemd"
    assert checkout == "None"


def _piston(venv: Path, sock: Path, *args: str, timeout: float = 60) -> str:
    completed = subprocess.run(
        [str(venv / "bin" / "piston"), "--socket", str(sock), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=_clean_environ(),
        cwd=sock.parent,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def _answers(venv: Path, sock: Path) -> bool:
    ping = [str(venv / "bin" / "piston"), "--socket", str(sock), "ping"]
    return (
        subprocess.run(ping, capture_output=True, check=False, env=_clean_environ()).returncode == 0
    )


@pytest.fixture
def wheel_daemon(venv: Path, tmp_path: Path) -> Iterator[Path]:
    """The wheel's ``pistond`` on a private socket; its socket path. SIGTERM at the end."""
    sock = tmp_path / "pistond.sock"
    log = tmp_path / "pistond.log"
    environ = _clean_environ(
        PISTON_SOCKET=str(sock),
        PISTON_DATA_DIRECTORY=str(tmp_path / "data"),
        PISTON_BOX_UID_BASE="1200000",  # away from the uids of pistond.testing's daemons
    )
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [str(venv / "bin" / "pistond")],
            env=environ,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not _answers(venv, sock):
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.1)
        yield sock
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log.read_text(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root")
def test_wheel_daemon_runs_host_runtimes_and_builds_a_recipe(
    venv: Path, wheel_daemon: Path, tmp_path: Path
) -> None:
    """One start of the wheel's daemon installs the host runtimes; it runs a real program,
    builds a shipped recipe (lua, from Debian) and runs a program in it."""
    runtimes = _piston(venv, wheel_daemon, "runtimes")
    for language in ("bash-", "python-", "c-", "c++-"):
        assert any(line.startswith(language) for line in runtimes.splitlines()), runtimes
    program = tmp_path / "hello.py"
    program.write_text("import sys\nprint('hello from the wheel', sys.argv[1:])\n")
    output = _piston(venv, wheel_daemon, "run", "python", str(program), "a", "b")
    assert "hello from the wheel ['a', 'b']" in output
    _piston(venv, wheel_daemon, "ppman", "install", "lua", timeout=600)
    script = tmp_path / "hello.lua"
    script.write_text("print('lua in its root', _VERSION)\n")
    assert "lua in its root\tLua 5.4" in _piston(venv, wheel_daemon, "run", "lua", str(script))


def test_wheel_install_units_point_at_the_venv(venv: Path, tmp_path: Path) -> None:
    """The wheel's `pistond install-units` writes units that start the venv's own commands."""
    completed = subprocess.run(
        [str(venv / "bin" / "pistond"), "install-units", "--root", str(tmp_path), "--no-sysusers"],
        capture_output=True,
        text=True,
        check=False,
        env=_clean_environ(),
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    units = tmp_path / "etc" / "systemd" / "system"
    service = (units / "pistond.service").read_text()
    gateway = (units / "pistond-gateway.service").read_text()
    assert f"\nExecStart={venv}/bin/pistond\n" in service
    assert f"\nExecStart={venv}/bin/pistond-gateway\n" in gateway
    assert (tmp_path / "etc" / "sysusers.d" / "pistond.conf").is_file()
