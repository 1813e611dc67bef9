"""pistond's build makes a wheel for the platform it was built on.

The wheel carries a native executable (the launcher, ``build_hooks/launcher.py``) and no
Python extension, so setuptools would call it pure (``py3-none-any``). :class:`PlatformDistribution`
says it has native parts (so everything is built and packed as platform files), and
:class:`BdistWheel` tags it ``py3-none-<platform>``: any Python 3, this machine's kind.
"""

from __future__ import annotations

from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.dist import Distribution


class PlatformDistribution(Distribution):
    """A distribution with native parts, though no Python extension."""

    def has_ext_modules(self) -> bool:
        """Yes: the launcher."""
        return True


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
