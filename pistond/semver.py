"""Semantic versions and node-semver ranges, as Piston matches runtime and package versions.

Implements the range grammar of node-semver (non-loose, ``includePrerelease`` off): exact
versions, X-ranges (``3.x``, ``3``, ``*``, ``""``), comparators (``>=3.10``, ``<4``), tilde
(``~3.1.2``), caret (``^3.1``), hyphen ranges (``1.2.3 - 2.0.0``) and ``||`` alternatives.
A prerelease version satisfies a range only when some comparator of the matching set names a
prerelease of the same ``major.minor.patch``; an invalid range matches nothing.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any, Final, TypeVar, overload

import attrs

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

T = TypeVar("T")

_NUM: Final = r"0|[1-9][0-9]*"
_ID: Final = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_PRE: Final = rf"(?:-(?P<pre>{_ID}(?:\.{_ID})*))"
_BUILD: Final = r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))"
_VERSION_RE: Final = re.compile(
    rf"v?(?P<major>{_NUM})\.(?P<minor>{_NUM})\.(?P<patch>{_NUM}){_PRE}?{_BUILD}?"
)
_XR: Final = rf"(?:[xX*]|{_NUM})"
_PARTIAL_RE: Final = re.compile(
    rf"v?(?P<major>{_XR})(?:\.(?P<minor>{_XR})(?:\.(?P<patch>{_XR}){_PRE}?{_BUILD}?)?)?"
)
_OPERATOR_RE: Final = re.compile(r"(?P<op>~>|~|\^|>=|<=|>|<|=)?\s*(?P<rest>\S+)")
_HYPHEN_RE: Final = re.compile(r"^\s*(?P<low>\S+)\s+-\s+(?P<high>\S+)\s*$")
_MAX_COMPONENT: Final = 2**53 - 1

PreId = int | str


def _compare_ids(left: PreId, right: PreId) -> int:
    if isinstance(left, int) and isinstance(right, int):
        return (left > right) - (left < right)
    if isinstance(left, int):
        return -1
    if isinstance(right, int):
        return 1
    return (left > right) - (left < right)


@functools.total_ordering
@attrs.frozen(eq=False)
class Version:
    """A parsed semantic version; ordered by semver precedence (build metadata ignored)."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[PreId, ...] = ()
    build: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse ``text`` (an optional leading ``v`` or ``=`` is allowed).

        Raises:
            ValueError: ``text`` is not a valid semantic version.
        """
        match = _VERSION_RE.fullmatch(text.strip().lstrip("=").strip())
        if match is None:
            raise ValueError(f"invalid version: {text!r}")
        numbers = [int(match[name]) for name in ("major", "minor", "patch")]
        if any(number > _MAX_COMPONENT for number in numbers):
            raise ValueError(f"invalid version: {text!r}")
        return cls(
            numbers[0],
            numbers[1],
            numbers[2],
            _parse_prerelease(match["pre"]),
            tuple(match["build"].split(".")) if match["build"] else (),
        )

    @property
    def release(self) -> tuple[int, int, int]:
        """``(major, minor, patch)``."""
        return (self.major, self.minor, self.patch)

    def compare(self, other: Version) -> int:
        """-1, 0 or 1 as ``self`` is lower than, equal to or higher than ``other``."""
        if self.release != other.release:
            return -1 if self.release < other.release else 1
        if not self.prerelease or not other.prerelease:
            return (not self.prerelease) - (not other.prerelease)
        for left, right in zip(self.prerelease, other.prerelease, strict=False):
            order = _compare_ids(left, right)
            if order:
                return order
        return (len(self.prerelease) > len(other.prerelease)) - (
            len(self.prerelease) < len(other.prerelease)
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self.compare(other) == 0

    def __lt__(self, other: Version) -> bool:
        return self.compare(other) < 0

    def __hash__(self) -> int:
        return hash((self.release, self.prerelease))

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(str(part) for part in self.prerelease)
        if self.build:
            text += "+" + ".".join(self.build)
        return text


def _parse_prerelease(text: str | None) -> tuple[PreId, ...]:
    if not text:
        return ()
    return tuple(int(part) if part.isdigit() else part for part in text.split("."))


def parse_version(text: str) -> Version | None:
    """The parsed version, or None when ``text`` is not a semantic version (or not a string)."""
    return _parse_version_cached(text) if isinstance(text, str) else None


@functools.lru_cache(maxsize=4096)
def _parse_version_cached(text: str) -> Version | None:
    try:
        return Version.parse(text)
    except ValueError:
        return None


@attrs.frozen
class Comparator:
    """One ``<op> <version>`` test; ``op`` is one of ``<``, ``<=``, ``>``, ``>=``, ``=``."""

    op: str
    version: Version

    def test(self, version: Version) -> bool:
        """Whether ``version`` passes this comparator (prerelease rules aside)."""
        order = version.compare(self.version)
        return {
            "<": order < 0,
            "<=": order <= 0,
            ">": order > 0,
            ">=": order >= 0,
            "=": order == 0,
        }[self.op]


class InvalidRange(ValueError):
    """Raised by :meth:`Range.parse` when a range does not follow the node-semver grammar."""


@attrs.frozen
class _Partial:
    """A possibly incomplete version of a range: None components are wildcards."""

    major: int | None
    minor: int | None
    patch: int | None
    prerelease: tuple[PreId, ...]

    def floor(self) -> Version:
        """The lowest version the partial covers."""
        return Version(self.major or 0, self.minor or 0, self.patch or 0, self.prerelease)


def _parse_partial(text: str) -> _Partial:
    match = _PARTIAL_RE.fullmatch(text)
    if match is None:
        raise InvalidRange(f"invalid version in range: {text!r}")
    parts: list[int | None] = []
    wild = False
    for name in ("major", "minor", "patch"):
        raw = match[name]
        if raw is None or raw in ("x", "X", "*") or wild:
            wild = True
            parts.append(None)
            continue
        number = int(raw)
        if number > _MAX_COMPONENT:
            raise InvalidRange(f"invalid version in range: {text!r}")
        parts.append(number)
    prerelease = _parse_prerelease(match["pre"]) if not wild else ()
    return _Partial(parts[0], parts[1], parts[2], prerelease)


def _upper(version: Version) -> Comparator:
    """``<version-0``: below every release and prerelease of ``version``."""
    return Comparator("<", Version(version.major, version.minor, version.patch, (0,)))


def _bump(partial: _Partial) -> Version:
    """The first version after everything an incomplete partial covers."""
    if partial.major is None:
        raise InvalidRange("nothing to bump")
    if partial.minor is None:
        return Version(partial.major + 1, 0, 0)
    return Version(partial.major, partial.minor + 1, 0)


_NOTHING: Final = (Comparator("<", Version(0, 0, 0, (0,))),)


def _desugar(op: str, partial: _Partial) -> tuple[Comparator, ...]:
    """Turn one simple range term into plain comparators."""
    full = partial.patch is not None
    if op in ("", "="):
        if partial.major is None:
            return ()
        if full:
            return (Comparator("=", partial.floor()),)
        return (Comparator(">=", partial.floor()), _upper(_bump(partial)))
    if op in ("~", "~>"):
        if partial.major is None:
            return ()
        if partial.minor is None:
            return (Comparator(">=", partial.floor()), _upper(Version(partial.major + 1, 0, 0)))
        return (
            Comparator(">=", partial.floor()),
            _upper(Version(partial.major, partial.minor + 1, 0)),
        )
    if op == "^":
        return _caret(partial)
    return _primitive(op, partial)


def _caret(partial: _Partial) -> tuple[Comparator, ...]:
    major, minor, patch = partial.major, partial.minor, partial.patch
    if major is None:
        return ()
    floor = Comparator(">=", partial.floor())
    if minor is None:
        return (floor, _upper(Version(major + 1, 0, 0)))
    if patch is None:
        if major == 0:
            return (floor, _upper(Version(0, minor + 1, 0)))
        return (floor, _upper(Version(major + 1, 0, 0)))
    if major != 0:
        return (floor, _upper(Version(major + 1, 0, 0)))
    if minor != 0:
        return (floor, _upper(Version(0, minor + 1, 0)))
    return (floor, _upper(Version(0, 0, patch + 1)))


def _primitive(op: str, partial: _Partial) -> tuple[Comparator, ...]:
    if partial.major is None:
        return _NOTHING if op in ("<", ">") else ()
    if partial.patch is not None:
        return (Comparator(op, partial.floor()),)
    if op == ">":
        return (Comparator(">=", _bump(partial)),)
    if op == "<=":
        return (_upper(_bump(partial)),)
    if op == "<":
        return (_upper(partial.floor()),)
    return (Comparator(">=", partial.floor()),)


def _parse_set(text: str) -> tuple[Comparator, ...]:
    """One ``||``-separated alternative: a hyphen range or space-separated terms."""
    hyphen = _HYPHEN_RE.match(text)
    if hyphen is not None:
        low = _parse_partial(hyphen["low"])
        high = _parse_partial(hyphen["high"])
        comparators: list[Comparator] = []
        if low.major is not None:
            comparators.append(Comparator(">=", low.floor()))
        if high.major is not None:
            if high.patch is not None:
                comparators.append(Comparator("<=", high.floor()))
            else:
                comparators.append(_upper(_bump(high)))
        return tuple(comparators)
    # Operators may be separated from their version by spaces: ">= 1.2.3".
    compact = re.sub(r"(~>|~|\^|>=|<=|>|<|=)\s+", r"\1", text.strip())
    comparators = []
    for term in compact.split():
        match = _OPERATOR_RE.fullmatch(term)
        if match is None:
            raise InvalidRange(f"invalid range term: {term!r}")
        comparators.extend(_desugar(match["op"] or "", _parse_partial(match["rest"])))
    return tuple(comparators)


def _test_set(comparators: tuple[Comparator, ...], version: Version) -> bool:
    if not all(comparator.test(version) for comparator in comparators):
        return False
    if not version.prerelease:
        return True
    return any(
        comparator.version.prerelease and comparator.version.release == version.release
        for comparator in comparators
    )


@attrs.frozen
class Range:
    """A parsed node-semver range: a union of comparator sets."""

    text: str
    sets: tuple[tuple[Comparator, ...], ...]

    @classmethod
    def parse(cls, text: str) -> Range:
        """Parse a range such as ``^3.1 || >=4.0.0 <5``.

        Raises:
            InvalidRange: ``text`` is not a node-semver range.
        """
        return cls(text, tuple(_parse_set(part) for part in text.split("||")))

    def test(self, version: Version) -> bool:
        """Whether ``version`` satisfies the range."""
        return any(_test_set(comparators, version) for comparators in self.sets)


@functools.lru_cache(maxsize=512)
def parse_range(text: str) -> Range | None:
    """The parsed range, or None when ``text`` is not a valid range (it then matches nothing)."""
    try:
        return Range.parse(text)
    except InvalidRange:
        return None


def satisfies(version: str | Version, range_text: str) -> bool:
    """Whether ``version`` satisfies ``range_text``; invalid versions and ranges never match."""
    parsed = version if isinstance(version, Version) else parse_version(version)
    ranged = parse_range(range_text)
    return parsed is not None and ranged is not None and ranged.test(parsed)


@overload
def max_satisfying(versions: Iterable[str], range_text: str) -> str | None: ...


@overload
def max_satisfying(
    versions: Iterable[T], range_text: str, *, key: Callable[[T], str]
) -> T | None: ...


def max_satisfying(
    versions: Iterable[Any], range_text: str, *, key: Callable[[Any], str] | None = None
) -> Any:
    """The highest of ``versions`` satisfying ``range_text``, or None ("highest wins").

    Args:
        versions: version strings, or any items when ``key`` gives each one's version.
        range_text: a node-semver range; an invalid one matches nothing.
        key: the version (as written) of an item; default: the item itself.

    Returns:
        The item (as given) with the highest satisfying version; of equal versions, the first.
    """
    wanted = parse_range(range_text)
    if wanted is None:
        return None
    best: tuple[Version, Any] | None = None
    for item in versions:
        parsed = parse_version(key(item) if key is not None else str(item))
        if parsed is None or not wanted.test(parsed):
            continue
        if best is None or parsed > best[0]:
            best = (parsed, item)
    return None if best is None else best[1]


def sort_key(text: str) -> tuple[int, Version]:
    """Sort key ordering invalid versions first, then by semver precedence."""
    parsed = parse_version(text)
    return (0, Version(0, 0, 0)) if parsed is None else (1, parsed)
