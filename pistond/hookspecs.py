"""pistond's plugin hooks: specifications only, plus the markers plugins use.

Hooks are called synchronously and return data (runtime records, paths, URLs); they must not
block for long or touch the event loop. Plugins implement them with :data:`hookimpl`::

    from pistond import hookimpl

    @hookimpl
    def pistond_runtimes(config):
        return [Runtime(...)]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    from pistond.config import DaemonConfig
    from pistond.runtimes import Runtime

PROJECT_NAME = "pistond"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def pistond_runtimes(config: DaemonConfig) -> list[Runtime]:
    """Return the runtimes this plugin provides.

    Called at start and after every package install or uninstall; the registry keeps the
    first runtime of each ``(language, version)`` and resolves requests among all of them.

    Args:
        config: the daemon configuration; read it, never mutate it.

    Returns:
        A new list of :class:`pistond.runtimes.Runtime` (empty if none). Argv entries are
        absolute paths inside the sandbox; ``env`` holds no host secrets.
    """


@hookspec
def pistond_recipe_directories(config: DaemonConfig) -> list[Path]:
    """Return directories of package recipes (``<package>/<version>/``) the manager can build.

    Args:
        config: the daemon configuration; read it, never mutate it.

    Returns:
        A new list of absolute paths; directories that do not exist are skipped. When two
        directories hold the same package version, the one listed first wins (plugins
        registered later are asked first).
    """


@hookspec
def pistond_package_indexes(config: DaemonConfig) -> list[str]:
    """Return Piston-format package index URLs (``file://``, ``http://``, ``https://``).

    Args:
        config: the daemon configuration; read it, never mutate it.

    Returns:
        A new list of URLs; each index line is ``language,version,sha256,url``.
    """
