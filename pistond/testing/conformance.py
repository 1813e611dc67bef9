"""``check_runtime``: a battery any runtime plugin can run against the runtimes it provides."""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path
from typing import TYPE_CHECKING, Final

from pistond.config import LIMIT_KEYS
from pistond.semver import parse_version

if TYPE_CHECKING:
    from pistond.runtimes import Runtime

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+#-]*")
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_NAME: Final = re.compile(
    r"TOKEN|SECRET|PASSW|CREDENTIAL|API_?KEY|PRIVATE|^AWS_|^SSH_|^SUDO_|^GPG_|^PISTON_(?!LANGUAGE$)|"
    r"^DBUS_|^XDG_RUNTIME_DIR$|^KUBE|^DOCKER_|^NPM_CONFIG_|^PIP_",
    re.IGNORECASE,
)
_RESERVED_TARGETS: Final = ("/", "/box", "/proc", "/dev", "/tmp", "/sys")


def runtime_problems(runtime: Runtime) -> list[str]:
    """Everything wrong with ``runtime``, as sentences (empty when it conforms)."""
    problems: list[str] = []
    problems += _check_names(runtime)
    problems += _check_argv(runtime)
    problems += _check_root(runtime)
    problems += _check_env(runtime)
    for key, value in runtime.limit_overrides.items():
        if key not in LIMIT_KEYS:
            problems.append(f"limit_overrides: {key!r} is not a limit key")
        elif isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"limit_overrides: {key} must be an integer")
    info = runtime.info()
    if (info.language, info.version, info.aliases, info.compiled) != (
        runtime.language,
        runtime.version,
        runtime.aliases,
        runtime.compiled,
    ):
        problems.append("info() does not mirror the runtime's fields")
    return problems


def check_runtime(runtime: Runtime) -> None:
    """Assert that ``runtime`` is well-formed and safe to hand to the sandbox.

    Checks: names and semantic version; absolute argv; compile argv exactly when compiled;
    argv[0] present in the root (or bound in); an absolute root and binds that stay clear of
    the sandbox's own mounts; an environment of valid names with no host secrets; limit keys.

    Raises:
        AssertionError: listing every problem found.
    """
    problems = runtime_problems(runtime)
    if problems:
        raise AssertionError(
            f"runtime {runtime.language}-{runtime.version}:\n  " + "\n  ".join(problems)
        )


def _check_names(runtime: Runtime) -> list[str]:
    problems = []
    if not _NAME.fullmatch(runtime.language):
        problems.append(f"language {runtime.language!r} is not a valid name")
    if parse_version(runtime.version) is None:
        problems.append(f"version {runtime.version!r} is not a semantic version")
    if len(set(runtime.aliases)) != len(runtime.aliases):
        problems.append("aliases hold duplicates")
    for alias in runtime.aliases:
        if not isinstance(alias, str) or not alias.strip() or alias != alias.strip():
            problems.append(f"alias {alias!r} is empty or padded")
    if runtime.package is not None and not _NAME.fullmatch(runtime.package):
        problems.append(f"package {runtime.package!r} is not a valid name")
    return problems


def _check_argv(runtime: Runtime) -> list[str]:
    problems = []
    if not runtime.run_argv:
        problems.append("run_argv is empty")
    if runtime.compiled != (runtime.compile_argv is not None):
        problems.append("compile_argv must be set exactly when the runtime is compiled")
    for name, argv in (("run_argv", runtime.run_argv), ("compile_argv", runtime.compile_argv)):
        if not argv:
            continue
        if any(not isinstance(arg, str) or "\0" in arg for arg in argv):
            problems.append(f"{name} holds a non-string or a NUL byte")
            continue
        if not posixpath.isabs(argv[0]):
            problems.append(f"{name}[0] {argv[0]!r} is not an absolute path")
        elif not _visible(runtime, argv[0]):
            problems.append(f"{name}[0] {argv[0]!r} does not exist inside the sandbox")
    return problems


def _visible(runtime: Runtime, path: str) -> bool:
    """Whether ``path`` (inside the sandbox) exists in the root or a bind."""
    for bind in runtime.root.binds:
        target = bind.target.rstrip("/")
        if path == target or path.startswith(target + "/"):
            return os.path.exists(bind.source + path[len(target) :])
    base = runtime.root.path or "/"
    return os.path.exists(os.path.join(base, path.lstrip("/")))


def _check_root(runtime: Runtime) -> list[str]:
    problems = []
    root = runtime.root.path
    if root is not None and (not posixpath.isabs(root) or not Path(root).is_dir()):
        problems.append(f"root {root!r} is not an existing absolute directory")
    for bind in runtime.root.binds:
        if not posixpath.isabs(bind.source) or not os.path.exists(bind.source):
            problems.append(f"bind source {bind.source!r} is not an existing absolute path")
        target = posixpath.normpath(bind.target)
        if not posixpath.isabs(bind.target) or ".." in bind.target.split("/"):
            problems.append(f"bind target {bind.target!r} is not a clean absolute path")
        elif any(
            target == reserved or (reserved != "/" and target.startswith(reserved + "/"))
            for reserved in _RESERVED_TARGETS
        ):
            problems.append(f"bind target {bind.target!r} covers a sandbox mount")
        if bind.writable:
            problems.append(f"bind {bind.target!r} is writable; runtimes bind read-only")
    return problems


def _check_env(runtime: Runtime) -> list[str]:
    problems = []
    host_values = {
        value for name, value in os.environ.items() if _SECRET_NAME.search(name) and len(value) > 3
    }
    for name, value in runtime.env.items():
        if not _ENV_NAME.fullmatch(name):
            problems.append(f"env name {name!r} is not a variable name")
        if "\0" in value:
            problems.append(f"env {name} holds a NUL byte")
        if _SECRET_NAME.search(name):
            problems.append(f"env {name} looks like a host secret or host-specific setting")
        elif value in host_values:
            problems.append(f"env {name} copies a secret of the daemon's environment")
    if name_clash := {"HOME", "PISTON_LANGUAGE", "PWD"} & set(runtime.env):
        problems.append(f"env sets {', '.join(sorted(name_clash))}, which jobs set themselves")
    return problems
