"""setuptools entry: pyproject.toml holds the metadata; this adds the build steps of build_hooks.

Two steps run before the package files are collected: the native launcher is compiled from
its C sources (``build_hooks/launcher.py``), and the playground's JavaScript bundle is built
from npm packages (``build_hooks/playground.py``). The launcher makes the wheel specific to
its platform (``py3-none-<platform>``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from build_hooks.launcher import build_launcher  # noqa: E402 (needs the path above)
from build_hooks.playground import build_playground  # noqa: E402 (needs the path above)


class BuildPy(build_py):
    """Build the launcher and the playground bundle first, so they are collected as package data."""

    def run(self) -> None:
        """Compile the launcher, bundle the playground, then copy the package files."""
        build_launcher(ROOT)
        build_playground(ROOT)
        super().run()


class BdistWheel(bdist_wheel):
    """A wheel for this platform: it carries a native executable (no Python extension)."""

    def finalize_options(self) -> None:
        """Not a pure-Python wheel."""
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self) -> tuple[str, str, str]:
        """Any Python 3, no ABI, this platform."""
        _, _, platform = super().get_tag()
        return "py3", "none", platform


setup(cmdclass={"build_py": BuildPy, "bdist_wheel": BdistWheel})
