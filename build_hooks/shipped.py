"""Copy the files pistond ships beside its code into the wheel, under ``pistond/share/``.

The daemon finds them there with ``importlib.resources`` (``pistond/resources.py``): runtime
recipes (``packages/``), systemd units and sysusers.d (``systemd/``), the user documentation
(``docs/``, ``README.md``), extras (``contrib/``) and example programs (``examples/``). An
editable install skips this: its checkout already holds them.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from pathlib import Path

    from build_hooks.context import BuildContext

SHARE: Final = "pistond/share"
"""Where the shipped files go inside the wheel (``pistond.resources.SHARE`` reads it)."""
SHIPPED: Final = ("packages", "systemd", "docs", "contrib", "examples", "README.md")
"""Top-level directories and files of the source that go into the wheel."""
IGNORED: Final = ("__pycache__", "*.pyc", "*.egg-info", "build", "dist", ".venv", "node_modules")
"""Build and cache debris that must never be shipped (e.g. from building contrib/ plugins)."""


def ship_data_files(context: BuildContext) -> list[Path]:
    """Copy :data:`SHIPPED` into ``build_lib/pistond/share``; return the files written.

    Raises:
        FileNotFoundError: the source lacks one of them (an sdist built without MANIFEST.in).
    """
    if context.editable:
        return []
    target = context.build_lib / SHARE
    if target.exists():
        shutil.rmtree(target)
    for name in SHIPPED:
        source = context.source / name
        if not source.exists():
            raise FileNotFoundError(f"{source} is missing: the wheel must ship it")
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns(*IGNORED))
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    written = sorted(path for path in target.rglob("*") if path.is_file())
    context.announce(f"shipping {len(written)} data files in {SHARE}/")
    return written
