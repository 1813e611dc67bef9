"""The gateway's settings for keys, rate limits, proxies, CORS and the audit log: parsing,
their one-line errors, what the app gets, and a key file that stops the start."""

from __future__ import annotations

import socket
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from pistond.config import load_config
from pistond.errors import ConfigError
from pistond.gateway.__main__ import gateway_settings, open_key_store
from pistond.gateway.keydb import DatabaseKeyStore
from pistond.gateway.keyfile import FileKeyStore

if TYPE_CHECKING:
    from pathlib import Path


def test_settings_reach_the_app() -> None:
    """Every new variable arrives in GatewaySettings; keys are off and no rate limit by default."""
    defaults = load_config({})
    assert defaults.gateway_api_keys == "off"
    assert open_key_store(defaults) is None
    default_app = gateway_settings(defaults)
    assert (default_app.rate_limit, default_app.cors_origins, default_app.audit_log) == (
        0,
        (),
        True,
    )
    config = load_config(
        {
            "PISTON_GATEWAY_RATE_LIMIT": "120",
            "PISTON_GATEWAY_RATE_BURST": "10",
            "PISTON_GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1",
            "PISTON_GATEWAY_CORS_ORIGINS": "https://a.example, *",
            "PISTON_GATEWAY_AUDIT_LOG": "off",
        }
    )
    app = gateway_settings(config)
    assert (app.rate_limit, app.rate_burst) == (120, 10)
    assert app.trusted_proxies == ("10.0.0.0/8", "127.0.0.1")
    assert app.cors_origins == ("https://a.example", "*")
    assert app.audit_log is False


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"PISTON_GATEWAY_API_KEYS": "on"},
            "PISTON_GATEWAY_API_KEYS: must be off, file or database",
        ),
        (
            {"PISTON_GATEWAY_API_KEYS_FILE": "keys.toml"},
            "PISTON_GATEWAY_API_KEYS_FILE: must be an absolute path",
        ),
        ({"PISTON_GATEWAY_RATE_LIMIT": "-5"}, "PISTON_GATEWAY_RATE_LIMIT: cannot be negative"),
        (
            {"PISTON_GATEWAY_TRUSTED_PROXIES": "proxy.lan"},
            "PISTON_GATEWAY_TRUSTED_PROXIES: entries are",
        ),
        (
            {"PISTON_GATEWAY_CORS_ORIGINS": "editor.example"},
            "PISTON_GATEWAY_CORS_ORIGINS: entries are",
        ),
        (
            {"PISTON_GATEWAY_CORS_ORIGINS": "https://a.example/app"},
            "PISTON_GATEWAY_CORS_ORIGINS: entries are",
        ),
    ],
)
def test_settings_bad_values_name_the_variable(environ: dict[str, str], message: str) -> None:
    """A bad value stops the start with the variable and the reason."""
    with pytest.raises(ConfigError) as refused:
        load_config(environ)
    assert str(refused.value).startswith(message)


def test_settings_key_stores(tmp_path: Path) -> None:
    """file: the key file (missing means no keys yet); database: the submissions database;
    an invalid file is a ConfigError naming the variable and the file."""
    path = tmp_path / "api-keys.toml"
    store = open_key_store(
        load_config({"PISTON_GATEWAY_API_KEYS": "file", "PISTON_GATEWAY_API_KEYS_FILE": str(path)})
    )
    assert isinstance(store, FileKeyStore)
    assert store.keys == {}
    database = open_key_store(
        load_config(
            {
                "PISTON_GATEWAY_API_KEYS": "database",
                "PISTON_DATABASE_URL": f"sqlite:///{tmp_path}/s.sqlite3",
            }
        )
    )
    assert isinstance(database, DatabaseKeyStore)
    assert database.description == f"sqlite:///{tmp_path}/s.sqlite3"
    path.write_text("[keys.x]")
    with pytest.raises(ConfigError) as refused:
        open_key_store(
            load_config(
                {"PISTON_GATEWAY_API_KEYS": "file", "PISTON_GATEWAY_API_KEYS_FILE": str(path)}
            )
        )
    assert str(refused.value).startswith(f"PISTON_GATEWAY_API_KEYS_FILE: {path}: keys.x")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_settings_invalid_key_file_stops_the_gateway(tmp_path: Path) -> None:
    """The gateway exits 2 with one line when its key file is invalid."""
    path = tmp_path / "api-keys.toml"
    path.write_text("not toml [")
    completed = subprocess.run(
        [sys.executable, "-m", "pistond.gateway", "--allow-root"],
        env={
            "PATH": "/usr/bin:/bin",
            "PISTON_GATEWAY_API_KEYS": "file",
            "PISTON_GATEWAY_API_KEYS_FILE": str(path),
            "PISTON_BIND_ADDRESS": f"127.0.0.1:{_free_port()}",
            "PISTON_GATEWAY_DATA_DIRECTORY": str(tmp_path / "data"),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert f"PISTON_GATEWAY_API_KEYS_FILE: {path}: not valid TOML" in completed.stderr
