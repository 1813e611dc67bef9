"""The host's apt sources, translated into mmdebstrap mirror lines for a wanted suite.

The host's Debian archive and security archive URIs are read from deb822 files
(``/etc/apt/sources.list.d/*.sources``) and one-line lists (``sources.list``, ``*.list``);
builds then use the same mirrors (and so the same proxy or snapshot setup) with the suite
they want: ``trixie`` gets ``trixie``, ``trixie-updates`` and ``trixie-security``;
``bookworm-backports`` gets ``bookworm`` and its updates, security and backports suites.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import attrs

from pistond.errors import PackageError

APT_DIRECTORY: Final = Path("/etc/apt")
_SECURITY: Final = re.compile(r"-security$|/updates$")


@attrs.frozen
class AptSource:
    """One ``deb`` entry of the host: a URI with its suites and components."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    enabled: bool = True

    @property
    def is_security(self) -> bool:
        """Whether this is a security archive."""
        return any(_SECURITY.search(suite) for suite in self.suites)


def _parse_deb822(text: str) -> list[AptSource]:
    sources = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        current = ""
        for line in stanza.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0].isspace() and current:
                fields[current] += " " + line.strip()
                continue
            key, sep, value = line.partition(":")
            if sep:
                current = key.strip().lower()
                fields[current] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        enabled = fields.get("enabled", "yes").lower() != "no"
        for uri in fields.get("uris", "").split():
            sources.append(
                AptSource(
                    uri=uri.rstrip("/"),
                    suites=tuple(fields.get("suites", "").split()),
                    components=tuple(fields.get("components", "main").split()),
                    enabled=enabled,
                )
            )
    return sources


def _parse_one_line(text: str) -> list[AptSource]:
    sources = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        line = re.sub(r"\[[^\]]*\]", "", line)
        parts = line.split()
        if len(parts) >= 3:
            sources.append(
                AptSource(parts[1].rstrip("/"), (parts[2],), tuple(parts[3:]) or ("main",))
            )
    return sources


def host_sources(apt_directory: Path = APT_DIRECTORY) -> list[AptSource]:
    """Every enabled ``deb`` source configured on the host."""
    sources: list[AptSource] = []
    one_line = [apt_directory / "sources.list"]
    directory = apt_directory / "sources.list.d"
    if directory.is_dir():
        for path in sorted(directory.iterdir()):
            if path.suffix == ".sources" and path.is_file():
                sources += _parse_deb822(path.read_text(encoding="utf-8", errors="replace"))
            elif path.suffix == ".list":
                one_line.append(path)
    for path in one_line:
        if path.is_file():
            sources += _parse_one_line(path.read_text(encoding="utf-8", errors="replace"))
    return [source for source in sources if source.enabled]


def _is_debian(source: AptSource) -> bool:
    """Debian archives publish the release suites (bookworm, trixie, ...) by codename."""
    return any(
        re.fullmatch(r"(bookworm|trixie|forky|bullseye|sid|stable|testing|oldstable)(-[a-z]+)?", s)
        or re.fullmatch(r"[a-z]+-security|[a-z]+/updates", s)
        for s in source.suites
    )


def mirror_lines(suite: str, apt_directory: Path = APT_DIRECTORY) -> tuple[str, list[str]]:
    """The base suite and the ``deb`` lines mmdebstrap should use for ``suite``.

    Raises:
        PackageError: the host has no Debian archive configured.
    """
    sources = [source for source in host_sources(apt_directory) if _is_debian(source)]
    archive = next((source for source in sources if not source.is_security), None)
    security = next((source for source in sources if source.is_security), None)
    if archive is None:
        raise PackageError("the host has no Debian archive in its apt sources")
    base = suite.removesuffix("-backports")
    components = " ".join(archive.components)
    lines = [
        f"deb {archive.uri} {base} {components}",
        f"deb {archive.uri} {base}-updates {components}",
    ]
    if security is not None:
        lines.append(f"deb {security.uri} {base}-security {' '.join(security.components)}")
    if suite.endswith("-backports"):
        lines.append(f"deb {archive.uri} {suite} {components}")
    return base, lines
