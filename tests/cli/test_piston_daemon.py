"""The piston CLI against a real daemon: a file's language inferred and announced, program
arguments optional, binary files sent as base64, errors in the words typed, and progress for
package installs (a bar on a terminal, plain lines in a pipe)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import pty
import struct
import subprocess
import sys
import termios
from typing import TYPE_CHECKING

import pytest

from pistond.testing.daemon import DaemonProcess

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One daemon for the run tests (they do not change its packages)."""
    with DaemonProcess.start(tmp_path_factory.mktemp("daemon")) as running:
        yield running


def piston(
    daemon: DaemonProcess, *args: str, cwd: Path, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pistond.cli.piston", "--socket", str(daemon.socket), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        env=daemon.environ,
    )


def _python_version(daemon: DaemonProcess) -> str:
    versions = [r["version"] for r in daemon.piston_json("runtimes") if r["language"] == "python"]
    return max(versions, key=lambda v: tuple(int(part) for part in v.split(".")))


def test_piston_daemon_infers_and_announces_the_language(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    """`piston run hello.py` runs it as python and says so on stderr; args are optional."""
    (tmp_path / "hello.py").write_text("import sys\nprint('args', sys.argv[1:])\n")
    plain = piston(daemon, "run", "hello.py", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert "args []" in plain.stdout
    assert plain.stderr.splitlines() == [
        f"piston: running hello.py as python-{_python_version(daemon)} (from its .py extension)"
    ]
    with_args = piston(daemon, "run", "hello.py", "a", "--b", cwd=tmp_path)
    assert "args ['a', '--b']" in with_args.stdout
    named = piston(daemon, "run", "python", "hello.py", cwd=tmp_path)
    assert (named.returncode, named.stderr) == (0, "")
    live = piston(daemon, "run", "-t", "hello.py", "x", cwd=tmp_path)
    assert (live.returncode, live.stdout) == (0, "args ['x']\n")


def test_piston_daemon_sends_binary_files_as_base64(daemon: DaemonProcess, tmp_path: Path) -> None:
    """A binary extra file reaches the program byte for byte."""
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)))
    (tmp_path / "read.py").write_text(
        "import hashlib\nprint(hashlib.sha256(open('blob.bin', 'rb').read()).hexdigest())\n"
    )
    result = piston(daemon, "run", "-f", "blob.bin", "read.py", cwd=tmp_path)
    assert hashlib.sha256(bytes(range(256))).hexdigest() in result.stdout


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["nolang", "hello.py"], "no runtime for language 'nolang' is installed"),
        (["-l", "9.x", "python", "hello.py"], "no installed python runtime matches version '9.x'"),
        (["python", "/bin/ls"], "/bin/ls is not UTF-8 text"),
        (["/bin/ls"], "/bin/ls has no extension to tell its language by"),
        (["hello.unknownext"], "no installed runtime runs .unknownext files like hello.unknownext"),
        (["missing.py"], "cannot read missing.py: no such file"),
    ],
)
def test_piston_daemon_errors_name_what_was_typed(
    daemon: DaemonProcess, tmp_path: Path, words: list[str], message: str
) -> None:
    """Each refusal is one line naming the file or runtime typed, never `-*` or a field path."""
    (tmp_path / "hello.py").write_text("print(1)\n")
    (tmp_path / "hello.unknownext").write_text("print(1)\n")
    result = piston(daemon, "run", *words, cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"piston: {message}")
    assert "-*" not in lines[0]
    assert "files[" not in lines[0]


@pytest.fixture
def package_daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    """A daemon of the test's own: the test installs and uninstalls its packages."""
    with DaemonProcess.start(tmp_path / "daemon") as running:
        yield running


def _host_bash(daemon: DaemonProcess) -> str:
    (version,) = [r["version"] for r in daemon.piston_json("runtimes") if r["language"] == "bash"]
    return str(version)


def test_piston_daemon_install_progress_lines_in_a_pipe(
    package_daemon: DaemonProcess, tmp_path: Path
) -> None:
    """In a pipe: a header per package, the build's lines indented, results on stdout; a
    package that does not exist is named as typed."""
    version = _host_bash(package_daemon)
    assert piston(package_daemon, "ppman", "uninstall", "bash", cwd=tmp_path).returncode == 0
    result = piston(package_daemon, "ppman", "install", f"bash={version}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"installed bash-{version}\n"
    assert result.stderr.splitlines()[0] == f"installing bash={version} (1 of 1)"
    assert f"  building bash-{version} from host/" in result.stderr.splitlines()
    again = piston(package_daemon, "ppman", "install", f"bash={version}", cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.splitlines()[-1] == (
        f"piston: bash={version} is already installed (bash-{version})"
    )
    missing = piston(package_daemon, "ppman", "install", "nolang", cwd=tmp_path)
    assert missing.stderr.splitlines()[-1] == (
        "piston: no package 'nolang' to install (piston ppman list shows the packages)"
    )


def test_piston_daemon_install_and_spec_progress_bar_on_a_terminal(
    package_daemon: DaemonProcess, tmp_path: Path
) -> None:
    """On a terminal, install and spec draw a bar: the package at work and n/total."""
    version = _host_bash(package_daemon)
    assert piston(package_daemon, "ppman", "uninstall", "bash", cwd=tmp_path).returncode == 0
    screen = _on_terminal(package_daemon, tmp_path, "ppman", "install", f"bash={version}")
    assert f"installing bash={version}" in screen
    assert "0/1" in screen
    assert "1/1" in screen
    assert f"installed bash-{version}" in screen
    assert piston(package_daemon, "ppman", "uninstall", "bash", cwd=tmp_path).returncode == 0
    installed = [p for p in package_daemon.piston_json("ppman", "list") if p["installed"]]
    spec = tmp_path / "bash.pps"
    spec.write_text("".join(f"{p['language']} {p['version']}\n" for p in installed))
    spec.write_text(spec.read_text() + f"bash {version}\n")  # the one action: install bash
    screen = _on_terminal(package_daemon, tmp_path, "ppman", "spec", str(spec))
    assert f"applying bash-{version}" in screen
    assert f"Installed bash-{version}" in screen
    assert " - install bash-" in screen


def _on_terminal(daemon: DaemonProcess, cwd: Path, *args: str) -> str:
    """Run piston on a pseudo-terminal (100 columns); everything it drew."""
    main, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "pistond.cli.piston", "--socket", str(daemon.socket), *args],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        cwd=cwd,
        env={**daemon.environ, "TERM": "xterm"},
    )
    os.close(secondary)
    drawn = b""
    try:
        while chunk := _read(main):
            drawn += chunk
    finally:
        os.close(main)
        assert process.wait(timeout=120) == 0, drawn.decode(errors="replace")
    return drawn.decode(errors="replace")


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the terminal's last writer closed it
        return b""
