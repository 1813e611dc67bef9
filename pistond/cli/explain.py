"""The daemon's errors restated in what the ``piston`` user typed.

The daemon answers with Piston's texts (``nolang-* runtime is unknown``, ``Requested package
python-9.x does not exist``), which name the internal ``language-range`` pair. The CLI knows
what was typed and what is installed, so it says that instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from pistond.semver import max_satisfying

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from pistond.models import PackageInfo, RuntimeInfo

ANY_VERSION: Final = "*"


def unknown_runtime(language: str, version: str, runtimes: Sequence[RuntimeInfo]) -> str:
    """Why no runtime matched ``language`` at ``version``."""
    versions = sorted(
        {r.version for r in runtimes if language == r.language or language in r.aliases}
    )
    if not versions:
        return f"no runtime for language {language!r} is installed (piston runtimes lists them)"
    return (
        f"no installed {language} runtime matches version {version!r} "
        f"(installed: {', '.join(versions)})"
    )


def unknown_package(
    name: str, version: str, packages: Sequence[PackageInfo], *, installed_only: bool
) -> str:
    """Why ``ppman install`` (or, with ``installed_only``, ``uninstall``) found no package."""
    versions = sorted(
        {p.version for p in packages if p.language == name and (p.installed or not installed_only)}
    )
    state = "installed" if installed_only else "available"
    if not versions:
        if installed_only:
            return f"package {name!r} is not installed (piston ppman list shows the packages)"
        return f"no package {name!r} to install (piston ppman list shows the packages)"
    return (
        f"no {state} version of package {name!r} matches {version!r} "
        f"({state}: {', '.join(versions)})"
    )


def already_installed(name: str, version: str, packages: Sequence[PackageInfo]) -> str:
    """Why ``ppman install`` had nothing to do."""
    versions = [p.version for p in packages if p.language == name and p.installed]
    chosen = max_satisfying(versions, version)
    typed = name if version == ANY_VERSION else f"{name}={version}"
    return f"{typed} is already installed" + (f" ({name}-{chosen})" if chosen else "")


def no_text_file(files: Sequence[Path]) -> str:
    """Why a request of only binary files was refused."""
    names = ", ".join(str(file) for file in files)
    verb = "is" if len(files) == 1 else "are"
    return (
        f"{names} {verb} not UTF-8 text: the program to run must be a text file (binary files "
        "may go beside it with -f)"
    )
