"""Package recipes: ``packages/<package>/<version>/`` with metadata.json, source.toml and scripts.

``source.toml`` holds exactly one source table:

- ``[debian]`` ``suite`` (any suite the host's mirror serves: bullseye, bookworm,
  bookworm-backports, trixie, forky, sid, ...), ``packages`` (each optionally pinned as
  ``name=version``) and optional ``version_of`` (the package whose upstream version is the
  recipe's; default the first, ``""`` for none);
- ``[pypi]`` ``requirement`` (a pip requirement), optional ``debian_packages`` and ``sdists``
  (distributions pip may build from source: pure Python only, inside the build jail);
- ``[npm]`` ``spec`` (a string or a list of npm specs) and optional ``debian_packages``;
- ``[host]`` ``binaries`` (absolute host paths that must exist) and ``version_command``.

plus an optional ``[build]`` table with ``warm``, a list of argv lists run once in the new
root at build time. Host recipes live in ``packages/<package>/host/``: their metadata.json
carries ``"version": "host"`` and the version is detected at list and install time by running
``version_command`` on the host as ``nobody`` with an empty environment.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import tomllib
from typing import TYPE_CHECKING, Any, Final

import attrs

from pistond.ppman.metadata import NAME_PATTERN, MetadataError, load_metadata
from pistond.semver import parse_version

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from pistond.ppman.metadata import PackageMetadata

logger = logging.getLogger(__name__)

HOST_VERSION: Final = "host"
"""Directory name (and metadata version) of recipes whose version is detected on the host."""
SUITE_PATTERN: Final = re.compile(r"[a-z]+(?:-backports)?")
"""Suite names a recipe may ask for; whether the host's mirror serves it is checked at build."""
SOURCE_FILE: Final = "source.toml"
RECIPE_FILES: Final = ("metadata.json", "source.toml", "run", "compile", "environment")
"""Files copied into an installed package, besides ``test.*``."""
_DEBIAN_PACKAGE: Final = re.compile(r"[a-z0-9][a-z0-9+.-]+(?:=[A-Za-z0-9.+~:-]+)?")
_VERSION_TIMEOUT: Final = 10
_NOBODY: Final = 65534


class RecipeError(ValueError):
    """Raised by recipe loading when a recipe directory is incomplete or its files are invalid."""


@attrs.frozen
class DebianSource:
    """Packages installed with mmdebstrap into a fresh root of ``suite``."""

    suite: str
    packages: tuple[str, ...]
    """Debian package names, each optionally pinned as ``name=version``."""
    version_of: str | None = None
    """The package whose upstream version is the recipe's version (checked before a build);
    None: the first of ``packages``; empty: not checked."""


@attrs.frozen
class PypiSource:
    """A pip requirement installed into ``/opt/<package>`` of the shared Debian base."""

    requirement: str
    debian_packages: tuple[str, ...] = ()
    sdists: tuple[str, ...] = ()
    """Distributions pip may build from source (pure Python only, inside the build jail)."""


@attrs.frozen
class NpmSource:
    """npm specs installed into ``/opt/<package>`` of the shared Debian base."""

    specs: tuple[str, ...]
    debian_packages: tuple[str, ...] = ()


@attrs.frozen
class HostSource:
    """No root filesystem: the job sees the host's own files through the read-only host view."""

    binaries: tuple[str, ...]
    version_command: tuple[str, ...] = ()


Source = DebianSource | PypiSource | NpmSource | HostSource


def source_kind(source: Source) -> str:
    """``debian``, ``pypi``, ``npm`` or ``host``."""
    return {
        DebianSource: "debian",
        PypiSource: "pypi",
        NpmSource: "npm",
        HostSource: "host",
    }[type(source)]


def source_to_json(source: Source) -> dict[str, Any]:
    """The source as ``{kind: {fields}}`` (the shape of ``source.toml`` and pkg-info.json)."""
    return {source_kind(source): attrs.asdict(source)}


@attrs.frozen
class Recipe:
    """One recipe directory, parsed."""

    directory: Path
    metadata: PackageMetadata
    """Its metadata; for host recipes ``version`` is ``host`` until resolved."""
    source: Source
    warm: tuple[tuple[str, ...], ...] = ()

    @property
    def package(self) -> str:
        """The package name."""
        return self.metadata.language

    @property
    def is_host(self) -> bool:
        """Whether the version is detected on the host at install time."""
        return isinstance(self.source, HostSource)

    def files(self) -> list[Path]:
        """The recipe files an installed package keeps: scripts, metadata, sources, tests."""
        names = [name for name in RECIPE_FILES if (self.directory / name).is_file()]
        tests = sorted(p.name for p in self.directory.glob("test.*") if p.is_file())
        return [self.directory / name for name in [*names, *tests]]


def load_recipe(directory: Path) -> Recipe:
    """Parse the recipe in ``directory`` (``<package>/<version>``).

    Raises:
        RecipeError: a file is missing or invalid; the message names the file.
    """
    host = directory.name == HOST_VERSION
    try:
        metadata = load_metadata(directory / "metadata.json", version="0.0.0" if host else None)
    except MetadataError as exc:
        raise RecipeError(str(exc)) from None
    if metadata.language != directory.parent.name:
        raise RecipeError(
            f"{directory / 'metadata.json'}: language {metadata.language!r} "
            f"does not match the directory {directory.parent.name!r}"
        )
    if not host and metadata.version != directory.name:
        raise RecipeError(
            f"{directory / 'metadata.json'}: version {metadata.version!r} "
            f"does not match the directory {directory.name!r}"
        )
    if not (directory / "run").is_file():
        raise RecipeError(f"{directory}: a recipe needs a run script")
    source, warm = load_source(directory / SOURCE_FILE)
    if host != isinstance(source, HostSource):
        raise RecipeError(
            f"{directory / SOURCE_FILE}: [host] recipes live in <package>/host/, others in "
            "<package>/<version>/"
        )
    if isinstance(source, HostSource) and warm:
        raise RecipeError(f"{directory / SOURCE_FILE}: [build] warm needs a root filesystem")
    return Recipe(directory=directory, metadata=metadata, source=source, warm=warm)


def load_source(path: Path) -> tuple[Source, tuple[tuple[str, ...], ...]]:
    """Parse ``source.toml``: the source and the warm commands.

    Raises:
        RecipeError: the file is missing, not TOML, or breaks the format; the message names it.
    """

    def fail(reason: str) -> RecipeError:
        return RecipeError(f"{path}: {reason}")

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise fail(f"cannot read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise fail(f"invalid TOML: {exc}") from None
    kinds = [kind for kind in ("debian", "pypi", "npm", "host") if kind in data]
    unknown = sorted(set(data) - {"debian", "pypi", "npm", "host", "build"})
    if unknown:
        raise fail(f"unknown table [{unknown[0]}]")
    if len(kinds) != 1:
        raise fail("exactly one of [debian], [pypi], [npm], [host] is required")
    table = data[kinds[0]]
    if not isinstance(table, dict):
        raise fail(f"[{kinds[0]}] must be a table")
    source = _SOURCE_PARSERS[kinds[0]](table, lambda reason: fail(f"{kinds[0]}.{reason}"))
    build = data.get("build", {})
    if not isinstance(build, dict) or set(build) - {"warm"}:
        raise fail("[build] takes only warm")
    warm = build.get("warm", [])
    if not isinstance(warm, list) or not all(_is_argv(item) for item in warm):
        raise fail("build.warm must be a list of commands, each a list of strings")
    return source, tuple(tuple(item) for item in warm)


def _is_argv(value: object) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(arg, str) for arg in value)
        and value[0].startswith("/")
    )


def _keys(table: dict[str, Any], allowed: set[str], fail: Any) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise fail(f"{extra[0]} is not a known key")


def _debian_packages(value: object, field: str, fail: Any, *, required: bool) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or (required and not value)
        or not all(isinstance(name, str) and _DEBIAN_PACKAGE.fullmatch(name) for name in value)
    ):
        raise fail(
            f"{field} must be a {'non-empty ' if required else ''}list of Debian package names"
        )
    return tuple(value)


def _parse_debian(table: dict[str, Any], fail: Any) -> DebianSource:
    _keys(table, {"suite", "packages", "version_of"}, fail)
    suite = table.get("suite")
    if not isinstance(suite, str) or not SUITE_PATTERN.fullmatch(suite):
        raise fail("suite must be a Debian suite name such as bookworm or bookworm-backports")
    packages = _debian_packages(table.get("packages"), "packages", fail, required=True)
    version_of = table.get("version_of")
    names = [package.partition("=")[0] for package in packages]
    if version_of is not None and (
        not isinstance(version_of, str) or version_of not in [*names, ""]
    ):
        raise fail("version_of must name one of packages (or be empty)")
    return DebianSource(suite=suite, packages=packages, version_of=version_of)


def _parse_pypi(table: dict[str, Any], fail: Any) -> PypiSource:
    _keys(table, {"requirement", "debian_packages", "sdists"}, fail)
    sdists = table.get("sdists", [])
    if not isinstance(sdists, list) or not all(
        isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name)
        for name in sdists
    ):
        raise fail("sdists must be a list of distribution names")
    requirement = table.get("requirement")
    if not isinstance(requirement, str) or not re.fullmatch(
        r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?\s*(===?|~=|>=|<=|!=|<|>)?\s*[A-Za-z0-9.*+!_-]*",
        requirement,
    ):
        raise fail("requirement must be a pip requirement such as ziglang==0.13.0.post1")
    return PypiSource(
        requirement=requirement,
        debian_packages=_debian_packages(
            table.get("debian_packages", []), "debian_packages", fail, required=False
        ),
        sdists=tuple(sdists),
    )


def _parse_npm(table: dict[str, Any], fail: Any) -> NpmSource:
    _keys(table, {"spec", "debian_packages"}, fail)
    spec = table.get("spec")
    specs = [spec] if isinstance(spec, str) else spec
    if (
        not isinstance(specs, list)
        or not specs
        or not all(
            isinstance(item, str) and re.fullmatch(r"(@[a-z0-9._-]+/)?[a-z0-9._-]+@[^\s/]+", item)
            for item in specs
        )
    ):
        raise fail("spec must be an npm spec such as typescript@5.4.5, or a list of them")
    return NpmSource(
        specs=tuple(specs),
        debian_packages=_debian_packages(
            table.get("debian_packages", []), "debian_packages", fail, required=False
        ),
    )


def _parse_host(table: dict[str, Any], fail: Any) -> HostSource:
    _keys(table, {"binaries", "version_command"}, fail)
    binaries = table.get("binaries")
    if (
        not isinstance(binaries, list)
        or not binaries
        or not all(isinstance(item, str) and item.startswith("/") for item in binaries)
    ):
        raise fail("binaries must be a non-empty list of absolute paths")
    command = table.get("version_command")
    if not isinstance(command, list) or not _is_argv(command):
        raise fail("version_command must be a command: a list of strings, the first absolute")
    return HostSource(binaries=tuple(binaries), version_command=tuple(command))


_SOURCE_PARSERS: Final[dict[str, Any]] = {
    "debian": _parse_debian,
    "pypi": _parse_pypi,
    "npm": _parse_npm,
    "host": _parse_host,
}


def find_recipes(directories: Iterable[Path]) -> list[Recipe]:
    """Every valid recipe under ``directories``; invalid ones are logged and skipped.

    A package version found in an earlier directory hides the same one in later directories.
    """
    recipes: list[Recipe] = []
    seen: set[tuple[str, str]] = set()
    for base in directories:
        if not base.is_dir():
            continue
        for package_dir in sorted(base.iterdir()):
            if not package_dir.is_dir() or not NAME_PATTERN.fullmatch(package_dir.name):
                continue
            for version_dir in sorted(package_dir.iterdir()):
                if not version_dir.is_dir():
                    continue
                key = (package_dir.name, version_dir.name)
                if key in seen:
                    continue
                try:
                    recipes.append(load_recipe(version_dir))
                except RecipeError as exc:
                    logger.warning("recipe skipped: %s", exc)
                    continue
                seen.add(key)
    return recipes


def host_binaries_present(source: HostSource) -> bool:
    """Whether every binary of a host source exists on this host."""
    return all(os.path.isfile(binary) and os.access(binary, os.X_OK) for binary in source.binaries)


def detect_version(source: HostSource) -> str | None:
    """Run ``version_command`` and return the semantic version it printed, or None.

    The command runs on the host as ``nobody`` with no supplementary groups, an empty
    environment (``PATH`` only), ``/`` as working directory, no stdin and a 10 s timeout.
    Output such as ``3.11`` or ``12`` is completed to ``3.11.0`` / ``12.0.0``.
    """
    if not host_binaries_present(source) or not source.version_command:
        return None
    try:
        result = subprocess.run(
            source.version_command,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            cwd="/",
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
            timeout=_VERSION_TIMEOUT,
            check=False,
            **_unprivileged(),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("version command %s failed: %s", source.version_command[0], exc)
        return None
    text = result.stdout.decode("utf-8", "replace").strip()
    return normalize_version(text) if result.returncode == 0 else None


def _unprivileged() -> dict[str, Any]:
    if os.geteuid() != 0:
        return {}
    return {"user": _NOBODY, "group": _NOBODY, "extra_groups": []}


def normalize_version(text: str) -> str | None:
    """The first version-looking token of ``text`` as a semantic version, or None."""
    match = re.search(r"\d+(?:\.\d+){0,2}", text)
    if match is None:
        return None
    parts = [str(int(part)) for part in match[0].split(".")]
    parts += ["0"] * (3 - len(parts))
    version = ".".join(parts)
    return version if parse_version(version) is not None else None
