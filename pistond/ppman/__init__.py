"""The package manager (Piston's ``ppman``): recipes, builds, indexes, installs, specs.

``PackageManager`` is imported on first use, so the build jail's helper
(``python -m pistond.ppman.isolate``) starts without trio and the rest of the manager.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pistond.ppman.manager import PackageManager as PackageManager

__all__ = ["PackageManager"]


def __getattr__(name: str) -> Any:
    if name == "PackageManager":
        from pistond.ppman.manager import PackageManager  # noqa: PLC0415 (lazy, see above)

        return PackageManager
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
