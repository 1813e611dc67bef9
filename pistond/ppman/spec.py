"""``piston ppman spec``: make the installed package set match a spec file.

One rule per line; ``#`` starts a comment; blank lines are skipped. ``<glob> <range>`` adds,
for each package name matching the glob, the newest available version within the range to the
wanted set; ``!<glob> <range>`` removes wanted entries matching both. Rules apply in order.
Then wanted packages that are missing are installed and installed packages that are not
wanted are uninstalled, after printing the ``Actions`` list (``None`` when empty).
"""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from pistond.errors import PistondError
from pistond.semver import Version, parse_range, satisfies

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable


class SpecError(ValueError):
    """Raised by :func:`parse_spec` when a line is not ``[!]<glob> <range>``."""


@attrs.frozen
class SpecRule:
    """One line of a spec file."""

    pattern: str
    """A glob over package names (``*``, ``py*``)."""
    range: str
    exclude: bool = False


@attrs.frozen
class Package:
    """A package name and version."""

    language: str
    version: str

    def __str__(self) -> str:
        return f"{self.language}-{self.version}"


@attrs.frozen
class Actions:
    """What reconciliation decided."""

    install: tuple[Package, ...]
    uninstall: tuple[Package, ...]

    def lines(self) -> list[str]:
        """The ``Actions`` list as the CLI prints it."""
        if not self.install and not self.uninstall:
            return ["Actions:", " - None"]
        return [
            "Actions:",
            *(f" - install {package}" for package in self.install),
            *(f" - uninstall {package}" for package in self.uninstall),
        ]


def parse_spec(text: str) -> list[SpecRule]:
    """Parse a spec file (the ``#!`` line is a comment too).

    Raises:
        SpecError: a line is malformed or its range invalid; the message gives the line number.
    """
    rules = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split(None, 1)
        if len(parts) != 2:
            raise SpecError(f"line {number}: expected '<package glob> <version range>'")
        pattern, range_text = parts[0], parts[1].strip()
        exclude = pattern.startswith("!")
        pattern = pattern.removeprefix("!")
        if not pattern or parse_range(range_text) is None:
            raise SpecError(f"line {number}: invalid rule {line!r}")
        rules.append(SpecRule(pattern, range_text, exclude))
    return rules


def reconcile(
    rules: Iterable[SpecRule], available: Iterable[Package], installed: Iterable[Package]
) -> Actions:
    """The installs and uninstalls that make ``installed`` match the rules."""
    available = list(available)
    wanted: list[Package] = []
    for rule in rules:
        if rule.exclude:
            wanted = [
                package
                for package in wanted
                if not (
                    fnmatch.fnmatchcase(package.language, rule.pattern)
                    and satisfies(package.version, rule.range)
                )
            ]
            continue
        names = sorted(
            {p.language for p in available if fnmatch.fnmatchcase(p.language, rule.pattern)}
        )
        for name in names:
            matching = [
                p for p in available if p.language == name and satisfies(p.version, rule.range)
            ]
            if not matching:
                continue
            newest = max(matching, key=lambda p: Version.parse(p.version))
            if newest not in wanted:
                wanted.append(newest)
    current = list(dict.fromkeys(installed))
    return Actions(
        install=tuple(p for p in wanted if p not in current),
        uninstall=tuple(p for p in current if p not in wanted),
    )


class PackagesClient(Protocol):
    """What :func:`apply_spec` needs of an RPC client (``pistond.rpc.client.RpcClient``)."""

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Call ``method`` with ``params``; raise a PistondError on an error reply."""


async def apply_spec(client: PackagesClient, text: str, echo: Callable[[str], None]) -> bool:
    """Reconcile the daemon's packages with the spec ``text`` over RPC.

    Prints the ``Actions`` list, then one line per action (``Installed python-3.12.0`` or the
    error message). Returns True when every action succeeded.

    Raises:
        SpecError: the spec is malformed (nothing is changed then).
    """
    rules = parse_spec(text)
    listing = await client.call("packages", {})
    available = [Package(item["language"], item["version"]) for item in listing]
    installed = [
        Package(item["language"], item["version"]) for item in listing if item["installed"]
    ]
    actions = reconcile(rules, available, installed)
    for line in actions.lines():
        echo(line)
    ok = True
    for verb, method, packages in (
        ("Installed", "packages.install", actions.install),
        ("Uninstalled", "packages.uninstall", actions.uninstall),
    ):
        for package in packages:
            try:
                await client.call(
                    method, {"language": package.language, "version": package.version}
                )
            except PistondError as exc:
                ok = False
                echo(f"{package}: {exc.message}")
            else:
                echo(f"{verb} {package}")
    return ok
