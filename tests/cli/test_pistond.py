"""pistond.cli.pistond, the `pistond` command: its subcommands and its logging to the journal."""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING

from pistond.cli.pistond import JournalFormatter, build_parser, stderr_is_journal

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def test_pistond_parser_runs_the_daemon_without_a_command() -> None:
    """Plain `pistond` runs the daemon; install-units is a subcommand with its own options."""
    parser = build_parser()
    assert parser.parse_args([]).command is None
    assert parser.parse_args(["--check-config"]).check_config is True
    units = parser.parse_args(["install-units", "--root", "/img", "--no-sysusers"])
    assert (units.command, str(units.root), units.no_sysusers) == ("install-units", "/img", True)


def test_pistond_journal_lines_carry_their_priority() -> None:
    """Under journald each line starts with its syslog priority, so `journalctl -p` filters."""
    formatter = JournalFormatter("%(levelname)s %(name)s: %(message)s")
    for level, prefix in ((logging.ERROR, "<3>"), (logging.WARNING, "<4>"), (logging.INFO, "<6>")):
        record = logging.LogRecord("pistond.jobs", level, __file__, 1, "job %s", ("j1",), None)
        assert (
            formatter.format(record)
            == f"{prefix}{logging.getLevelName(level)} pistond.jobs: job j1"
        )


def test_pistond_journal_stream_must_be_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JOURNAL_STREAM counts only when it names stderr itself (not a stream inherited by a
    child whose stderr was redirected)."""
    with (tmp_path / "stderr").open("w") as stream:
        monkeypatch.setattr(sys, "stderr", stream)
        status = os.fstat(stream.fileno())
        assert stderr_is_journal({"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"})
        assert not stderr_is_journal({"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino + 1}"})
        assert not stderr_is_journal({})
