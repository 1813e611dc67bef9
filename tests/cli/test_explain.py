"""pistond.cli.explain: the daemon's refusals in the words the user typed."""

from __future__ import annotations

from pathlib import Path

from pistond.cli.explain import already_installed, no_text_file, unknown_package, unknown_runtime
from pistond.models import PackageInfo, RuntimeInfo

RUNTIMES = [
    RuntimeInfo("python", "3.11.2", ("py",), None, compiled=False),
    RuntimeInfo("python", "3.13.5", ("py",), None, compiled=False),
]
PACKAGES = [
    PackageInfo("python", "3.11.2", installed=True, source="local"),
    PackageInfo("python", "3.13.5", installed=False, source="local"),
]


def test_explain_unknown_runtime() -> None:
    """An unknown language, or a known one without the version, each said plainly."""
    assert unknown_runtime("nolang", "*", RUNTIMES) == (
        "no runtime for language 'nolang' is installed (piston runtimes lists them)"
    )
    assert unknown_runtime("py", "9.x", RUNTIMES) == (
        "no installed py runtime matches version '9.x' (installed: 3.11.2, 3.13.5)"
    )


def test_explain_unknown_package() -> None:
    """install and uninstall name the package and range typed, and what exists."""
    assert unknown_package("nolang", "*", PACKAGES, installed_only=False) == (
        "no package 'nolang' to install (piston ppman list shows the packages)"
    )
    assert unknown_package("python", "9.x", PACKAGES, installed_only=False) == (
        "no available version of package 'python' matches '9.x' (available: 3.11.2, 3.13.5)"
    )
    assert unknown_package("python", "3.13.x", PACKAGES, installed_only=True) == (
        "no installed version of package 'python' matches '3.13.x' (installed: 3.11.2)"
    )
    assert unknown_package("lua", "*", PACKAGES, installed_only=True) == (
        "package 'lua' is not installed (piston ppman list shows the packages)"
    )
    assert already_installed("python", "3.x", PACKAGES) == (
        "python=3.x is already installed (python-3.11.2)"
    )


def test_explain_binary_files_are_named() -> None:
    """A request with no text file names the files."""
    assert no_text_file([Path("/bin/ls")]) == (
        "/bin/ls is not UTF-8 text: the program to run must be a text file (binary files may "
        "go beside it with -f)"
    )
    assert no_text_file([Path("a.bin"), Path("b.bin")]).startswith("a.bin, b.bin are not")
