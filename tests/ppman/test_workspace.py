"""The work tree of an install: published by one rename, removed on any failure."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from pistond.errors import PackageError
from pistond.ppman.layout import BUILD_DIRECTORY
from pistond.ppman.workspace import open_workspace

if TYPE_CHECKING:
    from pathlib import Path


def test_workspace_publish_writes_info_marker_and_renames(tmp_path: Path) -> None:
    """publish() writes pkg-info.json and the marker, then the tree appears at its final path."""
    with open_workspace(tmp_path, "lua", "5.4.4") as workspace:
        (workspace.layout.directory / "run").write_text("lua")
        workspace.layout.env_file.write_text("PATH=/usr/bin\n")
        final = workspace.publish({"language": "lua", "version": "5.4.4"})
    assert final.directory == tmp_path / "lua" / "5.4.4"
    assert final.is_installed()
    assert json.loads(final.pkg_info.read_text()) == {"language": "lua", "version": "5.4.4"}
    assert (final.directory / "run").read_text() == "lua"
    assert list((tmp_path / BUILD_DIRECTORY).iterdir()) == []


def test_workspace_failure_removes_the_work_tree(tmp_path: Path) -> None:
    """An exception inside the block removes the work tree and the scratch directory."""

    def fail_midway() -> None:
        with open_workspace(tmp_path, "x", "1.0.0") as workspace:
            (workspace.layout.directory / "half-done").write_text("")
            (workspace.scratch / "jail-leftover").mkdir()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_midway()
    assert list((tmp_path / BUILD_DIRECTORY).iterdir()) == []
    assert not (tmp_path / "x").exists()


def test_workspace_unpublished_block_leaves_nothing(tmp_path: Path) -> None:
    """Leaving the block without publishing abandons the work tree."""
    with open_workspace(tmp_path, "x", "1.0.0") as workspace:
        (workspace.layout.directory / "file").write_text("")
    assert list((tmp_path / BUILD_DIRECTORY).iterdir()) == []


def test_workspace_already_installed_is_refused(tmp_path: Path) -> None:
    """An installed package is neither rebuilt nor overwritten; leftovers of a failure are."""
    with open_workspace(tmp_path, "x", "1.0.0") as workspace:
        workspace.layout.env_file.write_text("")
        workspace.publish({})
    with (
        pytest.raises(PackageError, match="Already installed"),
        open_workspace(tmp_path, "x", "1.0.0"),
    ):
        pass
    leftover = tmp_path / "y" / "2.0.0"
    leftover.mkdir(parents=True)
    (leftover / "stale").write_text("")
    with open_workspace(tmp_path, "y", "2.0.0") as workspace:
        workspace.layout.env_file.write_text("")
        final = workspace.publish({})
    assert not (final.directory / "stale").exists()
