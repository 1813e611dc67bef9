"""``piston``: the command-line client of pistond, with Piston's CLI names.

Human output by default, ``--json`` for machines. ``piston run`` exits with the program's exit
code (128 + the signal number when it was killed by a signal).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

import trio

from pistond._version import __version__
from pistond.client import JobDone, JobExit, JobOutput, JobStage, PistonClient, open_client
from pistond.config import load_config
from pistond.convert import converter
from pistond.errors import ConfigError, PistondError
from pistond.models import JobResult, StageResult
from pistond.ppman.layout import PackageLayout
from pistond.ppman.pack import pack
from pistond.ppman.spec import SpecError, apply_spec

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

DEFAULT_SOCKET: Final = "/run/pistond/pistond.sock"
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


class CliError(Exception):
    """Raised by subcommands for a user-facing error; printed as one line."""


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

    run = commands.add_parser("run", aliases=["execute"], parents=[common], help="run a program")
    run.add_argument("language", help="language name or alias")
    run.add_argument("file", type=Path, help="the program's main file")
    run.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the program")
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
            return _pack(args)
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
            if args.interactive:
                return await _run_interactive(client, args)
            return await _run(client, args)
        return await _ppman(client, args)


def _emit_json(value: Any) -> None:
    json.dump(converter.unstructure(value), sys.stdout, indent=2, default=_json_bytes)
    sys.stdout.write("\n")


def _json_bytes(value: object) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _print_ping(result: Any, as_json: bool) -> int:
    if as_json:
        _emit_json(result)
    else:
        print(f"pistond {result.version} (protocol {result.protocol})")
    return 0


def _print_status(result: Any, as_json: bool) -> int:
    if as_json:
        _emit_json(result)
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
    for key, value in sorted(result.limits.items()):
        print(f"  {key} = {value}")
    return 0


def _print_runtimes(runtimes: list[Any], as_json: bool) -> int:
    if as_json:
        _emit_json(runtimes)
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


def _read_files(args: argparse.Namespace) -> list[dict[str, Any]]:
    files = []
    for path in [args.file, *args.files]:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read {path}: {exc.strerror}") from None
        try:
            content: str | bytes = data.decode("utf-8")
        except UnicodeDecodeError:
            content = data
        files.append({"name": path.name, "content": content})
    return files


def _limits(args: argparse.Namespace) -> dict[str, int]:
    return {
        dest: getattr(args, dest) for dest, _, _ in LIMIT_FLAGS if getattr(args, dest) is not None
    }


def _execute_params(args: argparse.Namespace, stdin: bytes | None) -> dict[str, Any]:
    params: dict[str, Any] = {
        "language": args.language,
        "version": args.language_version,
        "files": _read_files(args),
        "args": list(args.args),
        **_limits(args),
    }
    params["main"] = args.main or args.file.name
    if stdin is not None:
        params["stdin"] = stdin
    return params


async def _run(client: PistonClient, args: argparse.Namespace) -> int:
    stdin = await trio.to_thread.run_sync(sys.stdin.buffer.read) if args.stdin else None
    result = await client.call("execute", _execute_params(args, stdin))
    job: JobResult = converter.structure(result, JobResult)
    if args.json:
        _emit_json(job)
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
        _print_stage("Compile", job.compile, out)
    if job.run is not None:
        _print_stage("Run", job.run, out)


async def _run_interactive(client: PistonClient, args: argparse.Namespace) -> int:
    params = _execute_params(args, None)
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


def _package_items(items: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        name, _, version = item.partition("=")
        pairs.append((name, version or "*"))
    return pairs


async def _ppman(client: PistonClient, args: argparse.Namespace) -> int:
    action = {"l": "list", "i": "install", "u": "uninstall", "s": "spec"}.get(
        args.action, args.action
    )
    if action == "list":
        packages = await client.packages()
        if args.json:
            _emit_json(packages)
        for package in [] if args.json else packages:
            mark = "installed" if package.installed else "-"
            print(f"{package.language}-{package.version} [{package.source}] {mark}")
        return 0
    if action in ("install", "uninstall"):
        results = []
        for name, version in _package_items(args.packages):
            if action == "install":
                done = await client.install_package(name, version, progress=_progress(args))
            else:
                done = await client.uninstall_package(name, version)
            results.append(done)
            if not args.json:
                print(f"{action}ed {done.language}-{done.version}")
        if args.json:
            _emit_json(results)
        return 0
    try:
        text = args.specfile.read_text()
    except OSError as exc:
        raise CliError(f"cannot read {args.specfile}: {exc.strerror}") from None
    lines: list[str] = []
    echo: Callable[[str], None] = lines.append if args.json else print
    try:
        ok = await apply_spec(client, text, echo)
    except SpecError as exc:
        raise CliError(f"{args.specfile}: {exc}") from None
    if args.json:
        _emit_json({"ok": ok, "lines": lines})
    return 0 if ok else EXIT_ERROR


def _pack(args: argparse.Namespace) -> int:
    """``piston ppman pack``: the tarball of an installed package and its index line."""
    try:
        config = load_config(os.environ)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    layout = PackageLayout.of(config.packages_directory, args.package, args.package_version)
    base_url = args.base_url or args.output.resolve().as_uri()
    path, entry = pack(layout, args.output, base_url)
    if args.json:
        _emit_json({"path": str(path), "index_line": entry.line()})
    else:
        print(f"wrote {path}", file=sys.stderr)
        print(entry.line())
    return 0


def _progress(args: argparse.Namespace) -> Callable[[str], None] | None:
    if args.json:
        return None

    def show(line: str) -> None:
        print(f"  {line}", file=sys.stderr)

    return show


if __name__ == "__main__":
    sys.exit(main())
