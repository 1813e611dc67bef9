"""Mount-point checks of runtime roots: real directories only, never reached through a link."""

from __future__ import annotations

import os
from pathlib import Path

from pistond.sandbox.mounts import _is_real_directory


def test_mounts_mount_point_must_be_a_real_directory(tmp_path: Path) -> None:
    """A directory counts; a symlink to one, a link on the way, or a file does not."""
    root = tmp_path / "root"
    (root / "real" / "deep").mkdir(parents=True)
    (root / "file").write_text("")
    os.symlink("/tmp", root / "link")
    os.symlink("real", root / "hop")
    assert _is_real_directory(str(root), "real")
    assert _is_real_directory(str(root), "real/deep")
    assert not _is_real_directory(str(root), "link")
    assert not _is_real_directory(str(root), "hop/deep")
    assert not _is_real_directory(str(root), "file")
    assert not _is_real_directory(str(root), "missing")
    assert not _is_real_directory(str(tmp_path / "no-root"), "real")
    os.symlink(root, tmp_path / "root-link")
    assert _is_real_directory(str(tmp_path / "root-link"), "real")
