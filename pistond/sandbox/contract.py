"""The seam between the job manager and the sandbox: what a sandbox, a box and a stage offer.

:mod:`pistond.jobs` codes against these Protocols only. The real sandbox
(:class:`pistond.sandbox.service.Sandbox`, its :class:`~pistond.sandbox.service.Box` and
:class:`~pistond.sandbox.supervise.SupervisedStage`) and the unprivileged double of
:mod:`pistond.testing.fake_sandbox` both satisfy them: mypy checks it, and
``tests/test_sandbox_contract.py`` runs the same behaviour tests on both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence
    from contextlib import AbstractAsyncContextManager

    from pistond.models import SandboxInfo, SourceFile, StageResult
    from pistond.sandbox.hostfs import BoxTree
    from pistond.sandbox.spec import StageSpec

StreamName = Literal["stdout", "stderr"]


class Admission(Protocol):
    """A stage's place among the stages allowed to run at once (``capacity.StageTicket``)."""

    def release(self) -> None:
        """Give the place back (idempotent): the stage ended, or it has gone idle."""


class StageLike(Protocol):
    """A running stage (``pistond.sandbox.service.Stage``)."""

    async def write(self, data: bytes) -> None:
        """Write to the program's stdin; dropped once stdin is closed."""

    async def close_stdin(self) -> None:
        """Close the program's stdin; idempotent."""

    def signal(self, signum: int) -> None:
        """Deliver ``signum`` to the program's process group."""

    def kill(self) -> None:
        """Kill the stage now."""

    def output(self) -> AsyncIterator[tuple[StreamName, bytes]]:
        """Kept output chunks as they arrive, until the end (interactive stages)."""

    async def wait(self) -> StageResult:
        """Wait for the stage's result."""


class BoxLike(Protocol):
    """A job's box (``pistond.sandbox.service.Box``)."""

    @property
    def slot(self) -> int:
        """The box slot."""

    @property
    def uid(self) -> int:
        """The uid (and gid) the box's stages run as."""

    def write_files(self, files: Sequence[SourceFile]) -> None:
        """Write the submitted files into the box."""

    def read_submission(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        skip: Callable[[str, bool], bool] | None = None,
    ) -> BoxTree:
        """What the job's directory holds now (between stages), bounded."""

    def write_submission(self, tree: BoxTree) -> None:
        """Fill the job's empty directory with ``tree``, instead of the submitted files."""

    def open_stage(
        self,
        spec: StageSpec,
        *,
        stage: str = "stage",
        live: bool = True,
        admission: Admission | None = None,
    ) -> AbstractAsyncContextManager[StageLike]:
        """Start ``spec``; the stage is killed if still running when the block ends."""

    async def run_stage(
        self,
        spec: StageSpec,
        stdin: bytes = b"",
        *,
        stage: str = "stage",
        admission: Admission | None = None,
    ) -> StageResult:
        """Run ``spec`` with ``stdin`` as its whole input; its result."""


class SandboxLike(Protocol):
    """The daemon's sandbox (``pistond.sandbox.service.Sandbox``)."""

    @property
    def info(self) -> SandboxInfo:
        """What this host's sandboxes can do."""

    @property
    def quarantined(self) -> set[int]:
        """Box slots retired because a stage's processes outlived its cleanup."""

    def open_box(self, slot: int) -> AbstractAsyncContextManager[BoxLike]:
        """Mount box ``slot`` for a job; unmount it when the block ends."""
