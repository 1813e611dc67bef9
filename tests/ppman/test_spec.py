"""ppman spec files: rules in order, globs, exclusions, the Actions list."""

from __future__ import annotations

from typing import Any

import pytest

from pistond.errors import PackageError
from pistond.ppman.spec import Actions, Package, SpecError, apply_spec, parse_spec, reconcile

AVAILABLE = [
    Package("python", "3.12.0"),
    Package("python", "3.10.0"),
    Package("python", "2.7.18"),
    Package("node", "20.11.1"),
    Package("node", "18.15.0"),
    Package("gcc", "10.2.0"),
]

PUBLIC = """#!/usr/bin/env -S piston ppman spec
# Piston's public.pps
* *
!python *
python 3.*
python 2.*
"""


def test_spec_parse_rules() -> None:
    """Comments, blank lines and the shebang are skipped; `!` marks an exclusion."""
    rules = parse_spec(PUBLIC)
    assert [(r.pattern, r.range, r.exclude) for r in rules] == [
        ("*", "*", False),
        ("python", "*", True),
        ("python", "3.*", False),
        ("python", "2.*", False),
    ]
    with pytest.raises(SpecError, match="line 2"):
        parse_spec("* *\npython\n")
    with pytest.raises(SpecError, match="invalid rule"):
        parse_spec("python latest\n")


def test_spec_reconcile_public() -> None:
    """public.pps: newest of each package, python newest 3.x and 2.x; extras uninstalled."""
    actions = reconcile(
        parse_spec(PUBLIC), AVAILABLE, [Package("python", "3.10.0"), Package("node", "20.11.1")]
    )
    assert actions.install == (
        Package("gcc", "10.2.0"),
        Package("python", "3.12.0"),
        Package("python", "2.7.18"),
    )
    assert actions.uninstall == (Package("python", "3.10.0"),)
    assert actions.lines()[1] == " - install gcc-10.2.0"


def test_spec_reconcile_nothing_to_do() -> None:
    """When the installed set already matches, the Actions list says None."""
    installed = [Package("node", "20.11.1")]
    actions = reconcile(parse_spec("no* >=20\n"), AVAILABLE, installed)
    assert actions == Actions((), ())
    assert actions.lines() == ["Actions:", " - None"]


class FakeClient:
    """Answers packages calls from lists; records installs and uninstalls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any] | None]] = []

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        self.calls.append((method, params))
        if method == "packages":
            return [
                {
                    "language": p.language,
                    "version": p.version,
                    "installed": p.version == "18.15.0",
                    "source": "index",
                }
                for p in AVAILABLE
            ]
        if params and params["language"] == "gcc":
            raise PackageError("build failed")
        return params


async def test_spec_apply_over_client() -> None:
    """apply_spec prints the actions, calls install/uninstall, and reports failures."""
    client = FakeClient()
    lines: list[str] = []
    ok = await apply_spec(client, "node 20\ngcc *\n", lines.append)
    assert not ok
    assert lines == [
        "Actions:",
        " - install node-20.11.1",
        " - install gcc-10.2.0",
        " - uninstall node-18.15.0",
        "Installed node-20.11.1",
        "gcc-10.2.0: build failed",
        "Uninstalled node-18.15.0",
    ]
    assert client.calls[-1] == ("packages.uninstall", {"language": "node", "version": "18.15.0"})
