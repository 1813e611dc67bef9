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


class Verdict(StrEnum):
    """How a test's output compares with its ``expected_output`` (PROTOCOL ``Test.verdict``)."""

    ACCEPTED = "accepted"
    WRONG_ANSWER = "wrong_answer"


class Comparison(StrEnum):
    """How a test's stdout is compared with its ``expected_output``."""

    EXACT = "exact"
    """Byte for byte (after the stdout capture's UTF-8 decoding)."""
    TRAILING_WHITESPACE = "trailing_whitespace"
    """Whitespace at the end of every line, and empty lines at the end, are ignored."""


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
    cached: bool = False
    """True when this compile stage was not run for this request: its result and the files it
    left come from the compile cache (the figures are those of the compile that made them)."""


@attrs.frozen
class TestResult:
    """One test of a request with ``tests``: its run stage and, when expected, its verdict."""

    __test__ = False  # not a pytest test class

    name: str | None
    """The test's ``name`` as given."""
    run: StageResult
    verdict: Verdict | None
    """Set when the test has ``expected_output`` and its run exited 0; otherwise None (a run
    that did not exit 0 is judged by its ``status``)."""


@attrs.frozen
class JobResult:
    """The result of ``execute``: one record per stage that ran."""

    language: str
    version: str
    compile: StageResult | None
    run: StageResult | None
    """None when the compile stage failed, and for requests with ``tests``."""
    tests: tuple[TestResult, ...] | None = None
    """One result per test, in order, for requests with ``tests`` whose compile succeeded."""


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
class TestCase:
    """One test of a request: the program is run once per test, after one compile."""

    __test__ = False  # not a pytest test class

    name: str | None
    stdin: bytes
    """The run's stdin (the request's ``stdin`` when the test gives none)."""
    args: tuple[str, ...]
    """The run's arguments (the request's ``args`` when the test gives none)."""
    expected_output: str | None
    """What stdout should be; None: no verdict."""


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
    compile_cache: bool = True
    """False: this request neither uses nor fills the compile cache."""
    tests: tuple[TestCase, ...] | None = None
    """Run once per test (each in a fresh sandbox and box) instead of once."""
    compare: Comparison = Comparison.EXACT
    """How the tests' stdout is compared with their ``expected_output``."""


@attrs.frozen
class PingResult:
    """The result of ``ping``."""

    version: str
    """The daemon's version."""
    protocol: int
    """The RPC protocol version (PROTOCOL.md), 1."""


@attrs.frozen
class CompileCacheStats:
    """The compile cache's counters in ``status`` (since the daemon started, but ``bytes`` and
    ``entries``, which describe the cache as it is)."""

    enabled: bool
    """False when ``PISTON_COMPILE_CACHE_SIZE`` is 0."""
    max_bytes: int
    """``PISTON_COMPILE_CACHE_SIZE``."""
    bytes: int
    """Bytes the entries take on disk."""
    entries: int
    hits: int
    """Compile stages served from the cache (also by waiting for an identical compile)."""
    misses: int
    """Compile stages that ran for a request the cache could have served."""
    stores: int
    """Entries written."""
    evictions: int
    """Entries removed to keep the size bound (not counting uninstalls and corrupt ones)."""
    corrupt: int
    """Entries that failed their hash check and were dropped (each also counts as a miss)."""


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
    compile_cache: CompileCacheStats | None = None
    """None from a daemon that has no compile cache."""


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
    cached: bool = False
    """The compile stage came from the compile cache (see ``StageResult.cached``)."""


@attrs.frozen
class JobDone:
    """``job.done``: the job is over; no more events follow."""

    job: str
    error: dict[str, Any] | None = None
    """PROTOCOL.md's error map when the job failed to run (or was killed), else None."""


JobEvent = JobStage | JobOutput | JobExit | JobDone
"""What an interactive job reports, in order: stage, output..., exit, per stage; then done."""
