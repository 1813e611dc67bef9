"""pistond.cli.progress: a bar on a terminal, plain lines elsewhere; results on stdout."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import termios

import pytest

from pistond.cli.progress import BarProgress, LineProgress, is_terminal, open_progress


def _drive(progress: LineProgress | BarProgress) -> None:
    progress.start("lua")
    progress.line("I: downloading packages with apt")
    progress.done("installed lua-5.4.4")
    progress.start("tcl")
    progress.line("x" * 200)
    progress.done("installed tcl-8.6")
    progress.close()


def test_progress_plain_lines_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    """A pipe or file gets a header per package and every build line; results go to stdout."""
    stream = io.StringIO()
    progress = open_progress(2, "installing", stream=stream, environ={"TERM": "xterm"})
    assert isinstance(progress, LineProgress)
    _drive(progress)
    assert stream.getvalue().splitlines() == [
        "installing lua (1 of 2)",
        "  I: downloading packages with apt",
        "installing tcl (2 of 2)",
        "  " + "x" * 200,
    ]
    assert capsys.readouterr().out.splitlines() == ["installed lua-5.4.4", "installed tcl-8.6"]


def test_progress_bar_shows_count_item_and_latest_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The bar shows the package at work, n/total and the latest line, shortened to fit."""
    stream = io.StringIO()
    _drive(BarProgress(2, "installing", stream))
    drawn = stream.getvalue()
    assert "installing lua" in drawn
    assert "0/2" in drawn
    assert "1/2" in drawn
    assert "2/2" in drawn
    assert "I: downloading packages with apt" in drawn
    assert "x" * 59 + "…" in drawn
    assert "x" * 61 not in drawn
    assert capsys.readouterr().out.splitlines() == ["installed lua-5.4.4", "installed tcl-8.6"]


def test_progress_terminal_detection() -> None:
    """Only a terminal with a width, and not TERM=dumb, gets a bar."""
    main, secondary = pty.openpty()
    try:
        with os.fdopen(os.dup(secondary), "w") as terminal:
            # A pseudo-terminal starts with no size: lines, until it has one.
            assert not is_terminal(terminal, {"TERM": "xterm"})
            fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
            assert is_terminal(terminal, {"TERM": "xterm"})
            assert not is_terminal(terminal, {"TERM": "dumb"})
    finally:
        os.close(main)
        os.close(secondary)
    assert not is_terminal(io.StringIO(), {"TERM": "xterm"})
