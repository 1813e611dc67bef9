"""A fake pistond for gateway tests: PROTOCOL.md's methods over real msgpack-RPC, no sandbox.

Validation is the daemon's own (:func:`pistond.validation.validate_execute`), so messages and
their order are the real ones. Programs are not run: the fake understands a few lines of
Python, enough for contract tests that also pass against the real daemon's python runtime:

- ``print("text")``, ``print("x" * N)``, ``print(input())``
- ``import sys; print("text", file=sys.stderr)``
- ``import sys; sys.stdout.write(sys.stdin.read())`` (echo; interactive: echo until EOF)
- ``import sys; print(" ".join(sys.argv[1:]))``
- ``exit(N)``, ``import os; os.kill(os.getpid(), 11)``, ``while True: pass``
- ``import time; time.sleep(S)`` (``execute`` answers after S seconds, as a real run would)

For the compiled runtime (``c``), a source holding ``syntax error`` fails to compile.
"""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING, Any

import attrs
import trio

from pistond.config import Limits
from pistond.errors import (
    InvalidParams,
    JobNotFound,
    PackageError,
    PackageNotFound,
    PistondError,
    RuntimeUnknown,
)
from pistond.models import StageResult, StageStatus
from pistond.semver import max_satisfying
from pistond.validation import validate_execute

if TYPE_CHECKING:
    from pistond.rpc.connection import Peer

PRINT = re.compile(r'^print\((["\'])(.*)\1\)$')
PRINT_TIMES = re.compile(r'^print\((["\'])(.)\1 \* (\d+)\)$')
STDERR = re.compile(r'^import sys; print\((["\'])(.*)\1, file=sys\.stderr\)$')
EXIT = re.compile(r"^exit\((\d+)\)$")
ECHO = "import sys; sys.stdout.write(sys.stdin.read())"
ARGS = 'import sys; print(" ".join(sys.argv[1:]))'
INPUT = "print(input())"
SEGV = "import os; os.kill(os.getpid(), 11)"
LOOP = "while True: pass"
SLEEP = re.compile(r"^import time; time\.sleep\((\d+(?:\.\d+)?)\)$")


@attrs.frozen
class FakeRuntime:
    """A runtime of the fake daemon."""

    language: str
    version: str
    aliases: tuple[str, ...] = ()
    runtime: str | None = None
    compiled: bool = False

    def to_wire(self) -> dict[str, Any]:
        """PROTOCOL.md's ``Runtime``."""
        wire: dict[str, Any] = {
            "language": self.language,
            "version": self.version,
            "aliases": list(self.aliases),
            "compiled": self.compiled,
        }
        if self.runtime is not None:
            wire["runtime"] = self.runtime
        return wire


RUNTIMES = (
    FakeRuntime("python", "3.12.0", ("py", "py3", "python3", "python3.12")),
    FakeRuntime("python", "3.10.0", ("py", "py3", "python3")),
    FakeRuntime("c", "10.2.0", ("gcc",), "gcc", compiled=True),
    FakeRuntime("c++", "10.2.0", ("cpp", "g++"), "gcc", compiled=True),
    FakeRuntime("file", "0.0.1", ("executable", "elf", "binary")),
)
LIMITS = Limits(run_memory_limit=256 * 1024 * 1024)
"""The fake's configured limits: Piston's defaults, plus a run memory limit (for D16)."""


@attrs.define
class FakePackage:
    """An index entry of the fake package manager."""

    language: str
    version: str
    installed: bool


def _stage(
    stdout: str = "",
    stderr: str = "",
    *,
    code: int | None = 0,
    signal: str | None = None,
    status: StageStatus | None = None,
    message: str | None = None,
) -> StageResult:
    return StageResult(
        stdout=stdout,
        stderr=stderr,
        output=stdout + stderr,
        code=code,
        signal=signal,
        status=status,
        message=message,
        cpu_time=4,
        wall_time=9,
        memory=1_234_567,
    )


def _capped(stage: StageResult, cap: int) -> StageResult:
    if len(stage.stdout.encode()) > cap:
        kept = stage.stdout.encode()[:cap].decode(errors="replace")
        return attrs.evolve(
            stage,
            stdout=kept,
            output=kept,
            code=None,
            signal="SIGKILL",
            status=StageStatus.STDOUT_LIMIT,
            message="stdout length exceeded",
        )
    return stage


def interpret(source: str, stdin: str, args: tuple[str, ...]) -> StageResult:
    """What the fake's Python subset prints for ``source``."""
    out: list[str] = []
    err: list[str] = []
    lines = iter(stdin.splitlines(keepends=True))
    for line in (line.strip() for line in source.splitlines()):
        if match := PRINT_TIMES.match(line):
            out.append(match.group(2) * int(match.group(3)) + "\n")
        elif match := PRINT.match(line):
            out.append(match.group(2) + "\n")
        elif match := STDERR.match(line):
            err.append(match.group(2) + "\n")
        elif line == INPUT:
            out.append(next(lines, "").rstrip("\n") + "\n")
        elif line == ECHO:
            out.append(stdin)
        elif line == ARGS:
            out.append(" ".join(args) + "\n")
        elif match := EXIT.match(line):
            code = int(match.group(1))
            if code:
                return _stage(
                    "".join(out),
                    "".join(err),
                    code=code,
                    status=StageStatus.RUNTIME_ERROR,
                    message=f"Exited with error status {code}",
                )
            break
        elif line == SEGV:
            return _stage(
                "".join(out),
                "".join(err),
                code=None,
                signal="SIGSEGV",
                status=StageStatus.SIGNALED,
                message="Caught fatal signal 11",
            )
        elif line == LOOP:
            return _stage(
                "".join(out),
                "".join(err),
                code=None,
                signal="SIGKILL",
                status=StageStatus.TIMEOUT,
                message="Time limit exceeded (wall clock)",
            )
    return _stage("".join(out), "".join(err))


def _stage_wire(stage: StageResult) -> dict[str, Any]:
    return {
        "stdout": stage.stdout,
        "stderr": stage.stderr,
        "output": stage.output,
        "code": stage.code,
        "signal": stage.signal,
        "status": None if stage.status is None else stage.status.value,
        "message": stage.message,
        "cpu_time": stage.cpu_time,
        "wall_time": stage.wall_time,
        "memory": stage.memory,
    }


@attrs.define(eq=False)
class FakeDaemon:
    """The dispatcher: records every call; ``errors`` makes a method answer with an error."""

    runtimes: tuple[FakeRuntime, ...] = RUNTIMES
    packages: list[FakePackage] = attrs.field(
        factory=lambda: [
            FakePackage("python", "3.12.0", True),
            FakePackage("python", "3.10.0", False),
            FakePackage("gcc", "10.2.0", True),
        ]
    )
    calls: list[tuple[str, dict[str, Any]]] = attrs.field(factory=list)
    errors: dict[str, PistondError] = attrs.field(factory=dict)
    signals: list[str] = attrs.field(factory=list)
    ended: list[str] = attrs.field(factory=list)
    """Interactive jobs that ended (completed or cancelled with their connection)."""
    _ids: itertools.count[int] = attrs.field(factory=itertools.count)

    def reset(self) -> None:
        """Forget calls and injected errors."""
        self.calls.clear()
        self.errors.clear()
        self.signals.clear()
        self.ended.clear()

    def last(self, method: str) -> dict[str, Any]:
        """The params of the last call of ``method``."""
        return next(params for name, params in reversed(self.calls) if name == method)

    async def __call__(self, method: str, params: dict[str, Any], peer: Peer) -> Any:
        """Answer one request."""
        self.calls.append((method, params))
        if method in self.errors:
            raise self.errors[method]
        if method == "runtimes":
            return [runtime.to_wire() for runtime in self.runtimes]
        if method == "status":
            return self.status()
        if method == "execute":
            result = self.execute(params)
            await trio.sleep(_sleep_seconds(params))
            return result
        if method == "packages":
            return [
                {"language": p.language, "version": p.version, "installed": p.installed,
                 "source": "index"}
                for p in self.packages
            ]  # fmt: skip
        if method in ("packages.install", "packages.uninstall"):
            return self.package(method, params)
        if method == "job.start":
            return self.start(params, peer)
        if method in ("job.write", "job.close_stdin", "job.signal", "job.kill"):
            return await self.job_call(method, params, peer)
        raise InvalidParams(f"fake daemon has no method {method}")

    def status(self) -> dict[str, Any]:
        """``status``: the fake's counters, a sandbox without cgroups, its limits."""
        return {
            "version": "0.0.0-fake",
            "uptime": 1.0,
            "jobs": {"running": 0, "queued": 0, "completed": len(self.calls), "failed": 0},
            "sandbox": {"cgroup": "none", "seccomp": False, "network": False},
            "limits": attrs.asdict(LIMITS),
        }

    def resolve(self, language: str, version: str) -> FakeRuntime:
        """Runtime resolution as the daemon does it: name or alias, highest matching version."""
        named = [r for r in self.runtimes if language == r.language or language in r.aliases]
        best = max_satisfying([r.version for r in named], version)
        for runtime in named:
            if runtime.version == best:
                return runtime
        raise RuntimeUnknown(f"{language}-{version} runtime is unknown")

    def execute(self, params: dict[str, Any]) -> dict[str, Any]:
        """``execute`` with the fake's program semantics."""
        request, runtime, caps = validate_execute(
            params, resolve=self.resolve, runtime_limits=lambda _runtime: LIMITS
        )
        cap = request.limits.get("output_max_size", caps.output_max_size)
        main = next(f for f in request.files if f.name == request.main)
        source = main.content.decode(errors="replace")
        stdin = request.stdin.decode(errors="replace")
        result: dict[str, Any] = {"language": runtime.language, "version": runtime.version}
        if runtime.compiled:
            if "syntax error" in source:
                failed = _stage(
                    stderr="error: syntax error\n",
                    code=1,
                    status=StageStatus.RUNTIME_ERROR,
                    message="Exited with error status 1",
                )
                return {**result, "compile": _stage_wire(failed), "run": None}
            result["compile"] = _stage_wire(_stage())
        if runtime.language == "file":
            run = _stage(f"ran {main.name} ({len(main.content)} bytes)\n")
        else:
            run = interpret(source, stdin, request.args)
        result["run"] = _stage_wire(_capped(run, cap))
        return result

    def package(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """``packages.install`` and ``packages.uninstall`` against the fake index."""
        language, version = params["language"], params["version"]
        named = [p for p in self.packages if p.language == language]
        best = max_satisfying([p.version for p in named], version)
        found = [p for p in named if p.version == best]
        if not found:
            raise PackageNotFound(f"no package {language} matches {version}")
        package = found[0]
        if method == "packages.install":
            if package.installed:
                raise PackageError("Already installed")
            package.installed = True
        else:
            if not package.installed:
                raise PackageError(f"{language}-{package.version} is not installed")
            package.installed = False
        return {"language": language, "version": package.version}

    def start(self, params: dict[str, Any], peer: Peer) -> dict[str, Any]:
        """``job.start``: validate, then run the interactive program in the peer's nursery."""
        request, runtime, caps = validate_execute(
            params, resolve=self.resolve, runtime_limits=lambda _runtime: LIMITS
        )
        job = f"job-{next(self._ids)}"
        send, receive = trio.open_memory_channel[bytes | str | None](64)
        jobs: dict[str, Any] = peer.state.setdefault("jobs", {})
        jobs[job] = send
        if request.stdin:
            send.send_nowait(request.stdin)
        main = next(f for f in request.files if f.name == request.main)
        peer.nursery.start_soon(
            self._interactive, peer, job, runtime, main.content.decode(), receive, caps
        )
        return {"job": job, "language": runtime.language, "version": runtime.version}

    async def job_call(self, method: str, params: dict[str, Any], peer: Peer) -> dict[str, Any]:
        """``job.write``, ``job.close_stdin``, ``job.signal``, ``job.kill``."""
        jobs: dict[str, Any] = peer.state.setdefault("jobs", {})
        send = jobs.get(params.get("job", ""))
        if send is None:
            raise JobNotFound("no such job on this connection")
        if method == "job.write":
            await send.send(params["data"])
        elif method == "job.close_stdin":
            await send.send(None)
        elif method == "job.signal":
            self.signals.append(params["signal"])
            await send.send(str(params["signal"]))
        else:
            await send.send("SIGKILL")
        return {}

    async def _interactive(
        self,
        peer: Peer,
        job: str,
        runtime: FakeRuntime,
        source: str,
        stdin: trio.MemoryReceiveChannel[bytes | str | None],
        caps: Limits,
    ) -> None:
        """Interactive semantics: prints, then echo of stdin until EOF or a signal frame."""
        try:
            if runtime.compiled:
                await peer.notify("job.stage", {"job": job, "stage": "compile"})
                await peer.notify("job.exit", {"job": job, "stage": "compile", **_exit(0, None)})
            await peer.notify("job.stage", {"job": job, "stage": "run"})
            exit_fields = await self._interactive_run(peer, job, source, stdin, caps)
            await peer.notify("job.exit", {"job": job, "stage": "run", **exit_fields})
            await peer.notify("job.done", {"job": job})
        finally:
            peer.state.get("jobs", {}).pop(job, None)
            self.ended.append(job)

    async def _interactive_run(
        self,
        peer: Peer,
        job: str,
        source: str,
        stdin: trio.MemoryReceiveChannel[bytes | str | None],
        caps: Limits,
    ) -> dict[str, Any]:
        sent = 0
        for line in (line.strip() for line in source.splitlines()):
            printed = None
            if match := PRINT_TIMES.match(line):
                printed = match.group(2) * int(match.group(3)) + "\n"
            elif match := PRINT.match(line):
                printed = match.group(2) + "\n"
            if printed is not None:
                data = printed.encode()
                room = caps.output_max_size - sent
                for start in range(0, min(len(data), room), 100):
                    chunk = data[start : min(start + 100, room)]
                    await peer.notify("job.output", {"job": job, "stream": "stdout", "data": chunk})
                sent += len(data)
                if sent > caps.output_max_size:
                    return {**_exit(None, "SIGKILL"), "status": "OL"}
            elif line == ECHO:
                async for data in stdin:
                    if data is None:
                        break
                    if isinstance(data, str):
                        return _exit(None, data)
                    await peer.notify("job.output", {"job": job, "stream": "stdout", "data": data})
        return _exit(0, None)


def _sleep_seconds(params: dict[str, Any]) -> float:
    """How long an ``execute`` of ``time.sleep(S)`` takes (0 for any other program)."""
    files = params.get("files") or [{}]
    content = files[0].get("content")
    match = SLEEP.match(content) if isinstance(content, str) else None
    return float(match[1]) if match else 0.0


def _exit(code: int | None, signal: str | None) -> dict[str, Any]:
    return {
        "code": code,
        "signal": signal,
        "status": None if code == 0 else "SG",
        "message": None,
        "cpu_time": 1,
        "wall_time": 2,
        "memory": 1000,
    }
