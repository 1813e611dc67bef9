"""The package manager (Piston's ``ppman``): recipes, builds, indexes, installs, specs."""

from __future__ import annotations

from pistond.ppman.manager import PackageManager as PackageManager
