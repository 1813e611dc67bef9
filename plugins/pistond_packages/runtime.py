"""Runtimes of an installed package: compile and run argv, environment and root view."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from typing import TYPE_CHECKING, Final

from pistond.ppman.layout import ENV_FILE, MARKER, METADATA, PKG_INFO, parse_env
from pistond.runtimes import Runtime
from pistond.sandbox.hostfs import open_in_root
from pistond.sandbox.spec import Bind, RootView

if TYPE_CHECKING:
    from pistond.ppman.layout import PackageLayout
    from pistond.ppman.metadata import PackageMetadata

BASH = "/bin/bash"


def package_root(layout: PackageLayout) -> RootView:
    """The package's root filesystem (or the host view) with its directory at its Piston path.

    The directory is bound read-only at ``/piston/packages/<package>/<version>``; the builder
    creates that mount point inside built roots.
    """
    root = layout.root
    return RootView(
        path=str(root) if root.is_dir() else None,
        binds=(Bind(source=str(layout.directory), target=layout.piston_path),),
    )


def package_runtimes(layout: PackageLayout, metadata: PackageMetadata) -> list[Runtime]:
    """One runtime per ``provides`` entry, or one for the package itself.

    A runtime is compiled when the package directory has a ``compile`` script; jobs run
    ``/bin/bash <piston path>/compile <files>`` and ``/bin/bash <piston path>/run <main> <args>``,
    or the run script's one command itself where the script only execs it (``direct_run``).
    """
    compiled = (layout.directory / "compile").is_file()
    env = parse_env(layout.env_file.read_text(encoding="utf-8"))
    identity = build_identity(layout)
    root = package_root(layout)
    package = metadata.language if metadata.provides else None
    run_script = (layout.directory / "run").read_text(encoding="utf-8", errors="replace")
    run_argv = direct_run(run_script, root.path) or (BASH, f"{layout.piston_path}/run")
    return [
        Runtime(
            language=entry.language,
            version=metadata.version,
            aliases=entry.aliases,
            package=package,
            compiled=compiled,
            root=root,
            compile_argv=(BASH, f"{layout.piston_path}/compile") if compiled else None,
            run_argv=run_argv,
            env=env,
            limit_overrides=entry.limit_overrides,
            identity=identity,
            compile_scratch=metadata.compile_scratch,
        )
        for entry in metadata.languages()
    ]


EXEC_LINE: Final = re.compile(r'exec((?: +[A-Za-z0-9_./=+,:@%-]+)+) +"\$@"')
"""``exec /absolute/program [plain words] "$@"``: no quotes, expansions or globs in the words."""


def direct_run(script: str, root: str | None) -> tuple[str, ...] | None:
    """The command a run script only execs, to start it without the script's bash.

    Jobs run scripts with bash whatever their first line says. Most run scripts are comments
    and ``exec /usr/bin/x [options] "$@"``: bash then adds nothing but its own start-up (about
    1 ms a job) and two variables, which every stage's environment carries anyway (``PWD``
    and ``SHLVL``, see ``jobs.stage_spec``). Anything else (another command, a variable, a
    relative program, a program that is not an executable ELF or ``#!`` file in the package's
    root, where bash's own answer is the right one) keeps the script.
    """
    commands = [
        line.strip()
        for line in script.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if len(commands) != 1 or (match := EXEC_LINE.fullmatch(commands[0])) is None:
        return None
    argv = tuple(match[1].split())
    if not argv[0].startswith("/") or not executable_in_root(root or "/", argv[0]):
        return None
    return argv


EXECUTABLE_MAGIC: Final = (b"\x7fELF", b"#!")


def executable_in_root(root: str, program: str) -> bool:
    """Whether ``program`` is an executable ELF or ``#!`` file as the sandbox sees ``root``
    (its links followed inside ``root``); False where that cannot be told."""
    try:
        fd = open_in_root(root, program)
    except OSError:
        return False
    if fd is None:
        return False
    try:
        info = os.fstat(fd)
        head = os.read(fd, 4) if stat.S_ISREG(info.st_mode) else b""
    finally:
        os.close(fd)
    return bool(info.st_mode & 0o111) and head.startswith(EXECUTABLE_MAGIC)


IDENTITY_FILES = (MARKER, PKG_INFO, METADATA, "compile", ENV_FILE)
"""What makes an installed build itself: its install stamp (rewritten by every install), what
the build resolved, its metadata, compile script and environment."""


def build_identity(layout: PackageLayout) -> str:
    """A digest that changes whenever the package is reinstalled or rebuilt."""
    digest = hashlib.sha256(f"{layout.package}\0{layout.version}\0".encode())
    for name in IDENTITY_FILES:
        try:
            content = (layout.directory / name).read_bytes()
        except FileNotFoundError:
            content = b""
        digest.update(f"{name}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()
