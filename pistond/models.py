"""Typed records exchanged between the RPC surface, the job manager and the sandbox."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import attrs


class StageStatus(StrEnum):
    """Why a stage ended, when it did not exit 0 (PROTOCOL.md ``Stage.status``)."""

    RUNTIME_ERROR = "RE"
    SIGNALED = "SG"
    TIMEOUT = "TO"
    MEMORY_LIMIT = "ML"
    STDOUT_LIMIT = "OL"
    STDERR_LIMIT = "EL"
    INTERNAL_ERROR = "XX"


class StageName(StrEnum):
    """The two stages of a job."""

    COMPILE = "compile"
    RUN = "run"


@attrs.frozen
class StageResult:
    """What one sandboxed stage did, per PROTOCOL.md ``Stage``."""

    stdout: str
    stderr: str
    output: str
    """stdout and stderr interleaved in arrival order, under the same cap."""
    code: int | None
    """Exit code; None when the program was killed by a signal."""
    signal: str | None
    """Terminating signal name, e.g. ``SIGKILL``."""
    status: StageStatus | None
    """None when the program exited 0."""
    message: str | None
    cpu_time: int
    """CPU time of every process of the stage, in milliseconds."""
    wall_time: int
    """Wall-clock time of the stage, in milliseconds."""
    memory: int
    """Peak memory of the stage's cgroup, in bytes."""


@attrs.frozen
class JobResult:
    """The result of ``execute``: one record per stage that ran."""

    language: str
    version: str
    compile: StageResult | None
    run: StageResult | None


@attrs.frozen
class RuntimeInfo:
    """One installed runtime as ``runtimes`` lists it."""

    language: str
    version: str
    aliases: tuple[str, ...]
    runtime: str | None
    """The package name, for packages that provide several languages."""
    compiled: bool


@attrs.frozen
class SourceFile:
    """A submitted file, already decoded to bytes."""

    name: str
    """Relative path inside the box's submission directory."""
    content: bytes
    is_text: bool
    """True when the client sent it utf8-encoded: only text files may be the main file."""


@attrs.frozen
class JobCounts:
    """Job counters of ``status``."""

    running: int
    queued: int
    completed: int
    failed: int


@attrs.frozen
class SandboxInfo:
    """Sandbox capabilities of this host, as ``status`` reports them."""

    cgroup: str
    """One of ``v2``, ``hybrid``, ``v1``, ``none``."""
    seccomp: bool
    network: bool


@attrs.frozen
class ExecuteRequest:
    """A validated ``execute`` / ``job.start`` request."""

    language: str
    version: str
    files: tuple[SourceFile, ...]
    main: str
    """Name of the entry file: ``main`` if given, else the first text file."""
    stdin: bytes
    args: tuple[str, ...]
    limits: dict[str, int]
    """Limit keys the request lowered (output_max_size too), checked against the caps."""


@attrs.frozen
class PingResult:
    """The result of ``ping``."""

    version: str
    """The daemon's version."""
    protocol: int
    """The RPC protocol version (PROTOCOL.md), 1."""


@attrs.frozen
class StatusResult:
    """The result of ``status``: daemon health."""

    version: str
    uptime: float
    """Seconds since the daemon started."""
    jobs: JobCounts
    sandbox: SandboxInfo
    limits: dict[str, int]
    """The configured default limits, by Piston's names."""


@attrs.frozen
class PackageInfo:
    """One package as ``packages`` lists it."""

    language: str
    """The package name (``gcc``, ``node``, ...)."""
    version: str
    installed: bool
    source: str
    """``local`` (a recipe in packages/) or ``index`` (the configured package index)."""


@attrs.frozen
class PackageRef:
    """The package ``packages.install`` / ``packages.uninstall`` acted on."""

    language: str
    version: str


@attrs.frozen
class JobStarted:
    """The result of ``job.start``."""

    job: str
    language: str
    version: str


@attrs.frozen
class JobStage:
    """``job.stage``: a stage of an interactive job started."""

    job: str
    stage: StageName


@attrs.frozen
class JobOutput:
    """``job.output``: bytes the program wrote to one of its streams."""

    job: str
    stream: str
    """``stdout`` or ``stderr``."""
    data: bytes


@attrs.frozen
class JobExit:
    """``job.exit``: a stage ended; the fields of ``Stage`` without the captured text."""

    job: str
    stage: StageName
    code: int | None
    signal: str | None
    status: StageStatus | None
    message: str | None
    cpu_time: int
    wall_time: int
    memory: int


@attrs.frozen
class JobDone:
    """``job.done``: the job is over; no more events follow."""

    job: str
    error: dict[str, Any] | None = None
    """PROTOCOL.md's error map when the job failed to run (or was killed), else None."""


JobEvent = JobStage | JobOutput | JobExit | JobDone
"""What an interactive job reports, in order: stage, output..., exit, per stage; then done."""
