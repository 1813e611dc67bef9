"""The built-in plugin: runtimes of the packages installed under the data directory.

Every ``<data>/packages/<package>/<version>/`` holding ``.ppman-installed`` and ``.env`` yields
one runtime per ``provides`` entry of its ``metadata.json`` (or one for the package). A package
whose metadata is broken is logged and skipped, never fatal.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pistond.hookspecs import hookimpl
from pistond.ppman.layout import installed_packages
from pistond.ppman.metadata import MetadataError, load_metadata
from pistond.resources import RECIPES, shipped
from pistond_packages.runtime import package_runtimes

if TYPE_CHECKING:
    from pathlib import Path

    from pistond.config import DaemonConfig
    from pistond.runtimes import Runtime

logger = logging.getLogger(__name__)


def shipped_recipes() -> Path | None:
    """The ``packages/`` recipes shipped with pistond (see :mod:`pistond.resources`), if any."""
    recipes = shipped(RECIPES)
    return recipes if recipes is not None and recipes.is_dir() else None


@hookimpl
def pistond_runtimes(config: DaemonConfig) -> list[Runtime]:
    """Runtimes of every installed package (host-source ones only with host_runtimes on)."""
    runtimes: list[Runtime] = []
    for layout in installed_packages(config.packages_directory):
        if not config.host_runtimes and "host" in layout.read_pkg_info().get("source", {}):
            continue
        try:
            metadata = load_metadata(layout.metadata)
            if (metadata.language, metadata.version) != (layout.package, layout.version):
                logger.warning(
                    "%s: language and version do not match the directory; skipped",
                    layout.metadata,
                )
                continue
            runtimes.extend(package_runtimes(layout, metadata))
        except (MetadataError, OSError, UnicodeDecodeError) as exc:
            logger.warning("installed package skipped: %s", exc)
    return runtimes


@hookimpl
def pistond_recipe_directories(config: DaemonConfig) -> list[Path]:
    """``PISTON_RECIPES_DIRECTORY``, or the recipes shipped with pistond."""
    if config.recipes_directory is not None:
        return [config.recipes_directory]
    shipped = shipped_recipes()
    return [shipped] if shipped is not None else []


@hookimpl
def pistond_package_indexes(config: DaemonConfig) -> list[str]:
    """``PISTON_REPO_URL`` when set."""
    return [config.repo_url] if config.repo_url else []
