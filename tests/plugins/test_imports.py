"""The package format is core: the daemon never imports the built-in packages plugin."""

from __future__ import annotations

import ast
from pathlib import Path

import pistond

PLUGIN = "pistond_packages"


def _imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` statement of ``path`` names."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module)
    return modules


def test_imports_pistond_never_imports_the_packages_plugin() -> None:
    """No module under pistond/ imports pistond_packages (the plugin manager loads it by name)."""
    package = Path(pistond.__file__).parent
    offenders = sorted(
        str(path.relative_to(package.parent))
        for path in package.rglob("*.py")
        if any(
            module == PLUGIN or module.startswith(PLUGIN + ".")
            for module in _imported_modules(path)
        )
    )
    assert offenders == []


def test_imports_plugin_reads_the_format_from_ppman() -> None:
    """The plugin keeps its hooks and runtime.py; layout and metadata come from pistond.ppman."""
    import pistond_packages  # noqa: PLC0415 (the module under test)

    plugin = Path(pistond_packages.__file__).parent
    assert sorted(path.name for path in plugin.glob("*.py")) == ["__init__.py", "runtime.py"]
    imported = set().union(*(_imported_modules(path) for path in plugin.glob("*.py")))
    assert {"pistond.ppman.layout", "pistond.ppman.metadata"} <= imported
