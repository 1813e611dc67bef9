"""The builder's command runner: lines as they come, a deadline even for silent commands."""

from __future__ import annotations

import time

import pytest

from pistond.ppman.process import CommandError, run_command

ENV = {"PATH": "/usr/bin:/bin"}


def test_process_lines_and_exit_status() -> None:
    """stdout and stderr arrive as lines (cut to 1000 characters); the tail keeps the last ones."""
    lines: list[str] = []
    done = run_command(
        ["/bin/sh", "-c", "echo one; echo two >&2; printf 'x%.0s' $(seq 1200); exit 3"],
        env=ENV,
        timeout=10,
        on_line=lines.append,
        tail_lines=2,
    )
    assert done.code == 3
    assert lines[:2] == ["one", "two"]
    assert lines[2] == "x" * 1000
    assert done.tail == ("two", "x" * 1000)


def test_process_capture_keeps_stdout_apart() -> None:
    """With capture, stdout is bytes and only stderr reaches on_line."""
    lines: list[str] = []
    done = run_command(
        ["/bin/sh", "-c", "printf 'a\\0b'; echo err >&2"],
        env=ENV,
        timeout=10,
        on_line=lines.append,
        capture=True,
    )
    assert (done.code, done.stdout, lines) == (0, b"a\0b", ["err"])


def test_process_silent_command_still_times_out() -> None:
    """A command printing nothing is killed at its deadline, with its background children."""
    started = time.monotonic()
    with pytest.raises(CommandError, match="sleeper timed out after 1 s"):
        run_command(
            ["/bin/sh", "-c", "sleep 30 & sleep 30"],
            env=ENV,
            timeout=1,
            on_line=lambda _line: None,
            name="sleeper",
        )
    assert time.monotonic() - started < 5


def test_process_missing_program_is_a_clear_error() -> None:
    """A program that cannot start is a CommandError naming it."""
    with pytest.raises(CommandError, match="cannot run no-such-tool"):
        run_command(["/nonexistent/no-such-tool"], env=ENV, timeout=5, on_line=print)
