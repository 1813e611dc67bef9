"""Steps that run when setuptools builds pistond: a wheel, a wheel from the sdist, or an editable
install.

``[tool.setuptools.cmdclass]`` in ``pyproject.toml`` points ``build_py`` at :class:`BuildPy`.
It runs setuptools' own ``build_py`` (the Python modules), then each step of :data:`STEPS` in
order. A step is a function taking a :class:`BuildContext` and returning the files it wrote
(setuptools records them as the command's outputs). To add one (a native helper, a bundle), write
a module beside this one and append its function to :data:`STEPS`.

This directory is part of the sdist, never of the wheel; it runs in the isolated build
environment, so it may only import the standard library and setuptools.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from setuptools.command.build_py import build_py

from buildsteps.context import BuildContext
from buildsteps.shipped import ship_data_files

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

STEPS: tuple[Callable[[BuildContext], Sequence[Path]], ...] = (ship_data_files,)
"""The build steps, run in this order after the Python modules are built."""


class BuildPy(build_py):
    """setuptools' ``build_py``, then every step of :data:`STEPS`."""

    def run(self) -> None:
        """Build the modules, then run the steps."""
        super().run()
        context = BuildContext(
            source=Path.cwd(),
            build_lib=Path(self.build_lib),
            editable=bool(getattr(self, "editable_mode", False)),
            announce=lambda text: self.announce(text, level=2),
        )
        self._step_outputs: list[str] = []
        for step in STEPS:
            self._step_outputs.extend(str(path) for path in step(context))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        """setuptools' outputs plus the files the steps wrote."""
        outputs: list[str] = super().get_outputs(include_bytecode)
        return outputs + list(getattr(self, "_step_outputs", []))
