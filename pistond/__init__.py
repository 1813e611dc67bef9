"""pistond: a Piston-compatible code-execution daemon. Public: ``hookimpl`` for plugins."""

from __future__ import annotations

from pistond.hookspecs import hookimpl as hookimpl
