"""Files shipped with pistond beside its code: recipes, systemd units, docs, contrib, examples.

A wheel carries them inside the package, under ``pistond/share/`` (the build step
``build_hooks/shipped.py`` puts them there), and they are found with :mod:`importlib.resources`.
An editable install (``pip install -e``) runs from a checkout that holds them at its top level;
the install's own record of that checkout (PEP 610 ``direct_url.json``) names it, and it is
used only when it holds the very package being run.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Final

SHARE: Final = "share"
"""The directory of shipped files inside the ``pistond`` package of a wheel."""
RECIPES: Final = "packages"
"""Runtime recipes (``packages/<package>/<version>/``)."""
UNITS: Final = "systemd"
"""systemd units and ``sysusers.d/``."""
DOCS: Final = "docs"
"""The user documentation."""
CONTRIB: Final = "contrib"
"""Extras: the example plugin, completions, the container image, Kubernetes manifests."""
EXAMPLES: Final = "examples"
"""Example programs."""


def shipped(name: str) -> Path | None:
    """The shipped directory or file ``name`` (one of the constants above), if present.

    Returns None when this installation carries no such file (e.g. a bare source tree put on
    ``sys.path`` by hand).
    """
    package = importlib.resources.files("pistond")
    inside = package / SHARE / name
    if isinstance(inside, Path) and inside.exists():
        return inside
    checkout = editable_checkout()
    if checkout is not None and (checkout / name).exists():
        return checkout / name
    return None


def editable_checkout() -> Path | None:
    """The checkout an editable install of pistond runs from, or None for other installs.

    Read from the distribution's ``direct_url.json`` (PEP 610), and accepted only when that
    checkout's ``pistond/`` is the package imported now (not another copy on ``sys.path``).
    Every distribution named pistond on ``sys.path`` is asked: a build's ``pistond.egg-info``
    in the current directory may shadow the installed one.
    """
    for distribution in importlib.metadata.distributions(name="pistond"):
        checkout = _recorded_checkout(distribution.read_text("direct_url.json"))
        if checkout is not None:
            return checkout
    return None


def _recorded_checkout(direct_url: str | None) -> Path | None:
    """The checkout a ``direct_url.json`` names, if it is editable and holds this package."""
    if not direct_url:
        return None
    try:
        record = json.loads(direct_url)
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict) or not record.get("dir_info", {}).get("editable"):
        return None
    url = urllib.parse.urlsplit(str(record.get("url", "")))
    if url.scheme != "file":
        return None
    checkout = Path(urllib.request.url2pathname(url.path))
    package = importlib.resources.files("pistond")
    if not isinstance(package, Path) or (checkout / "pistond").resolve() != package.resolve():
        return None
    return checkout
