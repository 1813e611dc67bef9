"""Progress of long ``piston`` operations (``ppman install``, ``ppman spec``).

On a terminal: one progress bar over the packages, showing the package at work, the latest line
of its build and the time spent. Otherwise (a pipe, a log file, ``TERM=dumb``): plain lines, a
header per package and each build line indented, so logs keep everything. Results (``installed
lua-5.4.4``) go to stdout in both cases; progress goes to stderr.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Final, Protocol, TextIO

from tqdm import tqdm

if TYPE_CHECKING:
    from collections.abc import Mapping

STATUS_WIDTH: Final = 60
"""Characters of the latest build line shown beside the bar."""


class Progress(Protocol):
    """Reports a sequence of package operations."""

    def start(self, item: str) -> None:
        """An operation on ``item`` (``lua=5.x``) begins."""

    def line(self, text: str) -> None:
        """One line of the running operation's output."""

    def done(self, message: str) -> None:
        """The running operation ended; ``message`` is its result for stdout."""

    def echo(self, message: str) -> None:
        """A line of output between operations (stdout)."""

    def close(self) -> None:
        """All operations ended."""


def is_terminal(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Whether ``stream`` is a terminal that can redraw a bar (one with a width)."""
    try:
        if not stream.isatty() or environ.get("TERM", "") == "dumb":
            return False
        return os.get_terminal_size(stream.fileno()).columns > 0
    except (OSError, ValueError):  # closed, or no size to ask
        return False


def open_progress(
    total: int, verb: str, *, stream: TextIO | None = None, environ: Mapping[str, str] = os.environ
) -> Progress:
    """A bar on a terminal, plain lines otherwise, for ``total`` operations named by ``verb``."""
    stream = sys.stderr if stream is None else stream
    if is_terminal(stream, environ):
        return BarProgress(total, verb, stream)
    return LineProgress(total, verb, stream)


class LineProgress:
    """Plain lines: ``installing lua (1 of 2)``, then each build line indented."""

    def __init__(self, total: int, verb: str, stream: TextIO) -> None:
        self.total = total
        self.verb = verb
        self.stream = stream
        self.count = 0

    def start(self, item: str) -> None:
        """Print the header line of ``item``."""
        self.count += 1
        print(f"{self.verb} {item} ({self.count} of {self.total})", file=self.stream, flush=True)

    def line(self, text: str) -> None:
        """Print a build line, indented."""
        print(f"  {text}", file=self.stream, flush=True)

    def done(self, message: str) -> None:
        """Print the result."""
        print(message, flush=True)

    def echo(self, message: str) -> None:
        """Print a line of output."""
        print(message, flush=True)

    def close(self) -> None:
        """Nothing to tidy."""


class BarProgress:
    """One tqdm bar over the operations; the latest build line beside it."""

    def __init__(self, total: int, verb: str, stream: TextIO) -> None:
        self.verb = verb
        self.bar = tqdm(
            total=total,
            file=stream,
            unit="pkg",
            dynamic_ncols=True,
            bar_format="{desc} {bar:20} {n_fmt}/{total_fmt} [{elapsed}]{postfix}",
        )

    def start(self, item: str) -> None:
        """Show ``item`` as the one at work."""
        self.bar.set_description_str(f"{self.verb} {item}")
        self.bar.set_postfix_str("", refresh=True)

    def line(self, text: str) -> None:
        """Show the latest build line, shortened to fit."""
        text = text.strip()
        if len(text) > STATUS_WIDTH:
            text = text[: STATUS_WIDTH - 1] + "…"
        self.bar.set_postfix_str(text)

    def done(self, message: str) -> None:
        """Advance the bar and print the result above it."""
        self.bar.update(1)
        self.bar.set_postfix_str("")
        self.echo(message)

    def echo(self, message: str) -> None:
        """Print a line above the bar."""
        self.bar.write(message, file=sys.stdout)

    def close(self) -> None:
        """Remove the bar's last redraw state."""
        self.bar.close()
