"""pistond.cli.piston, the `piston` CLI: arguments, human output and exit codes (the daemon side
is in test_daemon)."""

from __future__ import annotations

import io
from pathlib import Path

import attrs
import pytest

from pistond.cli.errors import CliError
from pistond.cli.piston import _print_job, build_parser, exit_code, main, read_file
from pistond.models import JobResult, StageStatus
from pistond.testing import stage_result


def job(run=None, compile_=None) -> JobResult:
    return JobResult("python", "3.11.2", compile_, run)


def test_piston_exit_code_follows_the_program() -> None:
    """piston run exits with the program's code, 128+signal when killed, 1 without a stage."""
    assert exit_code(job(stage_result(code=0))) == 0
    assert exit_code(job(stage_result(code=3))) == 3
    killed = stage_result(code=None, signal="SIGKILL", status=StageStatus.TIMEOUT)
    assert exit_code(job(killed)) == 137
    assert exit_code(job(None, stage_result(code=1))) == 1
    assert exit_code(job()) == 1


def test_piston_human_output_shows_stages() -> None:
    """Each stage prints its title, streams, exit code, signal and status."""
    out = io.StringIO()
    compile_ = stage_result(code=0)
    run = stage_result(
        stdout="hi",
        stderr="oops\n",
        code=None,
        signal="SIGKILL",
        status=StageStatus.TIMEOUT,
        message="Time limit exceeded",
    )
    _print_job(job(run, compile_), out)
    text = out.getvalue()
    assert text.startswith("== Compile ==\nExit Code: 0\n")
    assert "== Run ==\nSTDOUT\nhi\nSTDERR\noops\n" in text
    assert "Signal: SIGKILL\n" in text
    assert "Status: TO (Time limit exceeded)\n" in text
    cached = io.StringIO()
    _print_job(job(run, attrs.evolve(compile_, cached=True)), cached)
    assert cached.getvalue().startswith("== Compile (cached) ==\nExit Code: 0\n")


def test_piston_arguments_match_piston_cli() -> None:
    """run takes Piston's flags; --json works before or after the subcommand."""
    parser = build_parser()
    args = parser.parse_args(
        [
            "run",
            "-l",
            "3.x",
            "-i",
            "-r",
            "500",
            "--ct",
            "900",
            "-f",
            "a.py",
            "-f",
            "b.py",
            "python",
            "main.py",
            "x",
            "y",
        ]
    )
    assert args.words == ["python", "main.py", "x", "y"]
    assert (args.language_version, args.stdin, args.run_timeout, args.compile_timeout) == (
        "3.x",
        True,
        500,
        900,
    )
    assert args.files == [Path("a.py"), Path("b.py")]
    assert parser.parse_args(["ping", "--socket", "/x.sock"]).socket == "/x.sock"
    assert parser.parse_args(["--socket", "/y.sock", "ping"]).socket == "/y.sock"
    assert parser.parse_args(["--json", "ping"]).json is True
    assert parser.parse_args(["ping", "--json"]).json is True
    assert parser.parse_args(["ping"]).json is False
    assert parser.parse_args(["execute", "c", "m.c"]).command == "execute"
    assert parser.parse_args(["pkg", "i", "python=3.x"]).packages == ["python=3.x"]


def test_piston_unreachable_daemon_is_one_line(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing socket gives exit 1 and one line naming the socket."""
    assert main(["--socket", str(tmp_path / "none.sock"), "ping"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"piston: cannot reach the daemon at {tmp_path / 'none.sock'}")


def test_piston_files_are_text_or_base64(tmp_path: Path) -> None:
    """UTF-8 files are sent as text; anything else as base64, never refused by the CLI."""
    text, binary = tmp_path / "main.py", tmp_path / "data.bin"
    text.write_text("print('é')\n")
    binary.write_bytes(b"\x00\xff\xfe")
    assert read_file(text) == {"name": "main.py", "content": "print('é')\n"}
    assert read_file(binary) == {"name": "data.bin", "content": "AP/+", "encoding": "base64"}
    with pytest.raises(CliError, match=f"cannot read {tmp_path / 'none'}: No such file"):
        read_file(tmp_path / "none")
