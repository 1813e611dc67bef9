"""The host's registry configuration (pip, npm, CA certificates, proxies), carried into the jail.

pip and npm run in the build jail (:mod:`pistond.ppman.isolate`), not on the host, but they must
reach their registries exactly as the host's own clients do: the same indexes and mirrors, the
same proxies, the same trusted certificates (a TLS-intercepting proxy or a private mirror signs
with a private CA). :func:`read_host_registries` takes all of it from the host's own
configuration, read-only:

- environment: the proxy variables, the CA variables (``SSL_CERT_FILE``, ``SSL_CERT_DIR``,
  ``NODE_EXTRA_CA_CERTS``, ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``) and ``npm_config_*``;
- pip: the effective configuration of the interpreter that runs pip (``pip config list``: its
  files and ``PIP_*`` variables), reduced to the keys that say where packages come from and how
  to trust them (index URLs, find-links, trusted hosts, ``cert``, ``client-cert``, proxy,
  constraints, timeouts);
- npm: the host's user and global ``npmrc`` files as they are (registries, scopes, ``cafile``,
  proxies, auth), found with ``npm config list``.

Every local file or directory those settings name (a CA bundle, a client certificate, a
``file://`` index, a find-links directory, a constraints file) is bound read-only into the jail
below ``/run/pistond-host`` (paths under ``/usr`` and ``/etc/ssl/certs`` are visible as they
are), and the settings handed to the jail name it there. The configuration files themselves are
written into the build's scratch directory, which the jail sees read-only and which is deleted
with the build: nothing of it, credentials included, is ever copied into a runtime root that
jobs see.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs

from pistond.errors import PackageError
from pistond.sandbox.spec import Bind

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

logger = logging.getLogger(__name__)

DEFAULT_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROXY_VARIABLES: Final = (
    "http_proxy", "https_proxy", "no_proxy", "all_proxy",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
)  # fmt: skip
CA_VARIABLES: Final = (
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)
"""Variables naming trusted certificates; passed on, and their files bound read-only."""
PIP_KEYS: Final = (
    "index-url",
    "extra-index-url",
    "no-index",
    "find-links",
    "trusted-host",
    "cert",
    "client-cert",
    "proxy",
    "timeout",
    "default-timeout",
    "retries",
    "constraint",
    "disable-pip-version-check",
)
"""pip settings carried into the jail: where packages come from and how they are trusted."""
PIP_PATH_KEYS: Final = frozenset({"cert", "client-cert", "constraint"})
PIP_LOCATION_KEYS: Final = frozenset({"index-url", "extra-index-url", "find-links"})
NPM_PATH_KEYS: Final = ("cafile", "certfile", "keyfile")
NPM_JAIL_OWNED: Final = frozenset({"userconfig", "globalconfig", "cache", "prefix"})
"""npm settings the jail sets itself; the host's ``npm_config_*`` values for them are dropped."""
VISIBLE_PREFIXES: Final = ("/usr/", "/etc/ssl/certs/")
"""Host paths every host-view jail already shows (read-only)."""
CONFIG_TARGET: Final = "/run/pistond-registries"
"""Where the generated configuration files appear inside the jail."""
HOST_TARGET: Final = "/run/pistond-host"
"""Below which the host files the settings name appear inside the jail (read-only)."""
_QUERY_TIMEOUT: Final = 30


@attrs.frozen
class HostRegistries:
    """The host's registry configuration, as the build jail carries it."""

    env: Mapping[str, str]
    """Proxy, CA and ``npm_config_*`` variables of the host, passed on unchanged."""
    paths: tuple[str, ...]
    """Host files and directories the settings name, bound read-only (see :func:`jail_path`)."""
    pip_config: str
    """A ``pip.conf`` holding the host's effective pip settings (allow-listed keys)."""
    npm_user_config: str = ""
    """The host's user ``npmrc``, as it is."""
    npm_global_config: str = ""
    """The host's global ``npmrc``, as it is."""


def read_host_registries(environ: Mapping[str, str] | None = None) -> HostRegistries:
    """Read the host's registry configuration (runs ``pip config list`` and ``npm config list``).

    Args:
        environ: the daemon's environment (default ``os.environ``).
    """
    environ = dict(os.environ if environ is None else environ)
    env = {
        name: value
        for name, value in environ.items()
        if name in PROXY_VARIABLES
        or name in CA_VARIABLES
        or (
            name.lower().startswith("npm_config_")
            and name.lower().removeprefix("npm_config_") not in NPM_JAIL_OWNED
        )
    }
    paths: list[str] = []
    for name in CA_VARIABLES:
        if name in env:
            paths.append(env[name])
            env[name] = jail_path(env[name])
    pip_settings = _pip_settings(environ)
    for key, value in pip_settings.items():
        if key in PIP_PATH_KEYS:
            paths.append(value)
            pip_settings[key] = jail_path(value)
        elif key in PIP_LOCATION_KEYS:
            locations = value.split()
            local = [path for path in map(_local_path, locations) if path]
            # A file:// index's pages may link to files beside it (../files/...): its parent
            # directory is bound. find-links directories hold the files themselves.
            paths += [
                os.path.dirname(path.rstrip("/")) if key != "find-links" else path for path in local
            ]
            pip_settings[key] = " ".join(_jail_location(location) for location in locations)
    npm = _npm_settings(environ)
    for key in NPM_PATH_KEYS:
        setting = npm.get(key)
        if isinstance(setting, str) and setting:
            # The jail reads the file at its jail path: the variable outranks the npmrc files.
            paths.append(setting)
            env[f"npm_config_{key}"] = jail_path(setting)
    return HostRegistries(
        env=env,
        paths=tuple(_bindable(paths)),
        pip_config=_format_pip_config(pip_settings),
        npm_user_config=_read_text(npm.get("userconfig")),
        npm_global_config=_read_text(npm.get("globalconfig")),
    )


def jail_path(path: str) -> str:
    """Where a host path appears in the jail: as it is where every host-view jail shows it,
    else below :data:`HOST_TARGET` (the jail's own ``/tmp`` would hide ``/tmp/...`` paths)."""
    normal = os.path.normpath(path)
    if not normal.startswith("/") or (normal + "/").startswith(VISIBLE_PREFIXES):
        return path
    return HOST_TARGET + normal


def _jail_location(location: str) -> str:
    """A pip location (URL or path) rewritten to the jail's view of local paths."""
    path = _local_path(location)
    if path is None:
        return location
    return Path(jail_path(path)).as_uri() if location.startswith("file:") else jail_path(path)


def _local_path(location: str) -> str | None:
    """The host path of a ``file://`` URL or a plain path; None for a remote URL."""
    if location.startswith("file:"):
        return urllib.parse.unquote(urllib.parse.urlsplit(location).path) or None
    return location if location.startswith("/") else None


def _bindable(paths: Iterable[str]) -> list[str]:
    """Existing absolute paths not already visible in a host-view jail, each once."""
    kept: list[str] = []
    for path in paths:
        normal = os.path.normpath(path)
        if (
            normal.startswith("/")
            and os.path.exists(normal)
            and not (normal + "/").startswith(VISIBLE_PREFIXES)
            and normal not in kept
        ):
            kept.append(normal)
    return kept


def _tool_env(environ: Mapping[str, str]) -> dict[str, str]:
    keep = ("HOME", "PATH", *PROXY_VARIABLES, *CA_VARIABLES)
    env = {name: environ[name] for name in keep if name in environ}
    env.update({k: v for k, v in environ.items() if k.startswith(("PIP_", "npm_config_"))})
    env.update({k: v for k, v in environ.items() if k.startswith("NPM_CONFIG_")})
    env.setdefault("PATH", DEFAULT_PATH)
    return env


def _pip_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The effective pip settings of this interpreter (files, then ``PIP_*``), allow-listed."""
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True,
            env=_tool_env(environ),
            timeout=_QUERY_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("pip config list failed: %s", exc)
        return {}
    files: dict[str, str] = {}
    variables: dict[str, str] = {}
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        name, sep, raw = line.partition("=")
        section, _, key = name.rpartition(".")
        if not sep or key not in PIP_KEYS or section not in (":env:", "global", "install"):
            continue
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, str):
            (variables if section == ":env:" else files)[key] = value
    return {**files, **variables}


def _format_pip_config(settings: Mapping[str, str]) -> str:
    lines = ["[global]"]
    lines += [f"{key} = {' '.join(value.split())}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def npm_command() -> tuple[str, str]:
    """The host's ``node`` binary and ``npm-cli.js`` (both resolved), to run npm in the jail.

    Raises:
        PackageError: npm or node is not installed on the host.
    """
    npm = shutil.which("npm", path=DEFAULT_PATH)
    node = shutil.which("node", path=DEFAULT_PATH) or shutil.which("nodejs", path=DEFAULT_PATH)
    if npm is None or node is None:
        raise PackageError("npm is not installed on this host")
    return os.path.realpath(node), os.path.realpath(npm)


def _npm_settings(environ: Mapping[str, str]) -> dict[str, object]:
    try:
        npm = shutil.which("npm", path=DEFAULT_PATH)
        if npm is None:
            return {}
        result = subprocess.run(
            [npm, "config", "list", "--json"],
            capture_output=True,
            env=_tool_env(environ),
            cwd="/",
            timeout=_QUERY_TIMEOUT,
            check=False,
        )
        data = json.loads(result.stdout or b"{}")
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        logger.warning("npm config list failed: %s", exc)
        return {}
    return data if isinstance(data, dict) else {}


def _read_text(path: object) -> str:
    if not isinstance(path, str):
        return ""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def tool_binds(*programs: str) -> list[Bind]:
    """Read-only binds making host programs that live outside ``/usr`` visible in the jail.

    For each program, the installation prefix (two levels above the resolved binary, e.g.
    ``/opt/node`` for ``/opt/node/bin/node``) is bound at its own path.
    """
    binds: list[Bind] = []
    for program in programs:
        prefix = os.path.dirname(os.path.dirname(os.path.realpath(program)))
        if prefix.startswith("/usr/") or prefix in ("/", "/usr"):
            continue
        if not any(bind.source == prefix for bind in binds):
            binds.append(Bind(source=prefix, target=prefix))
    return binds


JAIL_MOUNTS: Final = ("/box/", "/dev/", "/proc/", "/sys/", "/tmp/")
"""Where the jail mounts its own filesystems: a host path below one of them is hidden there."""


def python_binds() -> list[Bind]:
    """Read-only binds of the interpreter running pistond (its prefix and base prefix).

    Each appears at its own path (a venv's ``bin/python`` may link to its base interpreter by
    absolute path), or below :data:`HOST_TARGET` where the jail's own mounts would hide it (a
    checkout or venv in ``/tmp``).
    """
    binds = []
    for prefix in dict.fromkeys(
        os.path.realpath(path) for path in (sys.prefix, sys.base_prefix, sys.exec_prefix)
    ):
        if not prefix.startswith("/usr"):
            binds.append(Bind(source=prefix, target=_python_target(prefix)))
    return binds


def python_executable() -> str:
    """The path of the interpreter running pistond inside the jail (see :func:`python_binds`)."""
    directory = os.path.realpath(os.path.dirname(sys.executable))
    return os.path.join(_python_target(directory), os.path.basename(sys.executable))


def _python_target(path: str) -> str:
    return HOST_TARGET + path if (path + "/").startswith(JAIL_MOUNTS) else path


def write_configs(host: HostRegistries, directory: Path, uid: int) -> dict[str, str]:
    """Write the jail's configuration files into ``directory``; return the variables naming them.

    The files are readable by ``uid`` (the jail's user) only; ``directory`` is bound read-only
    at :data:`CONFIG_TARGET`.
    """
    directory.mkdir(mode=0o700, exist_ok=True)
    files = {
        "pip.conf": host.pip_config,
        "npmrc": host.npm_user_config,
        "npmrc-global": host.npm_global_config,
    }
    for name, text in files.items():
        path = directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.chown(path, uid, uid)
    os.chown(directory, uid, uid)
    return {
        "PIP_CONFIG_FILE": f"{CONFIG_TARGET}/pip.conf",
        "NPM_CONFIG_USERCONFIG": f"{CONFIG_TARGET}/npmrc",
        "NPM_CONFIG_GLOBALCONFIG": f"{CONFIG_TARGET}/npmrc-global",
    }


def config_binds(host: HostRegistries, directory: Path) -> list[Bind]:
    """The configuration directory and every host path the settings name, read-only."""
    return [
        Bind(source=str(directory), target=CONFIG_TARGET),
        *(Bind(source=path, target=jail_path(path)) for path in host.paths),
    ]
