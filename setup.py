"""setuptools entry: pyproject.toml holds the metadata; this adds the build steps of build_hooks."""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from build_hooks.playground import build_playground  # noqa: E402 (needs the path above)


class BuildPy(build_py):
    """Build the playground bundle first, so its files are collected as package data."""

    def run(self) -> None:
        """Bundle the playground, then copy the Python files and package data."""
        build_playground(ROOT)
        super().run()


setup(cmdclass={"build_py": BuildPy})
