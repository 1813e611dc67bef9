"""Daemon configuration: Piston's ``PISTON_*`` variables, pistond's own, an optional TOML file.

Every setting is read from ``PISTON_<NAME>`` in the environment, or ``<name>`` in the TOML file
named by ``--config`` / ``PISTON_CONFIG``; the environment wins. A bad value raises
:class:`~pistond.errors.ConfigError` naming the variable, and the daemon exits with status 2.
"""

from __future__ import annotations

import grp
import ipaddress
import json
import re
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import attrs
import cattrs
from cattrs.errors import ClassValidationError

from pistond.errors import ConfigError

ENV_PREFIX: Final = "PISTON_"
DEFAULT_SOCKET: Final = "/run/pistond/pistond.sock"
"""The daemon's RPC socket unless ``PISTON_SOCKET`` says otherwise (the one place it is set)."""
DEFAULT_GATEWAY_USER: Final = "pistond-gateway"
"""The system user ``systemd/sysusers.d/pistond.conf`` creates for the gateway."""
DEFAULT_REPO_URL: Final = ""
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARN", "WARNING", "ERROR", "NONE")
_TRUE: Final = frozenset({"true", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "off"})
_INTEGER = re.compile(r"[+-]?[0-9]+")


def _invalid(attribute: attrs.Attribute[Any], reason: str) -> ConfigError:
    return ConfigError(variable_name(attribute.name), reason)


def _positive(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value <= 0:
        raise _invalid(attribute, f"must be a positive integer, got {value}")


def _memory_limit(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value <= 0 and value != -1:
        raise _invalid(
            attribute, f"must be a positive number of bytes or -1 (no limit), got {value}"
        )


def _non_negative(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 0:
        raise _invalid(attribute, f"cannot be negative, got {value}")


def _log_level(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value.upper() not in LOG_LEVELS:
        raise _invalid(attribute, f"Log level {value} does not exist")


def _bind_address(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _invalid(attribute, f"must be host:port with a port from 1 to 65535, got {value!r}")


def _absolute(_instance: object, attribute: attrs.Attribute[Path], value: Path) -> None:
    if not value.is_absolute():
        raise _invalid(attribute, f"must be an absolute path, got {str(value)!r}")


def _repo_url(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value and urllib.parse.urlsplit(value).scheme not in ("file", "http", "https"):
        raise _invalid(attribute, f"must be a file://, http:// or https:// URL, got {value!r}")


def _user_spec(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    user, sep, group = value.partition(":")
    if not user or (sep and not group) or ":" in group:
        raise _invalid(attribute, f"must be user or user:group, got {value!r}")


DATABASE_SCHEMES: Final = ("sqlite", "postgresql", "postgres", "postgresql+psycopg")
"""URL schemes of ``PISTON_DATABASE_URL``: SQLite, or PostgreSQL (through psycopg)."""


def _database_url(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    scheme = value.partition("://")[0] if "://" in value else None
    if value and scheme not in DATABASE_SCHEMES:
        # The URL may hold a password: name its scheme only.
        raise _invalid(
            attribute,
            f"must be a sqlite:/// or postgresql:// URL, got a {scheme or 'malformed'} URL",
        )


def _callback_allow(
    _instance: object, attribute: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]
) -> None:
    for entry in value:
        if entry in ("public", "none"):
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise _invalid(
                attribute,
                f"entries are public, none or networks such as 10.1.0.0/16, got {entry!r}",
            ) from None


API_KEY_SOURCES: Final = ("off", "file", "database")
"""Values of ``PISTON_GATEWAY_API_KEYS``: no keys, keys in a TOML file, keys in the database."""
DEFAULT_API_KEYS_FILE: Final = "/etc/pistond/api-keys.toml"


def _api_key_source(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in API_KEY_SOURCES:
        raise _invalid(attribute, f"must be off, file or database, got {value!r}")


def _networks(
    _instance: object, attribute: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]
) -> None:
    for entry in value:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise _invalid(
                attribute, f"entries are addresses or networks such as 10.0.0.0/8, got {entry!r}"
            ) from None


def _origins(
    _instance: object, attribute: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]
) -> None:
    for entry in value:
        if entry in ("*", "null"):
            continue
        parts = urllib.parse.urlsplit(entry)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path
            or parts.query
            or parts.fragment
            or parts.username is not None
        ):
            raise _invalid(
                attribute,
                f"entries are *, null or origins such as https://editor.example.com, got {entry!r}",
            )


def _default_bind_address() -> str:
    return "0.0.0.0:2000"


_PISTON_REQUEST: Final = {"request": "piston"}
"""Metadata of a limit a Piston request may lower (piston-v2.md §1.3)."""
_PISTOND_REQUEST: Final = {"request": "pistond"}
"""Metadata of a limit only a pistond request may lower (PROTOCOL.md extensions)."""


@attrs.frozen
class Limits:
    """The ten per-runtime limits of Piston, all caps that requests may only lower.

    The fields are in Piston's order, which is also the order its validation checks request
    limits in (memory, timeout, CPU time; compile before run): every list of limit names is
    derived from this class (:data:`LIMIT_KEYS` and its subsets).
    """

    max_process_count: int = attrs.field(default=64, validator=_positive)
    """Processes (and threads) per sandbox."""
    max_open_files: int = attrs.field(default=2048, validator=_positive)
    """Open files per process (RLIMIT_NOFILE)."""
    max_file_size: int = attrs.field(default=10_000_000, validator=_positive)
    """Bytes per file written (RLIMIT_FSIZE)."""
    compile_memory_limit: int = attrs.field(
        default=-1, validator=_memory_limit, metadata=_PISTON_REQUEST
    )
    """Bytes of memory for the compile stage; -1 for no limit."""
    run_memory_limit: int = attrs.field(
        default=-1, validator=_memory_limit, metadata=_PISTON_REQUEST
    )
    """Bytes of memory for the run stage; -1 for no limit."""
    compile_timeout: int = attrs.field(
        default=10_000, validator=_positive, metadata=_PISTON_REQUEST
    )
    """Wall-clock milliseconds of the compile stage."""
    run_timeout: int = attrs.field(default=3_000, validator=_positive, metadata=_PISTON_REQUEST)
    """Wall-clock milliseconds of the run stage."""
    compile_cpu_time: int = attrs.field(
        default=10_000, validator=_positive, metadata=_PISTON_REQUEST
    )
    """CPU milliseconds of the compile stage."""
    run_cpu_time: int = attrs.field(default=3_000, validator=_positive, metadata=_PISTON_REQUEST)
    """CPU milliseconds of the run stage."""
    output_max_size: int = attrs.field(default=1024, validator=_positive, metadata=_PISTOND_REQUEST)
    """Bytes kept per output stream; more kills the stage (OL / EL)."""


LIMIT_KEYS: Final = tuple(field.name for field in attrs.fields(Limits))
"""The ten limit keys, in Piston's order (also the keys of PISTON_LIMIT_OVERRIDES)."""
REQUEST_LIMIT_KEYS: Final = tuple(
    field.name for field in attrs.fields(Limits) if "request" in field.metadata
)
"""The limits an ``execute`` request may lower, in the order they are checked."""
PISTON_REQUEST_LIMIT_KEYS: Final = tuple(
    field.name for field in attrs.fields(Limits) if field.metadata.get("request") == "piston"
)
"""The request limits of Piston's execute body (piston-v2.md §1.3), in its checking order."""


@attrs.frozen
class DaemonConfig:
    """Every setting of the daemon and the gateway; attribute ``x`` is variable ``PISTON_X``."""

    log_level: str = attrs.field(default="INFO", validator=_log_level)
    bind_address: str = attrs.field(factory=_default_bind_address, validator=_bind_address)
    """HTTP address of the gateway."""
    data_directory: Path = attrs.field(default=Path("/var/lib/pistond"), validator=_absolute)
    """Installed packages, package builds and box mount points live here."""
    runner_uid_min: int = attrs.field(default=1001, validator=_non_negative)
    """Accepted for compatibility; unused, as in Piston since Isolate (see box_uid_base)."""
    runner_uid_max: int = attrs.field(default=1500, validator=_non_negative)
    runner_gid_min: int = attrs.field(default=1001, validator=_non_negative)
    runner_gid_max: int = attrs.field(default=1500, validator=_non_negative)
    disable_networking: bool = True
    """When true, sandboxes see only a loopback interface."""
    repo_url: str = attrs.field(default=DEFAULT_REPO_URL, validator=_repo_url)
    """Piston-format package index (file://, http:// or https://); empty: local recipes only."""
    max_concurrent_jobs: int = attrs.field(default=64, validator=_positive)
    limits: Limits = attrs.field(factory=Limits)
    limit_overrides: Mapping[str, Mapping[str, int]] = attrs.field(factory=dict)
    """Per runtime language, limits that replace the global ones."""
    socket: Path = attrs.field(default=Path(DEFAULT_SOCKET), validator=_absolute)
    """RPC socket path (ignored under systemd socket activation)."""
    socket_group: str = ""
    """Group that owns the socket; empty: ``pistond`` if it exists."""
    admin_group: str = ""
    """Group (besides root) that may install and uninstall packages; empty: the socket group."""
    max_queue_size: int = attrs.field(default=256, validator=_non_negative)
    """Jobs that may wait for a slot; beyond it requests get ``overloaded``."""
    max_running_stages: int = attrs.field(default=0, validator=_non_negative)
    """Stages running at once (the others of the admitted jobs wait, FIFO); 0: derived from
    the CPUs (``capacity.default_stage_limit``)."""
    queue_timeout: int = attrs.field(default=60_000, validator=_positive)
    """Milliseconds a job may wait for a slot before it gets ``overloaded``."""
    disk_size: int = attrs.field(default=64 * 1024 * 1024, validator=_positive)
    """Bytes of each job's box tmpfs (submitted files plus what the job writes)."""
    disk_inodes: int = attrs.field(default=16_384, validator=_positive)
    """Inodes of each job's box tmpfs."""
    box_uid_base: int = attrs.field(default=60_000, validator=_positive)
    """Box slot n runs as uid and gid box_uid_base + n."""
    cgroup_root: str = ""
    """Cgroup path (relative to each hierarchy) for job groups; empty: the daemon's own group."""
    max_message_size: int = attrs.field(default=64 * 1024 * 1024, validator=_positive)
    """Largest RPC message accepted, in bytes."""
    max_connections: int = attrs.field(default=1024, validator=_non_negative)
    """RPC connections served at once; more are closed at once. 0: no cap."""
    max_requests_per_connection: int = attrs.field(default=64, validator=_positive)
    """Requests one RPC connection may have in progress; beyond, the daemon stops reading it."""
    frame_timeout: int = attrs.field(default=30_000, validator=_positive)
    """Milliseconds a started RPC message may take to arrive in full (then: connection closed)."""
    notification_buffer_size: int = attrs.field(default=4 * 1024 * 1024, validator=_positive)
    """Bytes of notifications queued for a peer that does not read; beyond, its job is killed."""
    shutdown_grace: int = attrs.field(default=10_000, validator=_non_negative)
    """Milliseconds running jobs get to finish after SIGTERM before they are cancelled."""
    disabled_plugins: tuple[str, ...] = ()
    """Plugin names (entry-point names) not to load."""
    host_runtimes: bool = True
    """Offer the host's own interpreters (bash, python3, gcc, ...) under a read-only view."""
    max_body_size: int = attrs.field(default=1024 * 1024, validator=_positive)
    """Largest HTTP request body the gateway accepts, in bytes (more: 413)."""
    gateway_allow_root: bool = False
    """Let ``pistond-gateway`` run as root (started by root, it drops to gateway_user)."""
    gateway_user: str = attrs.field(default=DEFAULT_GATEWAY_USER, validator=_user_spec)
    """``user`` or ``user:group`` the gateway drops to when started as root."""
    gateway_max_connections: int = attrs.field(default=1024, validator=_non_negative)
    """HTTP connections the gateway keeps open at once (more: 503); 0: no cap."""
    gateway_max_connections_per_client: int = attrs.field(default=256, validator=_non_negative)
    """HTTP connections from one client address at once (more: 429); 0: no cap."""
    gateway_max_websockets: int = attrs.field(default=256, validator=_non_negative)
    """WebSocket sessions the gateway serves at once (more: 503); 0: no cap."""
    gateway_max_jobs_per_client: int = attrs.field(default=16, validator=_non_negative)
    """Jobs (executes and WebSocket sessions) one client may run at once (more: 429); 0: no cap."""
    gateway_head_timeout: int = attrs.field(default=10_000, validator=_positive)
    """Milliseconds a request head may take to arrive, from its first byte (more: 408)."""
    gateway_body_timeout: int = attrs.field(default=30_000, validator=_positive)
    """Milliseconds a request body may take to arrive, after its head (more: 408)."""
    gateway_idle_timeout: int = attrs.field(default=5_000, validator=_positive)
    """Milliseconds a kept-alive HTTP connection may stay silent between requests."""
    recipes_directory: Path | None = None
    """Package recipes to build from; empty: the ``packages/`` directory shipped with pistond."""
    gateway_data_directory: Path = attrs.field(
        default=Path("/var/lib/pistond-gateway"), validator=_absolute
    )
    """The gateway's own state: the SQLite submission database when no database URL is set."""
    database_url: str = attrs.field(default="", validator=_database_url)
    """Where submissions are stored: ``postgresql://user:password@host/db`` (shared by many
    gateways), ``sqlite:////path/file.db``; empty: SQLite in gateway_data_directory."""
    submission_ttl: int = attrs.field(default=86_400, validator=_positive)
    """Seconds a finished submission is kept (then deleted, result and all)."""
    submission_workers: int = attrs.field(default=16, validator=_non_negative)
    """Submissions this gateway runs at once from the queue; 0: it only accepts them."""
    submission_lease: int = attrs.field(default=30_000, validator=_positive)
    """Milliseconds a worker's claim on a submission lasts without renewal (a dead machine's
    submissions are run again after it)."""
    submission_poll_interval: int = attrs.field(default=500, validator=_positive)
    """Milliseconds between looks at the queue when there is nothing to run."""
    submission_max_wait: int = attrs.field(default=30_000, validator=_positive)
    """Milliseconds ``?wait=true`` may hold a request before it answers with the state."""
    submission_max_batch: int = attrs.field(default=100, validator=_positive)
    """Submissions one batch may hold."""
    submission_max_pending: int = attrs.field(default=10_000, validator=_non_negative)
    """Submissions queued or running in the database at once (more: 503); 0: no cap."""
    submission_max_result_size: int = attrs.field(default=1024 * 1024, validator=_positive)
    """Bytes of output (all streams of all stages) stored per submission; more is cut, each
    stream keeping its prefix, and the submission is marked truncated."""
    submission_max_attempts: int = attrs.field(default=3, validator=_positive)
    """Times a submission is started before it is given up (a worker died holding it)."""
    callback_allow: tuple[str, ...] = attrs.field(default=("public",), validator=_callback_allow)
    """Where ``callback_url`` may point: ``public`` (globally routable addresses) and networks
    (``10.1.0.0/16``, ``::1``); ``none`` or empty: no callbacks."""
    callback_attempts: int = attrs.field(default=5, validator=_positive)
    """Deliveries tried per callback (the pause between two doubles, from 1 s to 60 s)."""
    callback_timeout: int = attrs.field(default=10_000, validator=_positive)
    """Milliseconds one callback delivery may take, connection included."""
    compile_cache_size: int = attrs.field(default=256 * 1024 * 1024, validator=_non_negative)
    """Bytes of compile results kept under the data directory (least recently used go first);
    0 disables the compile cache."""
    max_tests: int = attrs.field(default=64, validator=_non_negative)
    """Tests one ``execute`` request may carry (each is one run stage); 0: ``tests`` refused."""
    gateway_api_keys: str = attrs.field(default="off", validator=_api_key_source)
    """Whether the gateway requires API keys, and where they are: ``off``, ``file``
    (gateway_api_keys_file) or ``database`` (the submissions database)."""
    gateway_api_keys_file: Path = attrs.field(
        default=Path(DEFAULT_API_KEYS_FILE), validator=_absolute
    )
    """The TOML file of API keys (hashed) when gateway_api_keys is ``file``."""
    gateway_rate_limit: int = attrs.field(default=0, validator=_non_negative)
    """Jobs per minute one client (a key, or an address without keys) may start; a key's own
    ``jobs_per_minute`` replaces it. 0: no rate limit."""
    gateway_rate_burst: int = attrs.field(default=0, validator=_non_negative)
    """Jobs a client may start at once from a full bucket; 0: a minute's worth."""
    gateway_trusted_proxies: tuple[str, ...] = attrs.field(default=(), validator=_networks)
    """Proxies (addresses or networks) whose ``X-Forwarded-For`` is believed; empty: none."""
    gateway_cors_origins: tuple[str, ...] = attrs.field(default=(), validator=_origins)
    """Origins browsers may call the API from (``https://editor.example.com``, ``*``); empty:
    none but the gateway's own."""
    gateway_audit_log: bool = True
    """Log one structured line per request (logger ``pistond.gateway.audit``)."""

    def __attrs_post_init__(self) -> None:
        slots_end = self.box_uid_base + self.max_concurrent_jobs
        if slots_end >= 2**31:
            raise ConfigError(
                "PISTON_BOX_UID_BASE",
                f"box uids up to {slots_end} do not fit in 31 bits",
            )

    @property
    def packages_directory(self) -> Path:
        """Where installed packages live."""
        return self.data_directory / "packages"


def variable_name(field: str) -> str:
    """The environment variable of a configuration field."""
    return ENV_PREFIX + field.upper()


def as_variables(config: DaemonConfig) -> dict[str, str]:
    """Every setting of ``config`` as the ``PISTON_*`` variable and text that would set it.

    ``load_config(as_variables(config))`` gives ``config`` back; the lines suit an
    ``EnvironmentFile=``.
    """
    values: dict[str, object] = {
        name: getattr(config, name) for name in sorted(_CONFIG_FIELDS)
    } | attrs.asdict(config.limits)
    return {variable_name(name): _as_text(value) for name, value in values.items()}


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, default=dict)
    return str(value)


def _parse_int(value: object, _type: type) -> int:
    if isinstance(value, bool):
        raise ValueError(f"must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value.strip())
    raise ValueError(f"must be an integer, got {value!r}")


def _parse_bool(value: object, _type: type) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"must be one of true/false, 1/0, yes/no, on/off, got {value!r}")


def _parse_str(value: object, _type: type) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {value!r}")
    return value


def _parse_path(value: object, _type: type) -> Path:
    return Path(_parse_str(value, str))


def _parse_optional_path(value: object, _type: type) -> Path | None:
    if value is None or value == "":
        return None
    return _parse_path(value, Path)


def _parse_names(value: object, _type: type) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(name.strip() for name in value.split(",") if name.strip())
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise ValueError(f"must be a comma-separated list of names, got {value!r}")


def _parse_overrides(value: object, _type: type) -> Mapping[str, Mapping[str, int]]:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError:
            raise ValueError("Failed to parse the overrides") from None
    if not isinstance(value, dict):
        raise ValueError("Failed to parse the overrides")
    overrides: dict[str, dict[str, int]] = {}
    for language, limits in value.items():
        if not isinstance(limits, dict) or not set(limits) <= set(LIMIT_KEYS):
            raise ValueError("Failed to parse the overrides")
        checked: dict[str, int] = {}
        for key, raw in limits.items():
            try:
                checked[key] = _check_limit(key, raw)
            except ValueError as exc:
                raise ValueError(f"In overridden option {key} for {language}, {exc}") from None
        overrides[language] = checked
    return overrides


def _check_limit(key: str, raw: object) -> int:
    """Parse and check one limit value as its global setting would be."""
    number = _parse_int(raw, int)
    attribute = getattr(attrs.fields(Limits), key)
    if attribute.validator is not None:
        try:
            attribute.validator(None, attribute, number)
        except ConfigError as exc:
            raise ValueError(exc.reason) from None
    return number


def _is_type(wanted: object) -> Callable[[object], bool]:
    def predicate(candidate: object) -> bool:
        return candidate == wanted

    return predicate


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(int, _parse_int)
    converter.register_structure_hook(bool, _parse_bool)
    converter.register_structure_hook(str, _parse_str)
    converter.register_structure_hook(Path, _parse_path)
    for generic, hook in (
        (Path | None, _parse_optional_path),
        (tuple[str, ...], _parse_names),
        (Mapping[str, Mapping[str, int]], _parse_overrides),
    ):
        converter.register_structure_hook_func(_is_type(generic), hook)
    return converter


_converter: Final = _make_converter()
_LIMIT_FIELDS: Final = frozenset(LIMIT_KEYS)
_CONFIG_FIELDS: Final = frozenset(a.name for a in attrs.fields(DaemonConfig)) - {"limits"}


def known_variables() -> frozenset[str]:
    """Every environment variable the configuration reads."""
    names = {variable_name(name) for name in _CONFIG_FIELDS | _LIMIT_FIELDS}
    return frozenset(names | {"PISTON_CONFIG"})


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """``PISTON_*`` variables in ``environ`` that no setting reads (probably typos)."""
    known = known_variables()
    return sorted(name for name in environ if name.startswith(ENV_PREFIX) and name not in known)


def read_toml(path: Path) -> dict[str, Any]:
    """Settings from a TOML file; its keys are the lower-case names without ``PISTON_``."""
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError("PISTON_CONFIG", f"no such file: {path}") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError("PISTON_CONFIG", f"cannot read {path}: {exc}") from None
    unknown = sorted(set(data) - _CONFIG_FIELDS - _LIMIT_FIELDS)
    if unknown:
        raise ConfigError("PISTON_CONFIG", f"{path}: unknown setting {unknown[0]!r}")
    return data


def load_config(
    environ: Mapping[str, str],
    config_file: Path | None = None,
) -> DaemonConfig:
    """Build the configuration from a TOML file (optional) and the environment.

    Args:
        environ: the process environment (``os.environ``).
        config_file: TOML file given with ``--config``; defaults to ``PISTON_CONFIG``.

    Raises:
        ConfigError: a setting has a bad value; its ``variable`` names it.
    """
    if config_file is None and environ.get("PISTON_CONFIG"):
        config_file = Path(environ["PISTON_CONFIG"])
    settings: dict[str, Any] = read_toml(config_file) if config_file else {}
    for name in _CONFIG_FIELDS | _LIMIT_FIELDS:
        variable = variable_name(name)
        if variable in environ:
            settings[name] = environ[variable]
    if "bind_address" not in settings and environ.get("PORT"):
        settings["bind_address"] = f"0.0.0.0:{environ['PORT']}"
    raw: dict[str, Any] = {k: v for k, v in settings.items() if k in _CONFIG_FIELDS}
    raw["limits"] = {k: v for k, v in settings.items() if k in _LIMIT_FIELDS}
    try:
        return _converter.structure(raw, DaemonConfig)
    except ClassValidationError as exc:
        raise _first_failure(exc) from None


def _first_failure(error: BaseException) -> ConfigError:
    """The first leaf of a cattrs validation error group, as a ConfigError naming its field."""
    field = ""
    while isinstance(error, BaseExceptionGroup):
        inner = error.exceptions[0]
        for note in getattr(inner, "__notes__", []):
            name = getattr(note, "name", None)
            if isinstance(name, str):
                field = name
        error = inner
    if isinstance(error, ConfigError):
        return error
    return ConfigError(variable_name(field), str(error))


def resolve_admin_group(config: DaemonConfig) -> int | None:
    """The gid whose members (besides root) may change packages; None: root only.

    Raises:
        ConfigError: ``PISTON_ADMIN_GROUP`` names a group that does not exist.
    """
    if not config.admin_group:
        return resolve_socket_group(config)
    return _group_id("PISTON_ADMIN_GROUP", config.admin_group)


def _group_id(variable: str, name: str) -> int:
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise ConfigError(variable, f"no such group: {name!r}") from None


def resolve_socket_group(config: DaemonConfig) -> int | None:
    """The gid the RPC socket belongs to, or None to leave it to root's group.

    Raises:
        ConfigError: ``PISTON_SOCKET_GROUP`` names a group that does not exist.
    """
    name = config.socket_group
    if not name:
        try:
            return grp.getgrnam("pistond").gr_gid
        except KeyError:
            return None
    return _group_id("PISTON_SOCKET_GROUP", name)
