"""The plugin manager: hook specs, the built-in plugins, the ``pistond`` entry-point group."""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Final

import pluggy

from pistond import hookspecs

if TYPE_CHECKING:
    from pistond.config import DaemonConfig

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP: Final = "pistond"
BUILTIN_PLUGINS: Final = {"packages": "pistond_packages"}
"""Plugin name -> module. The names match their entry points, so none is registered twice."""


def get_plugin_manager(config: DaemonConfig) -> pluggy.PluginManager:
    """Build the plugin manager for ``config``.

    Adds the hook specs, blocks ``config.disabled_plugins``, registers :data:`BUILTIN_PLUGINS`
    and then every plugin of the ``pistond`` entry-point group not already registered.
    Nothing is registered at import time.

    Raises:
        Exception: whatever a third-party plugin raises while it is imported.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    for name in config.disabled_plugins:
        manager.set_blocked(name)
    for name, module_name in BUILTIN_PLUGINS.items():
        if not manager.is_blocked(name):
            manager.register(importlib.import_module(module_name), name=name)
    loaded = manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    logger.info(
        "plugins: %s",
        ", ".join(sorted(name for name, plugin in manager.list_name_plugin() if plugin)) or "none",
    )
    if loaded:
        logger.debug("%d plugins loaded from entry points", loaded)
    return manager
