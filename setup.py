"""setuptools entry: pyproject.toml holds the metadata; this adds the build steps of build_hooks."""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from build_hooks.command import BuildPy  # noqa: E402 (needs the path above)

setup(cmdclass={"build_py": BuildPy})
