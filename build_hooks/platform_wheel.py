"""The ``bdist_wheel`` command of pistond's build: a wheel for the platform it was built on.

The wheel carries a native executable (the launcher, ``build_hooks/launcher.py``) and no
Python extension, so setuptools would call it pure (``py3-none-any``); it is tagged
``py3-none-<platform>`` instead: any Python 3, this machine's kind.
"""

from __future__ import annotations

from setuptools.command.bdist_wheel import bdist_wheel


class BdistWheel(bdist_wheel):
    """setuptools' ``bdist_wheel``, not pure, tagged for this platform."""

    def finalize_options(self) -> None:
        """Not a pure-Python wheel."""
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self) -> tuple[str, str, str]:
        """Any Python 3, no ABI, this platform."""
        _, _, platform = super().get_tag()
        return "py3", "none", platform
