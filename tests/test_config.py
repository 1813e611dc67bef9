"""Configuration: PISTON_* variables, the TOML file, defaults and every error message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pistond.config import (
    DaemonConfig,
    Limits,
    as_variables,
    known_variables,
    load_config,
    resolve_admin_group,
    unknown_variables,
)
from pistond.errors import ConfigError


def test_config_defaults_match_piston() -> None:
    """With no settings, every Piston variable has Piston's default."""
    config = load_config({})
    assert config.limits == Limits(
        max_process_count=64,
        max_open_files=2048,
        max_file_size=10_000_000,
        compile_memory_limit=-1,
        run_memory_limit=-1,
        compile_timeout=10_000,
        run_timeout=3_000,
        compile_cpu_time=10_000,
        run_cpu_time=3_000,
        output_max_size=1024,
    )
    assert config.log_level == "INFO"
    assert config.bind_address == "0.0.0.0:2000"
    assert config.disable_networking is True
    assert config.max_concurrent_jobs == 64
    assert config.limit_overrides == {}
    assert config.socket == Path("/run/pistond/pistond.sock")
    assert config.data_directory == Path("/var/lib/pistond")
    assert (config.runner_uid_min, config.runner_uid_max) == (1001, 1500)


def test_config_reads_environment_values() -> None:
    """Each PISTON_* variable sets its field."""
    config = load_config(
        {
            "PISTON_RUN_TIMEOUT": "5000",
            "PISTON_MAX_CONCURRENT_JOBS": "8",
            "PISTON_SOCKET": "/tmp/p.sock",
            "PISTON_DISABLED_PLUGINS": "a, b",
            "PISTON_LIMIT_OVERRIDES": '{"c++": {"max_process_count": 128}}',
            "PISTON_RUN_MEMORY_LIMIT": "67108864",
        }
    )
    assert config.limits.run_timeout == 5000
    assert config.max_concurrent_jobs == 8
    assert config.socket == Path("/tmp/p.sock")
    assert config.disabled_plugins == ("a", "b")
    assert config.limit_overrides == {"c++": {"max_process_count": 128}}
    assert config.limits.run_memory_limit == 64 * 1024 * 1024


def test_config_port_sets_bind_address() -> None:
    """PORT gives the default bind address its port, as in Piston."""
    assert load_config({"PORT": "8080"}).bind_address == "0.0.0.0:8080"
    assert load_config({"PORT": "8080", "PISTON_BIND_ADDRESS": "127.0.0.1:9"}).bind_address == (
        "127.0.0.1:9"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("On", True),
        ("false", False),
        ("0", False),
        ("No", False),
        ("off", False),
    ],
)
def test_config_booleans_are_lenient(text: str, expected: bool) -> None:
    """Booleans accept true/false, 1/0, yes/no, on/off in any case (upstream D12)."""
    assert load_config({"PISTON_DISABLE_NETWORKING": text}).disable_networking is expected


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"PISTON_RUN_TIMEOUT": "abc"}, "PISTON_RUN_TIMEOUT: must be an integer, got 'abc'"),
        ({"PISTON_RUN_TIMEOUT": "3000ms"}, "PISTON_RUN_TIMEOUT: must be an integer, got '3000ms'"),
        ({"PISTON_RUN_TIMEOUT": "0"}, "PISTON_RUN_TIMEOUT: must be a positive integer, got 0"),
        (
            {"PISTON_COMPILE_CPU_TIME": "-5"},
            "PISTON_COMPILE_CPU_TIME: must be a positive integer, got -5",
        ),
        (
            {"PISTON_RUN_MEMORY_LIMIT": "-2"},
            "PISTON_RUN_MEMORY_LIMIT: must be a positive number of bytes or -1 (no limit), got -2",
        ),
        (
            {"PISTON_DISABLE_NETWORKING": "maybe"},
            "PISTON_DISABLE_NETWORKING: must be one of true/false, 1/0, yes/no, on/off, "
            "got 'maybe'",
        ),
        ({"PISTON_LOG_LEVEL": "LOUD"}, "PISTON_LOG_LEVEL: Log level LOUD does not exist"),
        (
            {"PISTON_BIND_ADDRESS": "localhost"},
            "PISTON_BIND_ADDRESS: must be host:port with a port from 1 to 65535, got 'localhost'",
        ),
        (
            {"PISTON_DATA_DIRECTORY": "relative/dir"},
            "PISTON_DATA_DIRECTORY: must be an absolute path, got 'relative/dir'",
        ),
        (
            {"PISTON_MAX_CONCURRENT_JOBS": "0"},
            "PISTON_MAX_CONCURRENT_JOBS: must be a positive integer, got 0",
        ),
        ({"PISTON_MAX_QUEUE_SIZE": "-1"}, "PISTON_MAX_QUEUE_SIZE: cannot be negative, got -1"),
        (
            {"PISTON_REPO_URL": "ftp://mirror/index"},
            "PISTON_REPO_URL: must be a file://, http:// or https:// URL, got 'ftp://mirror/index'",
        ),
        (
            {"PISTON_LIMIT_OVERRIDES": "{oops"},
            "PISTON_LIMIT_OVERRIDES: Failed to parse the overrides",
        ),
        (
            {"PISTON_LIMIT_OVERRIDES": '{"c": {"bogus_key": 1}}'},
            "PISTON_LIMIT_OVERRIDES: Failed to parse the overrides",
        ),
        (
            {"PISTON_LIMIT_OVERRIDES": '{"c": {"run_timeout": 0}}'},
            "PISTON_LIMIT_OVERRIDES: In overridden option run_timeout for c, "
            "must be a positive integer, got 0",
        ),
        (
            {"PISTON_BOX_UID_BASE": "2147483600"},
            "PISTON_BOX_UID_BASE: box uids up to 2147483664 do not fit in 31 bits",
        ),
    ],
)
def test_config_bad_value_names_variable_and_reason(environ: dict[str, str], message: str) -> None:
    """A bad value raises ConfigError whose text names the variable and the reason."""
    with pytest.raises(ConfigError) as caught:
        load_config(environ)
    assert str(caught.value) == message


def test_config_toml_file_and_environment_wins(tmp_path: Path) -> None:
    """TOML keys are the lower-case names; the environment overrides the file."""
    path = tmp_path / "pistond.toml"
    path.write_text('run_timeout = 4000\ncompile_timeout = 20000\nsocket = "/tmp/x.sock"\n')
    config = load_config({"PISTON_RUN_TIMEOUT": "1000"}, path)
    assert config.limits.run_timeout == 1000
    assert config.limits.compile_timeout == 20000
    assert config.socket == Path("/tmp/x.sock")
    via_env = load_config({"PISTON_CONFIG": str(path)})
    assert via_env.limits.run_timeout == 4000


def test_config_toml_errors_are_reported(tmp_path: Path) -> None:
    """An unknown key, a bad value type or a missing file are clear errors."""
    path = tmp_path / "bad.toml"
    path.write_text("run_timout = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'run_timout'"):
        load_config({}, path)
    path.write_text("run_timeout = true\n")
    with pytest.raises(ConfigError, match="PISTON_RUN_TIMEOUT: must be an integer"):
        load_config({}, path)
    with pytest.raises(ConfigError, match="no such file"):
        load_config({}, tmp_path / "missing.toml")


def test_config_unknown_variables_are_listed() -> None:
    """Misspelt PISTON_* variables are found, known ones are not."""
    environ = {"PISTON_RUN_TIMOUT": "1", "PISTON_RUN_TIMEOUT": "1", "PISTON_CONFIG": "x"}
    assert unknown_variables(environ) == ["PISTON_RUN_TIMOUT"]


def test_config_is_frozen() -> None:
    """The configuration cannot be changed after loading."""
    config = DaemonConfig()
    with pytest.raises(AttributeError):
        config.log_level = "DEBUG"


def test_config_daemon_exits_2_with_one_line() -> None:
    """`pistond` with a bad value exits with status 2 and prints one line naming it."""
    result = subprocess.run(
        [sys.executable, "-m", "pistond", "--check-config"],
        env={"PISTON_RUN_TIMEOUT": "soon", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "pistond: PISTON_RUN_TIMEOUT: must be an integer, got 'soon'"
    ]


def test_config_admin_group() -> None:
    """PISTON_ADMIN_GROUP names the package managers' group; an unknown group is an error."""
    assert resolve_admin_group(load_config({"PISTON_ADMIN_GROUP": "root"})) == 0
    assert resolve_admin_group(load_config({"PISTON_ADMIN_GROUP": "4242"})) == 4242
    with pytest.raises(ConfigError, match="PISTON_ADMIN_GROUP: no such group: 'no-such-group'"):
        resolve_admin_group(load_config({"PISTON_ADMIN_GROUP": "no-such-group"}))
    socket_group = load_config({"PISTON_SOCKET_GROUP": "root"})
    assert resolve_admin_group(socket_group) == 0


def test_config_gateway_settings() -> None:
    """The gateway's body limit and root switch are settings like the others."""
    config = load_config({"PISTON_MAX_BODY_SIZE": "2048", "PISTON_GATEWAY_ALLOW_ROOT": "yes"})
    assert (config.max_body_size, config.gateway_allow_root) == (2048, True)
    with pytest.raises(ConfigError, match="PISTON_MAX_BODY_SIZE: must be a positive integer"):
        load_config({"PISTON_MAX_BODY_SIZE": "0"})


def test_config_as_variables_round_trip() -> None:
    """as_variables writes every setting as the PISTON_* text that loads the same config."""
    config = load_config(
        {
            "PISTON_RUN_TIMEOUT": "1500",
            "PISTON_DISABLE_NETWORKING": "no",
            "PISTON_DISABLED_PLUGINS": "a, b",
            "PISTON_LIMIT_OVERRIDES": '{"python": {"run_timeout": 500}}',
            "PISTON_RECIPES_DIRECTORY": "/srv/recipes",
            "PISTON_GATEWAY_USER": "www-data:pistond",
        }
    )
    variables = as_variables(config)
    assert set(variables) == known_variables() - {"PISTON_CONFIG"}
    assert variables["PISTON_DISABLE_NETWORKING"] == "false"
    assert variables["PISTON_DISABLED_PLUGINS"] == "a,b"
    assert load_config(variables) == config
    assert load_config(as_variables(DaemonConfig())) == DaemonConfig()
