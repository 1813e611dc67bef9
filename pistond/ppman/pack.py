"""``piston ppman pack``: an installed package as ``<package>-<version>.pkg.tar.gz`` plus its
Piston index line, so one build serves many hosts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from pistond.errors import PackageError
from pistond.ppman import archive
from pistond.ppman.index import IndexEntry, sha256_file
from pistond.ppman.layout import ENV_FILE, MARKER

if TYPE_CHECKING:
    from pathlib import Path

    from pistond.ppman.layout import PackageLayout

EXCLUDED: Final = (ENV_FILE, MARKER, "pkg.tar.gz")
"""Computed at install time on the receiving host, never shipped."""


def pack(layout: PackageLayout, output_directory: Path, base_url: str) -> tuple[Path, IndexEntry]:
    """Write the tarball of an installed package and return it with its index entry.

    Args:
        layout: an installed package.
        output_directory: where ``<package>-<version>.pkg.tar.gz`` is written.
        base_url: the URL the tarball will be served under (its directory).

    Raises:
        PackageError: the package is not installed.
    """
    if not layout.is_installed():
        raise PackageError(f"{layout.package}-{layout.version} is not installed")
    output_directory.mkdir(parents=True, exist_ok=True)
    name = f"{layout.package}-{layout.version}.pkg.tar.gz"
    path = output_directory / name
    partial = output_directory / f".{name}.partial"
    try:
        archive.create(partial, layout.directory, exclude=EXCLUDED)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    entry = IndexEntry(
        layout.package, layout.version, sha256_file(path), f"{base_url.rstrip('/')}/{name}"
    )
    return path, entry
