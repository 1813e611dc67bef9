"""setuptools entry: pyproject.toml holds the metadata; this adds the build steps of build_hooks.

``build_py`` runs pistond's steps around setuptools' own (``build_hooks/command.py``): the
native launcher compiled from its C sources, the playground's JavaScript bundle, the shipped
data. The launcher makes the wheel specific to its platform (``build_hooks/platform_wheel.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from build_hooks.command import BuildPy  # noqa: E402 (needs the path above)
from build_hooks.platform_wheel import (  # noqa: E402 (needs the path above)
    BdistWheel,
    PlatformDistribution,
)

setup(distclass=PlatformDistribution, cmdclass={"build_py": BuildPy, "bdist_wheel": BdistWheel})
