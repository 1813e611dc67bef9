"""A package being built or unpacked: its work tree, its publication, its removal on failure.

Builds (:mod:`pistond.ppman.build`) and index installs (:mod:`pistond.ppman.install`) both
fill a fresh work tree under ``<data>/packages/.build/`` and end the same way: write
``pkg-info.json``, write the ``.ppman-installed`` marker and rename the tree into place (the
commit point). :func:`open_workspace` owns that sequence: whatever fails before the rename, the
work tree is removed, so a failed install leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from pistond.errors import PackageError
from pistond.ppman import fstree
from pistond.ppman.layout import BUILD_DIRECTORY, PackageLayout

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping


@attrs.define(eq=False)
class Workspace:
    """The work tree of one package version and the place it is published to."""

    layout: PackageLayout
    """The work tree (``<data>/packages/.build/<package>-<version>-<random>/``)."""
    final: PackageLayout
    """Where the package is published."""
    scratch: Path
    """An empty directory beside the work tree, for the build jail; removed at the end."""
    published: bool = False

    def publish(self, info: Mapping[str, Any]) -> PackageLayout:
        """Write ``pkg-info.json`` and the marker, then rename the work tree into place.

        Leftovers of an earlier failed install at the final path are removed first.

        Raises:
            PackageError: the package is already installed.
        """
        if self.final.is_installed():
            raise PackageError("Already installed")
        self.layout.pkg_info.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        self.layout.marker.write_text(str(int(time.time() * 1000)), encoding="utf-8")
        if os.path.lexists(self.final.directory):
            fstree.remove_tree(self.final.directory)
        self.final.directory.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        os.rename(self.layout.directory, self.final.directory)
        self.published = True
        return self.final


@contextlib.contextmanager
def open_workspace(packages_directory: Path, package: str, version: str) -> Iterator[Workspace]:
    """A fresh work tree for ``package`` at ``version``; removed unless it was published.

    Leaving the block without :meth:`Workspace.publish` (an exception included) removes it.

    Raises:
        PackageError: ``Already installed``.
    """
    final = PackageLayout.of(packages_directory, package, version)
    if final.is_installed():
        raise PackageError("Already installed")
    build = packages_directory / BUILD_DIRECTORY
    build.mkdir(parents=True, exist_ok=True, mode=0o755)
    work = Path(tempfile.mkdtemp(prefix=f"{package}-{version}-", dir=build))
    try:
        scratch = Path(tempfile.mkdtemp(prefix="jail-", dir=build))
    except BaseException:
        fstree.remove_tree(work)
        raise
    workspace = Workspace(PackageLayout(work, package, version), final, scratch)
    try:
        os.chmod(work, 0o755)
        yield workspace
    finally:
        try:
            if not workspace.published:
                fstree.remove_tree(work)
        finally:
            fstree.remove_tree(scratch)
