"""pistond --check-config: every setting parsed, what a start would look up resolved, the
effective settings printed as PISTON_* lines; errors exit 2, warnings do not."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from pistond.cli.check_config import Finding, check
from pistond.cli.pistond import main
from pistond.config import load_config

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """A clean PISTON_* environment with a data directory of the test's own."""
    for name in [name for name in os.environ if name.startswith("PISTON_")]:
        monkeypatch.delenv(name)
    settings = {"PISTON_DATA_DIRECTORY": str(tmp_path / "data")}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return settings


def test_check_config_prints_settings_that_load_back(
    environ: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A valid configuration exits 0; its printed lines give the same configuration back."""
    monkeypatch.setenv("PISTON_RUN_TIMEOUT", "1500")
    monkeypatch.setenv("PISTON_LIMIT_OVERRIDES", '{"python": {"max_file_size": 100}}')
    assert main(["--check-config"]) == 0
    captured = capsys.readouterr()
    variables = dict(line.split("=", 1) for line in captured.out.splitlines())
    assert variables["PISTON_RUN_TIMEOUT"] == "1500"
    assert load_config(variables) == load_config(
        {
            **environ,
            "PISTON_RUN_TIMEOUT": "1500",
            "PISTON_LIMIT_OVERRIDES": '{"python": {"max_file_size": 100}}',
        }
    )
    assert captured.err.splitlines() == ["pistond: configuration OK"]


def test_check_config_bad_value_is_one_line(
    environ: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value that does not parse stops with status 2 and the variable's name."""
    monkeypatch.setenv("PISTON_RUN_TIMEOUT", "soon")
    assert main(["--check-config"]) == 2
    assert capsys.readouterr().err.strip() == (
        "pistond: PISTON_RUN_TIMEOUT: must be an integer, got 'soon'"
    )


def test_check_config_errors_and_warnings(
    environ: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Missing groups and directories are errors (status 2); a typo is a warning."""
    monkeypatch.setenv("PISTON_SOCKET_GROUP", "no-such-group-h13")
    monkeypatch.setenv("PISTON_RECIPES_DIRECTORY", str(tmp_path / "missing"))
    monkeypatch.setenv("PISTON_RUN_TIMOUT", "5")
    assert main(["--check-config"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "pistond: warning: unknown setting PISTON_RUN_TIMOUT (ignored)",
        "pistond: error: PISTON_SOCKET_GROUP: no such group: 'no-such-group-h13'",
        f"pistond: error: PISTON_RECIPES_DIRECTORY: {tmp_path / 'missing'} is not a directory",
        "pistond: configuration invalid (2 errors)",
    ]


def test_check_config_data_directory_and_gateway_user(tmp_path: Path) -> None:
    """A data directory that is a file is an error; a gateway user that does not exist is a
    warning (only the gateway needs it)."""
    data = tmp_path / "data"
    data.write_text("")
    config = load_config(
        {"PISTON_DATA_DIRECTORY": str(data), "PISTON_GATEWAY_USER": "no-such-user-h13"}
    )
    findings = check(config, {})
    assert Finding("error", f"PISTON_DATA_DIRECTORY: {data} is not a directory") in findings
    assert [f.text for f in findings if f.level == "warning"] == [
        "PISTON_GATEWAY_USER: no such user: 'no-such-user-h13' (`pistond install-units "
        "--users-only` creates it; or name another user) (the gateway started as root will "
        "refuse)"
    ]
