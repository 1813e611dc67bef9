"""Example pistond plugin: the ``cowsay`` toy language, interpreted by the host's Python."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pistond import Bind, RootView, Runtime, hookimpl

if TYPE_CHECKING:
    from pistond import DaemonConfig

PLUGIN_DIRECTORY = Path(__file__).resolve().parent
TARGET = "/piston/plugins/cowsay"
PYTHONS = ("/usr/bin/python3.13", "/usr/bin/python3.12", "/usr/bin/python3.11", "/usr/bin/python3")


def host_python() -> str | None:
    """The first real host Python binary (never a shim), or None."""
    for candidate in PYTHONS:
        if Path(candidate).is_file():
            return candidate
    return None


@hookimpl
def pistond_runtimes(config: DaemonConfig) -> list[Runtime]:
    """The cowsay runtime, when the host has a Python to run it."""
    python = host_python()
    if python is None or not config.host_runtimes:
        return []
    return [
        Runtime(
            language="cowsay",
            version="1.0.0",
            aliases=("cow",),
            package=None,
            compiled=False,
            root=RootView(path=None, binds=(Bind(str(PLUGIN_DIRECTORY), TARGET),)),
            compile_argv=None,
            run_argv=(python, "-I", f"{TARGET}/cowsay.py"),
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        )
    ]
