"""``piston ppman``: list, install, uninstall, spec (over RPC) and pack (local).

Installs and spec runs show their progress (:mod:`pistond.cli.progress`); a package that does
not exist is reported with the name and range typed, and what there is instead.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Final

import attrs

from pistond.cli import explain
from pistond.cli.errors import CliError, find_error
from pistond.cli.output import emit_json
from pistond.cli.progress import Progress, open_progress
from pistond.config import load_config
from pistond.convert import converter
from pistond.errors import ConfigError, PackageError, PackageNotFound, PistondError
from pistond.ppman.layout import PackageLayout
from pistond.ppman.pack import pack
from pistond.ppman.spec import Package, SpecError, apply_spec, parse_spec, reconcile

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from pistond.client import PistonClient
    from pistond.models import PackageRef

ALREADY_INSTALLED: Final = "Already installed"
"""The daemon's (Piston's) answer to installing an installed package."""
EXIT_FAILED: Final = 1
"""Exit status of a spec run in which an action failed."""
ACTIONS = {"l": "list", "i": "install", "u": "uninstall", "s": "spec"}
"""Piston's one-letter aliases of the actions."""


def package_items(items: list[str]) -> list[tuple[str, str]]:
    """``name[=range]`` words as (name, range) pairs; no range is ``*``."""
    pairs = []
    for item in items:
        name, _, version = item.partition("=")
        pairs.append((name, version or explain.ANY_VERSION))
    return pairs


async def ppman_command(client: PistonClient, args: argparse.Namespace) -> int:
    """``piston ppman list|install|uninstall|spec``; returns the exit status."""
    action = ACTIONS.get(args.action, args.action)
    if action == "list":
        packages = await client.packages()
        if args.json:
            emit_json(packages)
        for package in [] if args.json else packages:
            mark = "installed" if package.installed else "-"
            print(f"{package.language}-{package.version} [{package.source}] {mark}")
        return 0
    if action in ("install", "uninstall"):
        return await _change_packages(client, args, install=action == "install")
    return await _spec(client, args)


async def _change_packages(client: PistonClient, args: argparse.Namespace, *, install: bool) -> int:
    items = package_items(args.packages)
    progress = None if args.json else open_progress(len(items), _verb(install=install))
    results = []
    try:
        for name, version in items:
            if progress is not None:
                progress.start(name if version == explain.ANY_VERSION else f"{name}={version}")
            done = await _change_package(client, name, version, install=install, progress=progress)
            results.append(done)
            if progress is not None:
                verb = "installed" if install else "uninstalled"
                progress.done(f"{verb} {done.language}-{done.version}")
    finally:
        if progress is not None:
            progress.close()
    if args.json:
        emit_json(results)
    return 0


def _verb(*, install: bool) -> str:
    return "installing" if install else "uninstalling"


async def _change_package(
    client: PistonClient, name: str, version: str, *, install: bool, progress: Progress | None
) -> PackageRef:
    """Install or uninstall one package; a missing one is explained in the typed terms."""
    try:
        if install:
            lines = None if progress is None else progress.line
            return await client.install_package(name, version, progress=lines)
        return await client.uninstall_package(name, version)
    except (PistondError, BaseExceptionGroup) as exc:
        refused = find_error(exc, PackageError)
        if find_error(exc, PackageNotFound) is not None:
            packages = await client.packages()
            message = explain.unknown_package(name, version, packages, installed_only=not install)
        elif refused is not None and refused.message == ALREADY_INSTALLED:
            message = explain.already_installed(name, version, await client.packages())
        else:
            raise
    raise CliError(message)


@attrs.define(eq=False)
class ProgressClient:
    """The client :func:`~pistond.ppman.spec.apply_spec` talks to: each install and uninstall
    goes through ``progress``, the spec's result lines too."""

    client: PistonClient
    progress: Progress
    active: bool = False
    """An operation started and its result line has not come yet."""

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """As :meth:`PistonClient.call`; package changes report progress."""
        if method not in ("packages.install", "packages.uninstall") or params is None:
            return await self.client.call(method, params)
        language, version = params["language"], params["version"]
        self.progress.start(f"{language}-{version}")
        self.active = True
        if method == "packages.install":
            ref = await self.client.install_package(language, version, progress=self.progress.line)
        else:
            ref = await self.client.uninstall_package(language, version)
        return converter.unstructure(ref)

    def echo(self, line: str) -> None:
        """A line of apply_spec's output: an operation's result, or one between operations."""
        if self.active:
            self.active = False
            self.progress.done(line)
        else:
            self.progress.echo(line)


async def _spec(client: PistonClient, args: argparse.Namespace) -> int:
    try:
        text = args.specfile.read_text()
    except OSError as exc:
        raise CliError(f"cannot read {args.specfile}: {exc.strerror}") from None
    try:
        if args.json:
            lines: list[str] = []
            ok = await apply_spec(client, text, lines.append)
            emit_json({"ok": ok, "lines": lines})
        else:
            ok = await _spec_with_progress(client, text)
    except SpecError as exc:
        raise CliError(f"{args.specfile}: {exc}") from None
    return 0 if ok else EXIT_FAILED


async def _spec_with_progress(client: PistonClient, text: str) -> bool:
    """apply_spec with a progress display sized by the actions the spec asks for."""
    rules = parse_spec(text)
    listing = await client.packages()
    actions = reconcile(
        rules,
        [Package(item.language, item.version) for item in listing],
        [Package(item.language, item.version) for item in listing if item.installed],
    )
    progress = open_progress(len(actions.install) + len(actions.uninstall), "applying")
    reporter = ProgressClient(client, progress)
    echo: Callable[[str], None] = reporter.echo
    try:
        return await apply_spec(reporter, text, echo)
    finally:
        progress.close()


def pack_command(args: argparse.Namespace) -> int:
    """``piston ppman pack``: the tarball of an installed package and its index line."""
    try:
        config = load_config(os.environ)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    layout = PackageLayout.of(config.packages_directory, args.package, args.package_version)
    base_url = args.base_url or args.output.resolve().as_uri()
    path, entry = pack(layout, args.output, base_url)
    if args.json:
        emit_json({"path": str(path), "index_line": entry.line()})
    else:
        print(f"wrote {path}", file=sys.stderr)
        print(entry.line())
    return 0
