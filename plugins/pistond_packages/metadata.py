"""Package metadata (``metadata.json``, Piston's schema) and its loading.

Errors name the file and the field: ``<path>: aliases must be a list of strings``.
"""

from __future__ import annotations

import json
import re
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import attrs

from pistond.config import LIMIT_KEYS
from pistond.semver import parse_version

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+#-]*")
"""Package and language names: no slashes, no leading dot (they become directory names)."""


class MetadataError(ValueError):
    """Raised by :func:`load_metadata` when ``metadata.json`` is unreadable or breaks the schema."""


def _frozen_limits(value: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(value))


@attrs.frozen
class ProvidedLanguage:
    """One entry of ``provides``: a language the package offers as its own runtime."""

    language: str
    aliases: tuple[str, ...] = ()
    limit_overrides: Mapping[str, int] = attrs.field(
        factory=dict, converter=_frozen_limits, hash=False
    )


@attrs.frozen
class PackageMetadata:
    """``metadata.json`` of a package."""

    language: str
    """The package name (``gcc``, ``node``, ``python``)."""
    version: str
    """The package version, a semantic version equal to its directory name."""
    aliases: tuple[str, ...] = ()
    """Aliases of the package's own runtime (unused when ``provides`` is set)."""
    provides: tuple[ProvidedLanguage, ...] = ()
    """Languages offered, one runtime each; empty: one runtime named after the package."""
    limit_overrides: Mapping[str, int] = attrs.field(
        factory=dict, converter=_frozen_limits, hash=False
    )
    compile_scratch: tuple[str, ...] = ()
    """pistond extension: patterns of files the compile leaves that the run does not need
    (kept out of compile cache entries); a pattern without ``/`` matches at any depth."""

    def languages(self) -> tuple[ProvidedLanguage, ...]:
        """The runtimes this package yields: its ``provides`` entries, or itself."""
        if self.provides:
            return self.provides
        return (ProvidedLanguage(self.language, self.aliases, self.limit_overrides),)

    def to_json(self) -> dict[str, Any]:
        """Piston's ``metadata.json`` object."""
        data: dict[str, Any] = {
            "language": self.language,
            "version": self.version,
            "aliases": list(self.aliases),
        }
        if self.provides:
            data["provides"] = [
                {
                    "language": entry.language,
                    "aliases": list(entry.aliases),
                    "limit_overrides": dict(entry.limit_overrides),
                }
                for entry in self.provides
            ]
        if self.limit_overrides:
            data["limit_overrides"] = dict(self.limit_overrides)
        if self.compile_scratch:
            data["compile_scratch"] = list(self.compile_scratch)
        return data


def load_metadata(path: Path, *, version: str | None = None) -> PackageMetadata:
    """Load and check ``metadata.json``.

    Args:
        path: the file.
        version: when given, replaces the file's ``version`` (host recipes, whose version is
            detected at install time).

    Raises:
        MetadataError: the file is unreadable, not JSON, or breaks the schema; the message
            starts with the path.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MetadataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise MetadataError(f"{path}: not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise MetadataError(f"{path}: invalid JSON: {exc.msg} at line {exc.lineno}") from None
    return metadata_from_json(data, source=str(path), version=version)


def metadata_from_json(data: object, *, source: str, version: str | None = None) -> PackageMetadata:
    """Check a decoded ``metadata.json`` object; errors start with ``source``.

    Raises:
        MetadataError: the object breaks the schema.
    """

    def fail(reason: str) -> MetadataError:
        return MetadataError(f"{source}: {reason}")

    if not isinstance(data, dict):
        raise fail("must be a JSON object")
    language = _name(data.get("language"), "language", fail)
    if version is None:
        version = data.get("version")
        if not isinstance(version, str) or parse_version(version) is None:
            raise fail("version must be a semantic version string such as 3.12.0")
    elif not isinstance(data.get("version", ""), str):
        raise fail("version must be a string")
    provides_raw = data.get("provides", [])
    if not isinstance(provides_raw, list):
        raise fail("provides must be a list of objects")
    provides = []
    for index, entry in enumerate(provides_raw):
        where = f"provides[{index}]"
        if not isinstance(entry, dict):
            raise fail(f"{where} must be an object")
        provides.append(
            ProvidedLanguage(
                language=_name(entry.get("language"), f"{where}.language", fail),
                aliases=_aliases(entry.get("aliases", []), f"{where}.aliases", fail),
                limit_overrides=_limits(
                    entry.get("limit_overrides", {}), f"{where}.limit_overrides", fail
                ),
            )
        )
    return PackageMetadata(
        language=language,
        version=version,
        aliases=_aliases(data.get("aliases", []), "aliases", fail),
        provides=tuple(provides),
        limit_overrides=_limits(data.get("limit_overrides", {}), "limit_overrides", fail),
        compile_scratch=_patterns(data.get("compile_scratch", []), "compile_scratch", fail),
    )


def _name(value: object, field: str, fail: Any) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise fail(f"{field} must be a name of letters, digits and ._+#- characters")
    return value


def _aliases(value: object, field: str, fail: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise fail(f"{field} must be a list of strings")
    return tuple(value)


def _patterns(value: object, field: str, fail: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise fail(f"{field} must be a list of file name patterns")
    for item in value:
        if item.startswith("/") or "\0" in item or ".." in item.split("/"):
            raise fail(f"{field} patterns are relative to the box and hold no '..'")
    return tuple(value)


def _limits(value: object, field: str, fail: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        raise fail(f"{field} must be an object")
    limits: dict[str, int] = {}
    for key, number in value.items():
        if key not in LIMIT_KEYS:
            raise fail(f"{field}.{key} is not a limit (expected one of {', '.join(LIMIT_KEYS)})")
        if isinstance(number, bool) or not isinstance(number, int):
            raise fail(f"{field}.{key} must be an integer")
        limits[key] = number
    return limits
