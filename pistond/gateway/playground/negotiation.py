"""Content negotiation for ``GET /``: the playground for browsers, Piston's JSON for API clients.

Only a client that ranks ``text/html`` strictly above ``application/json`` gets the page, so
``Accept: */*`` (curl, every Piston client library), no Accept header, and anything asking for
JSON keep Piston's ``{"message": "Piston v3.1.1"}``.
"""

from __future__ import annotations

from typing import Final

_HTML: Final = ("text", "html")
_JSON: Final = ("application", "json")


def _ranges(accept: str) -> list[tuple[str, str, float]]:
    """The media ranges of an Accept header with their weights; malformed entries dropped."""
    ranges = []
    for part in accept.split(","):
        media, *parameters = part.split(";")
        kind, slash, subtype = media.strip().lower().partition("/")
        if not slash or not kind or not subtype:
            continue
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = -1.0
        if 0.0 <= weight <= 1.0:
            ranges.append((kind, subtype, weight))
    return ranges


def _weight(ranges: list[tuple[str, str, float]], media: tuple[str, str]) -> float:
    """The weight of ``media``: that of its most specific matching range, 0 if none matches."""
    best: tuple[int, float] = (-1, 0.0)
    for kind, subtype, weight in ranges:
        if (kind, subtype) == media:
            specificity = 2
        elif kind == media[0] and subtype == "*":
            specificity = 1
        elif (kind, subtype) == ("*", "*"):
            specificity = 0
        else:
            continue
        if specificity > best[0]:
            best = (specificity, weight)
    return best[1]


def prefers_html(accept: str | None) -> bool:
    """Whether an Accept header ranks ``text/html`` above ``application/json`` (ties: JSON)."""
    if not accept:
        return False
    ranges = _ranges(accept)
    html = _weight(ranges, _HTML)
    return html > 0 and html > _weight(ranges, _JSON)
