"""The ``build_py`` command of pistond's build: setuptools' own, with pistond's steps around it.

``setup.py`` gives setuptools :class:`BuildPy`. Two kinds of step, each a function of a
:class:`~build_hooks.context.BuildContext` returning the files it wrote:

- :data:`SOURCE_STEPS` run first and write into the source tree files that setuptools then
  collects as package data (the native launcher, the playground bundle). They run for editable
  installs too.
- :data:`WHEEL_STEPS` run after the modules are built and add files to the build directory only
  (the shipped recipes, units and docs); setuptools records them as the command's outputs.

To add a step (a native helper, another bundle), write a module beside this one and append its
function to the list of its kind. This package is part of the sdist, never of the wheel; it runs
in the isolated build environment, so it imports only the standard library and setuptools.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

from setuptools.command.build_py import build_py

from build_hooks.context import BuildContext
from build_hooks.launcher import build_launcher
from build_hooks.playground import build_playground
from build_hooks.shipped import ship_data_files

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

ROOT: Final = Path(__file__).resolve().parent.parent
"""The project's root: a checkout, or the unpacked sdist."""


def compile_launcher(context: BuildContext) -> list[Path]:
    """The native launcher, beside its C sources (package data, so nothing to record here)."""
    build_launcher(context.source)
    return []


def bundle_playground(context: BuildContext) -> list[Path]:
    """The playground's JavaScript bundle (package data, so nothing to record here)."""
    build_playground(context.source)
    return []


SOURCE_STEPS: Final[tuple[Callable[[BuildContext], Sequence[Path]], ...]] = (
    compile_launcher,
    bundle_playground,
)
WHEEL_STEPS: Final[tuple[Callable[[BuildContext], Sequence[Path]], ...]] = (ship_data_files,)


class BuildPy(build_py):
    """setuptools' ``build_py`` between pistond's source steps and wheel steps."""

    def run(self) -> None:
        """Source steps, the modules and package data, then the wheel steps."""
        context = BuildContext(
            source=ROOT,
            build_lib=Path(self.build_lib),
            editable=bool(getattr(self, "editable_mode", False)),
            announce=lambda text: self.announce(text, level=2),
        )
        for step in SOURCE_STEPS:
            step(context)
        super().run()
        self._step_outputs: list[str] = []
        for step in WHEEL_STEPS:
            self._step_outputs.extend(str(path) for path in step(context))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        """setuptools' outputs plus the files the wheel steps wrote."""
        outputs: list[str] = super().get_outputs(include_bytecode)
        return outputs + list(getattr(self, "_step_outputs", []))
