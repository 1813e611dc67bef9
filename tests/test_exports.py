"""The public names of pistond, pinned: each exported once, none missing."""

from __future__ import annotations

import ast
from pathlib import Path
from types import ModuleType

import pytest

import pistond
import pistond.client
import pistond.rpc
import pistond.testing

PUBLIC = {
    pistond: {
        "__version__", "ErrorCode", "Forbidden", "InternalError", "InvalidParams",
        "InvalidRequest", "JobNotFound", "MethodNotFound", "Overloaded", "PackageError",
        "PackageNotFound", "PistondError", "RuntimeUnknown", "hookimpl", "JobResult",
        "RuntimeInfo", "StageName", "StageResult", "StageStatus", "Runtime", "RootView", "Bind",
        "DaemonConfig", "TestResult", "Verdict",
    },
    pistond.testing: {
        "check_runtime", "DaemonProcess", "FakeSandbox", "FakeStage", "stage_result",
        "current_credentials", "open_memory_rpc",
    },
}  # fmt: skip


def _reexports(module: ModuleType) -> list[str]:
    """Names a package module re-exports in the explicit ``import x as x`` form."""
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text())
    return [
        alias.asname
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.asname is not None and alias.asname == alias.name
    ]


@pytest.mark.parametrize("module", list(PUBLIC), ids=lambda m: m.__name__)
def test_exports_are_pinned_and_unique(module: ModuleType) -> None:
    """Every public name is re-exported exactly once, and the set is the pinned one."""
    names = _reexports(module)
    assert len(names) == len(set(names))
    assert set(names) == PUBLIC[module]
    for name in names:
        assert getattr(module, name) is not None


def test_exports_client_all_resolves() -> None:
    """pistond.client's __all__ names exist."""
    for name in pistond.client.__all__:
        assert hasattr(pistond.client, name)
    assert hasattr(pistond.rpc, "serve_rpc")


def test_example_plugin_uses_only_the_front() -> None:
    """The example plugin imports pistond's names from the package front only."""
    plugin = Path(__file__).parents[1] / "contrib" / "example-plugin" / "src"
    imported = []
    for source in plugin.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pistond"):
                imported.append(node.module)
            if isinstance(node, ast.Import):
                imported += [a.name for a in node.names if a.name.startswith("pistond.")]
    assert imported
    assert set(imported) == {"pistond"}
