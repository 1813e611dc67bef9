"""``piston``: the command-line client of pistond, with Piston's CLI names.

Human output by default, ``--json`` for machines. ``piston run [LANGUAGE] FILE [ARGS...]`` exits
with the program's exit code (128 + the signal number when it was killed by a signal); without
a language it infers one from the file's extension (:mod:`pistond.cli.languages`). Errors name
what was typed (:mod:`pistond.cli.explain`); package operations show their progress
(:mod:`pistond.cli.progress`).
"""

from __future__ import annotations

import argparse
import base64
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

import attrs
import trio

from pistond._version import __version__
from pistond.cli import explain, ppman
from pistond.cli.errors import CliError, find_error
from pistond.cli.languages import USAGE, RunTarget, infer_language, split_run_words
from pistond.cli.output import emit_json
from pistond.client import JobDone, JobExit, JobOutput, JobStage, PistonClient, open_client
from pistond.config import DEFAULT_SOCKET
from pistond.convert import converter
from pistond.errors import InvalidParams, PistondError, RuntimeUnknown
from pistond.models import JobResult, StageResult
from pistond.semver import max_satisfying

if TYPE_CHECKING:
    from collections.abc import Sequence

EXIT_ERROR: Final = 1
FORWARDED_SIGNALS: Final = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)
LIMIT_FLAGS: Final = (
    ("run_timeout", ("-r", "--rt", "--run-timeout", "--run_timeout"), "run wall time, ms"),
    (
        "compile_timeout",
        ("-c", "--ct", "--compile-timeout", "--compile_timeout"),
        "compile wall time, ms",
    ),
    ("run_cpu_time", ("--run-cpu-time", "--run_cpu_time"), "run CPU time, ms"),
    ("compile_cpu_time", ("--compile-cpu-time", "--compile_cpu_time"), "compile CPU time, ms"),
    ("run_memory_limit", ("--run-memory-limit", "--run_memory_limit"), "run memory, bytes"),
    (
        "compile_memory_limit",
        ("--compile-memory-limit", "--compile_memory_limit"),
        "compile memory, bytes",
    ),
    ("output_max_size", ("--output-max-size", "--output_max_size"), "bytes kept per stream"),
)


def build_parser() -> argparse.ArgumentParser:
    """The ``piston`` argument parser."""
    # --json is accepted before or after the subcommand; the subcommands' copy must not
    # reset what was given before it, hence SUPPRESS there.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    common.add_argument("--socket", default=argparse.SUPPRESS, help="daemon socket")
    parser = argparse.ArgumentParser(
        prog="piston",
        description="Client of the pistond code execution daemon.",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument(
        "--socket",
        default=os.environ.get("PISTON_SOCKET", DEFAULT_SOCKET),
        help=f"daemon socket (default: $PISTON_SOCKET or {DEFAULT_SOCKET})",
    )
    parser.add_argument("--version", action="version", version=f"piston {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("ping", parents=[common], help="check that the daemon answers")
    commands.add_parser("status", parents=[common], help="daemon health, jobs and limits")
    commands.add_parser("runtimes", parents=[common], help="list installed runtimes")

    run = commands.add_parser(
        "run",
        aliases=["execute"],
        parents=[common],
        help="run a program",
        usage=f"{USAGE.replace('piston run', 'piston run [options]')}",
        description=(
            "Run FILE as LANGUAGE (a language name or alias). Without LANGUAGE, the language "
            "is the installed runtime whose name or alias is FILE's extension (hello.py: "
            "python); the choice is printed on stderr. Options go before LANGUAGE; "
            "everything after FILE is passed to the program."
        ),
    )
    run.add_argument(
        "words",
        nargs=argparse.REMAINDER,
        metavar="[LANGUAGE] FILE [ARGS...]",
        help="language (optional), the program's main file, and its arguments",
    )
    run.add_argument(
        "-l",
        "--language-version",
        "--language_version",
        default="*",
        dest="language_version",
        help="version range (default: newest)",
    )
    run.add_argument(
        "-i",
        "--stdin",
        action="store_true",
        help="send this command's standard input to the program",
    )
    run.add_argument(
        "-f",
        "--files",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="an extra file, sent beside the main file (repeat for more)",
    )
    run.add_argument("--main", help="name of the entry file (default: FILE)")
    run.add_argument(
        "-t",
        "--interactive",
        action="store_true",
        help="stream stdin and output live (interactive job)",
    )
    run.add_argument(
        "-s", "--status", action="store_true", help="with -t: print stage and exit lines to stderr"
    )
    for dest, flags, text in LIMIT_FLAGS:
        run.add_argument(*flags, dest=dest, type=int, metavar="N", help=text)

    ppman = commands.add_parser("ppman", aliases=["pkg"], parents=[common], help="package manager")
    actions = ppman.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", aliases=["l"], parents=[common], help="list packages")
    install = actions.add_parser(
        "install", aliases=["i"], parents=[common], help="install packages (name[=version-range])"
    )
    install.add_argument("packages", nargs="+", metavar="PACKAGE")
    uninstall = actions.add_parser(
        "uninstall",
        aliases=["u"],
        parents=[common],
        help="uninstall packages (name[=version-range])",
    )
    uninstall.add_argument("packages", nargs="+", metavar="PACKAGE")
    spec = actions.add_parser(
        "spec", aliases=["s"], parents=[common], help="make the installed set match a spec file"
    )
    spec.add_argument("specfile", type=Path)
    pack = actions.add_parser(
        "pack",
        parents=[common],
        help="tar an installed package for an index (runs locally, reads the data directory)",
    )
    pack.add_argument("package", help="package name, e.g. python")
    pack.add_argument("package_version", metavar="version", help="installed version, e.g. 3.13.5")
    pack.add_argument(
        "-o", "--output", type=Path, default=Path(), help="directory for the tarball (default: .)"
    )
    pack.add_argument(
        "--base-url",
        default=None,
        help="URL the tarball will be served under, for the index line (default: file:// of -o)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``piston`` console script."""
    args = build_parser().parse_args(argv)
    try:
        if args.command in ("ppman", "pkg") and args.action == "pack":
            return ppman.pack_command(args)
        try:
            return trio.run(_dispatch, args)
        except BaseExceptionGroup as group:
            raise _reportable(group) from None
    except BrokenPipeError:
        # The reader went away (``piston runtimes | head``): nothing left to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except CliError as exc:
        print(f"piston: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except PistondError as exc:
        print(f"piston: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        print(
            f"piston: cannot reach the daemon at {args.socket}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def _reportable(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to report from a group raised out of trio's nurseries.

    The first CLI, daemon or OS error wins; anything else (a bug) is re-raised as it is.
    """
    subgroup = group.subgroup(
        lambda exc: isinstance(exc, CliError | PistondError | OSError | KeyboardInterrupt)
    )
    if subgroup is None:
        return group
    wanted: BaseException = subgroup
    while isinstance(wanted, BaseExceptionGroup):
        wanted = wanted.exceptions[0]
    return wanted


async def _dispatch(args: argparse.Namespace) -> int:
    async with open_client(args.socket) as client:
        command = args.command
        if command == "ping":
            return _print_ping(await client.ping(), args.json)
        if command == "status":
            return _print_status(await client.status(), args.json)
        if command == "runtimes":
            return _print_runtimes(await client.runtimes(), args.json)
        if command in ("run", "execute"):
            return await _run_command(client, args)
        return await ppman.ppman_command(client, args)


def _print_ping(result: Any, as_json: bool) -> int:
    if as_json:
        emit_json(result)
    else:
        print(f"pistond {result.version} (protocol {result.protocol})")
    return 0


def _print_status(result: Any, as_json: bool) -> int:
    if as_json:
        emit_json(result)
        return 0
    jobs, sandbox = result.jobs, result.sandbox
    print(f"pistond {result.version}, up {result.uptime:.0f} s")
    print(
        f"jobs: {jobs.running} running, {jobs.queued} queued, "
        f"{jobs.completed} completed, {jobs.failed} failed"
    )
    print(
        f"sandbox: cgroups {sandbox.cgroup}, seccomp {'on' if sandbox.seccomp else 'off'}, "
        f"network {'on' if sandbox.network else 'off'}"
    )
    cache = result.compile_cache
    if cache is not None and cache.enabled:
        print(
            f"compile cache: {cache.entries} entries, {cache.bytes} of {cache.max_bytes} bytes; "
            f"{cache.hits} hits, {cache.misses} misses, {cache.evictions} evicted"
        )
    elif cache is not None:
        print("compile cache: off")
    for key, value in sorted(result.limits.items()):
        print(f"  {key} = {value}")
    return 0


def _print_runtimes(runtimes: list[Any], as_json: bool) -> int:
    if as_json:
        emit_json(runtimes)
        return 0
    for runtime in runtimes:
        aliases = ", ".join(runtime.aliases)
        package = f" [{runtime.runtime}]" if runtime.runtime else ""
        compiled = " (compiled)" if runtime.compiled else ""
        print(
            f"{runtime.language}-{runtime.version}{package}{compiled}"
            + (f"  aliases: {aliases}" if aliases else "")
        )
    return 0


NO_TEXT_FILE: Final = "files must include at least one utf8 encoded file"
"""The daemon's (Piston's) answer to a request without a text file."""


def read_file(path: Path) -> dict[str, Any]:
    """A PROTOCOL.md ``File`` of ``path``: UTF-8 text as it is, anything else as base64.

    Raises:
        CliError: the file cannot be read; the message names it.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return {"name": path.name, "content": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"name": path.name, "content": base64.b64encode(data).decode(), "encoding": "base64"}


async def _run_target(client: PistonClient, args: argparse.Namespace) -> RunTarget:
    """What to run; an inferred language is announced on stderr."""
    target = split_run_words(args.words)
    if target.language is not None:
        return target
    if not target.file.is_file():
        raise CliError(f"cannot read {target.file}: no such file ({USAGE})")
    runtimes = await client.runtimes()
    inferred = infer_language(target.file, runtimes)
    versions = [r.version for r in runtimes if r.language == inferred.language]
    version = max_satisfying(versions, args.language_version)
    chosen = f"{inferred.language}-{version}" if version else inferred.language
    print(
        f"piston: running {target.file} as {chosen} (from its .{inferred.extension} extension)",
        file=sys.stderr,
    )
    return attrs.evolve(target, language=inferred.language)


async def _run_command(client: PistonClient, args: argparse.Namespace) -> int:
    """``piston run``: the daemon's refusals restated with what was typed."""
    target = await _run_target(client, args)
    assert target.language is not None
    try:
        if args.interactive:
            return await _run_interactive(client, args, target)
        return await _run(client, args, target)
    except (PistondError, BaseExceptionGroup) as exc:
        if find_error(exc, RuntimeUnknown):
            runtimes = await client.runtimes()
            message = explain.unknown_runtime(target.language, args.language_version, runtimes)
            raise CliError(message) from None
        refused = find_error(exc, InvalidParams)
        if refused is not None and refused.message == NO_TEXT_FILE:
            raise CliError(explain.no_text_file([target.file, *args.files])) from None
        raise


def _limits(args: argparse.Namespace) -> dict[str, int]:
    return {
        dest: getattr(args, dest) for dest, _, _ in LIMIT_FLAGS if getattr(args, dest) is not None
    }


def _execute_params(
    args: argparse.Namespace, target: RunTarget, stdin: bytes | None
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "language": target.language,
        "version": args.language_version,
        "files": [read_file(path) for path in [target.file, *args.files]],
        "args": list(target.args),
        **_limits(args),
    }
    params["main"] = args.main or target.file.name
    if stdin is not None:
        params["stdin"] = stdin
    return params


async def _run(client: PistonClient, args: argparse.Namespace, target: RunTarget) -> int:
    stdin = await trio.to_thread.run_sync(sys.stdin.buffer.read) if args.stdin else None
    result = await client.call("execute", _execute_params(args, target, stdin))
    job: JobResult = converter.structure(result, JobResult)
    if args.json:
        emit_json(job)
    else:
        _print_job(job, sys.stdout)
    return exit_code(job)


def exit_code(job: JobResult) -> int:
    """The exit status ``piston run`` returns for a job."""
    stage = job.run or job.compile
    if stage is None:
        return EXIT_ERROR
    if stage.code is not None:
        return stage.code
    if stage.signal:
        try:
            return 128 + signal.Signals[stage.signal].value
        except KeyError:
            return EXIT_ERROR
    return EXIT_ERROR


def _print_stage(title: str, stage: StageResult, out: TextIO) -> None:
    out.write(f"== {title} ==\n")
    if stage.stdout:
        out.write("STDOUT\n" + _ensure_newline(stage.stdout))
    if stage.stderr:
        out.write("STDERR\n" + _ensure_newline(stage.stderr))
    if stage.code is not None:
        out.write(f"Exit Code: {stage.code}\n")
    if stage.signal:
        out.write(f"Signal: {stage.signal}\n")
    if stage.status is not None:
        out.write(f"Status: {stage.status.value} ({stage.message})\n")
    out.write(
        f"Time: {stage.wall_time} ms wall, {stage.cpu_time} ms CPU; memory {stage.memory} bytes\n"
    )


def _ensure_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def _print_job(job: JobResult, out: TextIO) -> None:
    if job.compile is not None:
        _print_stage("Compile (cached)" if job.compile.cached else "Compile", job.compile, out)
    if job.run is not None:
        _print_stage("Run", job.run, out)


async def _run_interactive(
    client: PistonClient, args: argparse.Namespace, target: RunTarget
) -> int:
    params = _execute_params(args, target, None)
    code = EXIT_ERROR
    async with client.start_job(**params) as job, trio.open_nursery() as nursery:
        nursery.start_soon(_forward_stdin, job)
        nursery.start_soon(_forward_signals, job)
        async for event in job.events():
            if isinstance(event, JobOutput):
                stream = sys.stdout if event.stream == "stdout" else sys.stderr
                stream.buffer.write(event.data)
                stream.flush()
            elif isinstance(event, JobStage) and args.status:
                print(f"== {event.stage} ==", file=sys.stderr)
            elif isinstance(event, JobExit):
                if args.status:
                    print(
                        f"== {event.stage} exited: code {event.code}, signal {event.signal}, "
                        f"status {event.status} ==",
                        file=sys.stderr,
                    )
                code = (
                    event.code
                    if event.code is not None
                    else (128 + signal.Signals[event.signal].value if event.signal else EXIT_ERROR)
                )
            elif isinstance(event, JobDone):
                if event.error:
                    raise CliError(f"job failed: {event.error.get('message')}")
                break
        nursery.cancel_scope.cancel()
    return code


async def _forward_stdin(job: Any) -> None:
    """Copy this command's stdin to the job, then close the job's stdin at EOF.

    Reads through trio (no thread left blocked in read() when the job ends first). The
    descriptor is shared with the shell, so its blocking mode is restored afterwards.
    """
    fd = sys.stdin.fileno()
    was_blocking = os.get_blocking(fd)
    stream = trio.lowlevel.FdStream(os.dup(fd))
    try:
        while chunk := await stream.receive_some(65536):
            await job.write(chunk)
        await job.close_stdin()
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()
        os.set_blocking(fd, was_blocking)


async def _forward_signals(job: Any) -> None:
    with trio.open_signal_receiver(*FORWARDED_SIGNALS) as received:
        async for signum in received:
            await job.signal(signal.Signals(signum).name)


if __name__ == "__main__":
    sys.exit(main())
