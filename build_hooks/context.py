"""What a build step is given: where the source is, where the build goes, which kind of build."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


@dataclass(frozen=True)
class BuildContext:
    """One run of the build steps (plain dataclass: the build environment has no attrs)."""

    source: Path
    """The project's root: a checkout, or the unpacked sdist."""
    build_lib: Path
    """Where setuptools assembles the wheel's contents (``build/lib`` or a temporary directory)."""
    editable: bool
    """An editable install: the package runs from ``source``, so data stays where it is."""
    announce: Callable[[str], None]
    """Prints one line of build output."""
