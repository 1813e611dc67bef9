"""Installing from a Piston index and uninstalling; both leave no half-done directory behind.

An index install downloads the tarball beside a fresh build directory, checks its sha256
before anything is extracted, extracts it safely (:mod:`pistond.ppman.archive`), checks that
its metadata names the package and version asked for, prepares its root filesystem if it has
one, computes ``.env`` in the build jail and publishes it with one rename, as builds do.
Uninstall renames the package directory away (one atomic step) and then deletes it.
"""

from __future__ import annotations

import logging
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

from pistond.errors import PackageError
from pistond.ppman import archive, fstree
from pistond.ppman.build import compute_env, prepare_root
from pistond.ppman.index import download
from pistond.ppman.layout import BUILD_DIRECTORY, PackageLayout, format_env
from pistond.ppman.metadata import MetadataError, load_metadata
from pistond.ppman.workspace import open_workspace

if TYPE_CHECKING:
    from collections.abc import Callable

    from pistond.ppman.index import IndexEntry

logger = logging.getLogger(__name__)


def install_from_index(
    packages_directory: Path, entry: IndexEntry, progress: Callable[[str], None]
) -> PackageLayout:
    """Download, verify, extract and publish the index entry.

    Raises:
        PackageError: already installed, download failure, ``Checksum miss-match ...``,
            an unsafe archive, or metadata that does not match the entry.
    """
    with open_workspace(packages_directory, entry.language, entry.version) as workspace:
        work = workspace.layout.directory
        tarball = workspace.scratch / "pkg.tar.gz"
        host = urllib.parse.urlsplit(entry.url).hostname or "local file"
        progress(f"downloading {entry.language}-{entry.version} from {host}")
        download(entry.url, tarball, entry.sha256)
        progress("checksum verified; extracting")
        archive.extract(tarball, work)
        tarball.unlink()
        layout = workspace.layout
        try:
            metadata = load_metadata(layout.metadata)
        except MetadataError:
            raise PackageError("package archive has no valid metadata.json") from None
        if (metadata.language, metadata.version) != (entry.language, entry.version):
            raise PackageError(
                f"package archive holds {metadata.language}-{metadata.version}, "
                f"not {entry.language}-{entry.version}"
            )
        if not (work / "run").is_file():
            raise PackageError("package archive has no run script")
        for stale in (layout.marker, layout.env_file):
            stale.unlink(missing_ok=True)
        if layout.root.is_dir():
            prepare_root(layout)
        layout.env_file.write_text(
            format_env(compute_env(layout, workspace.scratch)), encoding="utf-8"
        )
        info = layout.read_pkg_info()
        info.update(
            {
                "language": metadata.language,
                "version": metadata.version,
                "index": {"sha256": entry.sha256, "url": entry.url},
                "installed_at": int(time.time()),
            }
        )
        final = workspace.publish(info)
    progress(f"installed {entry.language}-{entry.version}")
    return final


def uninstall(packages_directory: Path, layout: PackageLayout) -> None:
    """Remove an installed package: rename it away (atomic), then delete it.

    Raises:
        PackageError: the package is not installed, or the removal failed.
    """
    if not layout.is_installed():
        raise PackageError(f"{layout.package}-{layout.version} is not installed")
    build = packages_directory / BUILD_DIRECTORY
    build.mkdir(parents=True, exist_ok=True, mode=0o755)
    trash = Path(tempfile.mkdtemp(prefix=f"removed-{layout.package}-{layout.version}-", dir=build))
    try:
        layout.directory.rename(trash / "package")
    except OSError as exc:
        fstree.remove_tree(trash)
        raise PackageError(
            f"cannot remove {layout.package}-{layout.version}: {exc.strerror}"
        ) from None
    try:
        fstree.remove_tree(trash)
    except OSError:
        logger.warning("leftovers of %s-%s remain in %s", layout.package, layout.version, trash)
    package_dir = layout.directory.parent
    if package_dir.is_dir() and not any(package_dir.iterdir()):
        package_dir.rmdir()
