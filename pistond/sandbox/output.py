"""Bounded output capture: the first ``output_max_size`` bytes of each stream, OL / EL on overflow.

The capture reads stdout and stderr concurrently and keeps exactly the first ``limit`` bytes of
each, and of ``output`` (both interleaved in arrival order, under the same cap). The first
stream to cross its cap decides the verdict: the supervisor is told at once (so it can kill the
sandbox) and that pipe is closed, so the daemon's memory stays bounded whatever the program
writes. Bytes are decoded once, at the end, with invalid UTF-8 replaced.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final, Literal

import attrs
import trio

logger = logging.getLogger(__name__)

StreamName = Literal["stdout", "stderr"]
OnOutput = Callable[[StreamName, bytes], Awaitable[None]]
"""Awaited with each chunk kept (within the cap), in arrival order."""
OnOverflow = Callable[[StreamName], None]
"""Called at once, without blocking, when a stream first crosses its cap."""

READ_SIZE: Final = 65536


@attrs.frozen
class CapturedText:
    """The decoded output of a stage."""

    stdout: str
    stderr: str
    output: str


@attrs.define(eq=False)
class OutputCapture:
    """Capped buffers for one stage's stdout and stderr.

    Args:
        limit: bytes kept per stream and in ``output``.
        on_overflow: called once, when the first stream crosses the cap.
        on_output: awaited with every kept chunk (live streaming for interactive jobs).
    """

    limit: int
    on_overflow: OnOverflow | None = None
    on_output: OnOutput | None = None
    stdout: bytearray = attrs.field(factory=bytearray)
    stderr: bytearray = attrs.field(factory=bytearray)
    output: bytearray = attrs.field(factory=bytearray)
    overflow: StreamName | None = None
    """The stream that first crossed its cap, if any."""

    def feed(self, stream: StreamName, data: bytes) -> tuple[bytes, bool]:
        """Keep what fits of ``data``; return the kept bytes and whether the cap was crossed."""
        buffer = self.stdout if stream == "stdout" else self.stderr
        room = self.limit - len(buffer)
        kept = data[: max(room, 0)]
        buffer += kept
        output_room = self.limit - len(self.output)
        if output_room > 0:
            self.output += kept[:output_room]
        crossed = len(data) > room
        if crossed and self.overflow is None:
            self.overflow = stream
            if self.on_overflow is not None:
                self.on_overflow(stream)
        return kept, crossed

    async def pump(self, stream: StreamName, pipe: trio.abc.ReceiveStream) -> None:
        """Read ``pipe`` until EOF or until its cap is crossed; close it in either case.

        Closing the read end on overflow makes further writes fail with EPIPE, so nothing more
        of that stream is read into memory.
        """
        async with pipe:
            while True:
                try:
                    data = await pipe.receive_some(READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                if not data:
                    return
                kept, crossed = self.feed(stream, bytes(data))
                if kept and self.on_output is not None:
                    await self.on_output(stream, kept)
                if crossed:
                    return

    def text(self) -> CapturedText:
        """Decode the kept bytes once, replacing invalid UTF-8."""
        return CapturedText(
            stdout=self.stdout.decode("utf-8", errors="replace"),
            stderr=self.stderr.decode("utf-8", errors="replace"),
            output=self.output.decode("utf-8", errors="replace"),
        )
