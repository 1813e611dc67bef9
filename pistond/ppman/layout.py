"""The on-disk layout of an installed package: ``<data>/packages/<package>/<version>/``.

| path | content |
|---|---|
| ``metadata.json``, ``run``, ``compile``?, ``environment``, ``test.*`` | the recipe files |
| ``root/`` | the package's root filesystem; absent for host sources and Piston index packages |
| ``pkg-info.json`` | metadata, source and what the build resolved (versions, checksums, sizes) |
| ``.env`` | ``KEY=value`` lines: the package environment |
| ``.ppman-installed`` | marker written last, holding the install time in ms since the epoch |
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Final

import attrs

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

PISTON_PACKAGES: Final = "/piston/packages"
"""Where a package directory appears inside the sandbox (its Piston path)."""
MARKER: Final = ".ppman-installed"
ENV_FILE: Final = ".env"
PKG_INFO: Final = "pkg-info.json"
METADATA: Final = "metadata.json"
ROOT: Final = "root"
BUILD_DIRECTORY: Final = ".build"
"""Under the packages directory: builds in progress, renamed into place when done."""
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@attrs.frozen
class PackageLayout:
    """The paths of one installed (or installing) package version."""

    directory: Path
    package: str
    version: str

    @classmethod
    def of(cls, packages_directory: Path, package: str, version: str) -> PackageLayout:
        """The layout of ``package`` at ``version`` under ``packages_directory``."""
        return cls(packages_directory / package / version, package, version)

    @property
    def piston_path(self) -> str:
        """The package directory's path inside the sandbox."""
        return f"{PISTON_PACKAGES}/{self.package}/{self.version}"

    @property
    def root(self) -> Path:
        """The package's root filesystem."""
        return self.directory / ROOT

    @property
    def marker(self) -> Path:
        """The ``.ppman-installed`` marker."""
        return self.directory / MARKER

    @property
    def env_file(self) -> Path:
        """The ``.env`` file."""
        return self.directory / ENV_FILE

    @property
    def pkg_info(self) -> Path:
        """The ``pkg-info.json`` file."""
        return self.directory / PKG_INFO

    @property
    def metadata(self) -> Path:
        """The ``metadata.json`` file."""
        return self.directory / METADATA

    def is_installed(self) -> bool:
        """Installed means the marker and ``.env`` exist (Piston ignores half-unpacked ones)."""
        return self.marker.is_file() and self.env_file.is_file()

    def read_pkg_info(self) -> dict[str, Any]:
        """``pkg-info.json`` as a dict; empty when missing or unreadable."""
        try:
            data = json.loads(self.pkg_info.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


def installed_packages(packages_directory: Path) -> Iterator[PackageLayout]:
    """Every installed package under ``packages_directory``, sorted by package and version."""
    if not packages_directory.is_dir():
        return
    for package_dir in sorted(packages_directory.iterdir()):
        if package_dir.name.startswith(".") or not package_dir.is_dir():
            continue
        for version_dir in sorted(package_dir.iterdir()):
            if version_dir.name.startswith(".") or not version_dir.is_dir():
                continue
            layout = PackageLayout(version_dir, package_dir.name, version_dir.name)
            if layout.is_installed():
                yield layout


def parse_env(text: str) -> dict[str, str]:
    """Parse ``.env`` lines (``KEY=value``); lines without a valid name are skipped."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and _ENV_NAME.fullmatch(name):
            env[name] = value
    return env


def format_env(env: Mapping[str, str]) -> str:
    """``.env`` text for ``env``; names must be valid and values single-line.

    Raises:
        ValueError: a name is not a shell variable name or a value holds a newline or NUL.
    """
    lines = []
    for name, value in env.items():
        if not _ENV_NAME.fullmatch(name) or "\n" in value or "\0" in value:
            raise ValueError(f"cannot store variable {name!r} in .env")
        lines.append(f"{name}={value}\n")
    return "".join(lines)
