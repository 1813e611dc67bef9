"""pistond install-units: the shipped units rendered for this installation, written atomically
and idempotently, the sysusers.d file applied, and the result accepted by systemd-analyze."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pistond.cli import install_units as install_units_module
from pistond.cli.install_units import (
    UNIT_FILES,
    Destinations,
    InstallError,
    default_bin_dir,
    install_units,
    render_unit,
    unreadable_ancestors,
)
from pistond.cli.pistond import main

CHECKOUT = Path(__file__).resolve().parents[2]


def _exec_starts(directory: Path) -> dict[str, list[str]]:
    return {
        name: [
            line.removeprefix("ExecStart=")
            for line in (directory / name).read_text().splitlines()
            if line.startswith("ExecStart=")
        ]
        for name in UNIT_FILES
    }


def test_install_units_render_points_at_the_installation() -> None:
    """Only the shipped ExecStart= paths change; a header line says what wrote the file."""
    shipped = (CHECKOUT / "systemd" / "pistond.service").read_text()
    rendered = render_unit(shipped, Path("/opt/pistond/bin"))
    assert rendered.startswith("# Written by `pistond install-units` (pistond ")
    assert "ExecStart=/opt/pistond/bin/pistond\n" in rendered
    assert "/usr/local/bin" not in rendered
    assert rendered.splitlines()[1:] == [
        line.replace("/usr/local/bin/pistond", "/opt/pistond/bin/pistond")
        for line in shipped.splitlines()
    ]


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="needs systemd-sysusers")
def test_install_units_writes_applies_and_is_idempotent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Into an image root: four units and pistond.conf written, the group and user created
    inside that root; a second run changes nothing."""
    (tmp_path / "etc").mkdir()
    assert main(["install-units", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    units = tmp_path / "etc" / "systemd" / "system"
    assert out[:5] == [f"wrote {units / name}" for name in UNIT_FILES] + [
        f"wrote {tmp_path / 'etc' / 'sysusers.d' / 'pistond.conf'}"
    ]
    assert out[-1] == "next: systemctl enable --now pistond.socket pistond-gateway.service"
    bin_dir = default_bin_dir()
    assert _exec_starts(units) == {
        "pistond.socket": [],
        "pistond.service": [str(bin_dir / "pistond")],
        "pistond.slice": [],
        "pistond-gateway.service": [str(bin_dir / "pistond-gateway")],
    }
    assert (units / "pistond.service").stat().st_mode & 0o777 == 0o644
    passwd = (tmp_path / "etc" / "passwd").read_text()
    assert passwd.startswith("pistond-gateway:x:")
    assert "pistond:x:" in (tmp_path / "etc" / "group").read_text()
    assert main(["install-units", "--root", str(tmp_path)]) == 0
    again = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in again[:5]] == ["unchanged"] * 5


def test_install_units_output_verifies_cleanly(tmp_path: Path) -> None:
    """systemd-analyze verify accepts the written units as they are (real ExecStart paths)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    destinations = Destinations(root=tmp_path)
    install_units(destinations, default_bin_dir())
    units = destinations.under_root(destinations.unit_dir)
    result = subprocess.run(
        [analyze, "verify", "--man=no", *(f"./{name}" for name in UNIT_FILES)],
        cwd=units,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SYSTEMD_COLORS": "0"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_install_units_refuses_a_bin_dir_without_the_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --bin-dir that lacks pistond stops with one line and writes nothing."""
    status = main(["install-units", "--root", str(tmp_path), "--bin-dir", str(tmp_path)])
    assert status == 1
    assert capsys.readouterr().out.strip() == (
        f"pistond install-units: {tmp_path / 'pistond'} is not an executable: pass --bin-dir"
    )
    assert not (tmp_path / "etc").exists()


def test_install_units_needs_shipped_units(monkeypatch: pytest.MonkeyPatch) -> None:
    """An installation without its systemd/ files says so instead of writing half the set."""
    monkeypatch.setattr(install_units_module, "shipped", lambda _name: None)
    with pytest.raises(InstallError, match="carries no systemd units"):
        install_units(Destinations(), default_bin_dir())


def test_install_units_warns_when_the_gateway_cannot_read_the_installation(
    tmp_path: Path,
) -> None:
    """A directory others cannot enter (a venv under /root) is named."""
    private = tmp_path / "private"
    (private / "venv" / "bin").mkdir(parents=True)
    private.chmod(0o700)
    assert private in unreadable_ancestors(private / "venv" / "bin")
    assert unreadable_ancestors(Path(sys.base_prefix)) == []


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="needs systemd-sysusers")
def test_install_units_users_only_creates_users_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--users-only applies the shipped sysusers.d file inside the root and writes no file."""
    (tmp_path / "etc").mkdir()
    assert main(["install-units", "--root", str(tmp_path), "--users-only"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("applied ")
    assert line.endswith("pistond.conf: group pistond, user pistond-gateway")
    assert "pistond-gateway:x:" in (tmp_path / "etc" / "passwd").read_text()
    assert not (tmp_path / "etc" / "systemd").exists()
    assert not (tmp_path / "etc" / "sysusers.d").exists()
