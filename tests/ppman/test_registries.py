"""Registry trust: pip and npm in the build jail reach a private-CA registry as the host does.

The registry is a stand-in on loopback (tests/ppman/registry_standin.py) whose certificate comes
from a CA made for the test, as a private mirror or a TLS-intercepting proxy would present.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pistond.errors import PackageError
from pistond.ppman import registries
from pistond.ppman.build import Builder
from pistond.ppman.layout import PackageLayout
from pistond.ppman.recipes import PypiSource

from .registry_standin import (
    PrivateCA,
    make_private_ca,
    npm_tarball,
    pure_wheel,
    serve_registry,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .registry_standin import Registry


@pytest.fixture(scope="module")
def private_ca(tmp_path_factory: pytest.TempPathFactory) -> PrivateCA:
    """A CA of the test's own and a server certificate for 127.0.0.1."""
    return make_private_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def registry(private_ca: PrivateCA) -> Iterator[Registry]:
    """The HTTPS registry stand-in, serving nothing yet."""
    with serve_registry(private_ca) as served:
        yield served


def test_registries_host_environment_carried_and_nothing_else(tmp_path: Path) -> None:
    """Proxies, CA variables and npm_config_* pass on; their files are bound; secrets do not."""
    bundle = tmp_path / "corp-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    environ = {
        "PATH": "/usr/bin:/bin",
        "https_proxy": "http://127.0.0.1:3128",
        "NODE_EXTRA_CA_CERTS": str(bundle),
        "SSL_CERT_DIR": "/etc/ssl/certs",
        "npm_config_strict_ssl": "true",
        "npm_config_userconfig": "/root/.npmrc",
        "AWS_SECRET_ACCESS_KEY": "do-not-carry",
        "PIP_INDEX_URL": "https://127.0.0.1:1/simple/",
    }
    host = registries.read_host_registries(environ)
    expected = {
        "https_proxy": "http://127.0.0.1:3128",
        "NODE_EXTRA_CA_CERTS": registries.HOST_TARGET + str(bundle),
        "SSL_CERT_DIR": "/etc/ssl/certs",
        "npm_config_strict_ssl": "true",
    }
    assert expected.items() <= host.env.items()
    # The rest can only be the host npm's own certificate files, at their jail paths.
    assert set(host.env) - set(expected) <= {
        f"npm_config_{key}" for key in registries.NPM_PATH_KEYS
    }
    assert str(bundle) in host.paths
    assert "npm_config_userconfig" not in host.env  # the jail names its own copy
    assert "/etc/ssl/certs" not in host.paths  # every host-view jail shows it already
    assert "index-url = https://127.0.0.1:1/simple/" in host.pip_config.splitlines()
    assert "do-not-carry" not in repr(host)


def test_registries_pip_local_locations_are_bound(tmp_path: Path) -> None:
    """file:// indexes, find-links directories, cert and constraint files are bound read-only."""
    (tmp_path / "index" / "simple").mkdir(parents=True)
    (tmp_path / "wheels").mkdir()
    (tmp_path / "constraints.txt").write_text("")
    environ = {
        "PATH": "/usr/bin:/bin",
        "PIP_EXTRA_INDEX_URL": (tmp_path / "index" / "simple").as_uri(),
        "PIP_FIND_LINKS": str(tmp_path / "wheels"),
        "PIP_CONSTRAINT": str(tmp_path / "constraints.txt"),
        "PIP_TARGET": "/somewhere/else",
    }
    host = registries.read_host_registries(environ)
    for name in ("index", "wheels", "constraints.txt"):  # an index with the files beside it
        assert str(tmp_path / name) in host.paths
    assert "target" not in host.pip_config
    jail = registries.HOST_TARGET + str(tmp_path)
    assert f"find-links = {jail}/wheels" in host.pip_config.splitlines()
    assert f"extra-index-url = file://{jail}/index/simple" in host.pip_config.splitlines()
    assert f"constraint = {jail}/constraints.txt" in host.pip_config.splitlines()
    binds = registries.config_binds(host, tmp_path / "etc")
    assert binds[0].target == registries.CONFIG_TARGET
    assert {bind.source: bind.target for bind in binds[1:]}[str(tmp_path / "wheels")] == (
        f"{jail}/wheels"
    )
    assert not any(bind.writable for bind in binds)


@pytest.mark.usefixtures("needs_jail")
def test_registries_config_files_only_for_the_jail_user(tmp_path: Path) -> None:
    """Generated configs are 0600 files of the jail's uid, in a directory of its own."""
    host = registries.HostRegistries({}, (), "[global]\n", "//reg/:_authToken=secret\n", "")
    env = registries.write_configs(host, tmp_path / "etc", 65534)
    for name in ("pip.conf", "npmrc", "npmrc-global"):
        info = (tmp_path / "etc" / name).lstat()
        assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o600, 65534)
    assert env["NPM_CONFIG_USERCONFIG"] == f"{registries.CONFIG_TARGET}/npmrc"
    assert (tmp_path / "etc" / "npmrc").read_text() == "//reg/:_authToken=secret\n"


def _target(tmp_path: Path) -> tuple[Path, PackageLayout, Path]:
    layout = PackageLayout(tmp_path / "package", "probe", "1.0.0")
    opt = layout.root / "opt" / "probe"
    opt.mkdir(parents=True)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return opt, layout, scratch


def _builder(tmp_path: Path, environ: dict[str, str], lines: list[str]) -> Builder:
    return Builder(tmp_path / "packages", lines.append, timeout=120, environ=environ)


def _npmrc(tmp_path: Path, registry: Registry, cafile: Path | None) -> dict[str, str]:
    """A host npm user configuration naming the stand-in (and, when given, its CA)."""
    npmrc = tmp_path / "host-npmrc"
    lines = [f"registry={registry.url}/"]
    if cafile is not None:
        lines.append(f"cafile={cafile}")
    else:
        lines.append("fetch-retries=0")  # fail at once: the certificate will never verify
    npmrc.write_text("\n".join(lines) + "\n")
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NPM_CONFIG_USERCONFIG": str(npmrc)}


@pytest.mark.usefixtures("needs_jail")
def test_registries_npm_in_jail_trusts_the_host_private_ca(
    tmp_path: Path, registry: Registry, private_ca: PrivateCA
) -> None:
    """npm in the jail installs from the private-CA registry the host's npmrc names; the files
    land in /opt/<package> owned by root, and no registry configuration lands in the root."""
    name = registry.add_npm_tarball(npm_tarball("pistond-probe", "1.0.0", {"index.js": "1;"}))
    opt, layout, scratch = _target(tmp_path)
    lines: list[str] = []
    builder = _builder(tmp_path, _npmrc(tmp_path, registry, private_ca.ca), lines)
    resolved = builder.npm_install(opt, [f"{name}@1.0.0"], layout, scratch)
    assert (opt / "node_modules" / name / "index.js").read_text() == "1;"
    assert {"path": f"node_modules/{name}", "version": "1.0.0"}.items() <= resolved[0].items()
    assert all(path.lstat().st_uid == 0 for path in [opt, *opt.rglob("*")])
    assert not [path for path in layout.root.rglob("*npmrc*")]
    assert f"/{name}" in registry.requests


@pytest.mark.usefixtures("needs_jail")
def test_registries_npm_without_the_ca_is_refused(tmp_path: Path, registry: Registry) -> None:
    """Without the host's CA setting the same install fails on the certificate: trust is real."""
    name = registry.add_npm_tarball(npm_tarball("pistond-probe", "1.0.0", {"index.js": "1;"}))
    opt, layout, scratch = _target(tmp_path)
    lines: list[str] = []
    builder = _builder(tmp_path, _npmrc(tmp_path, registry, None), lines)
    with pytest.raises(PackageError, match="npm failed"):
        builder.npm_install(opt, [f"{name}@1.0.0"], layout, scratch)
    assert any("CERT" in line or "certificate" in line for line in lines)


@pytest.mark.usefixtures("needs_jail")
@pytest.mark.parametrize("trusted", [True, False])
def test_registries_pip_in_jail_trusts_the_host_cert_setting(
    tmp_path: Path, registry: Registry, private_ca: PrivateCA, *, trusted: bool
) -> None:
    """pip in the jail installs from the private-CA index named by PIP_INDEX_URL when PIP_CERT
    names the CA, and fails on the certificate when it does not."""
    wheel_name, wheel = pure_wheel("pistond_probe", "1.0.0", "VALUE = 'OK'\n")
    registry.add_wheel("pistond-probe", wheel_name, wheel)
    opt, layout, scratch = _target(tmp_path)
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PIP_INDEX_URL": f"{registry.url}/simple/",
        "PIP_NO_INDEX": "",
        "PIP_FIND_LINKS": "",
        "PIP_EXTRA_INDEX_URL": "",
    }
    if trusted:
        environ["PIP_CERT"] = str(private_ca.ca)
    else:
        environ["PIP_RETRIES"] = "0"  # fail at once: the certificate will never verify
    lines: list[str] = []
    source = PypiSource(requirement="pistond-probe==1.0.0")
    builder = _builder(tmp_path, environ, lines)
    if not trusted:
        with pytest.raises(PackageError, match="pip failed"):
            builder.pip_install(opt, source, layout, scratch)
        assert any("CERTIFICATE_VERIFY_FAILED" in line for line in lines)
        return
    resolved = builder.pip_install(opt, source, layout, scratch)
    assert (opt / "pistond_probe.py").read_text() == "VALUE = 'OK'\n"
    assert resolved[0]["name"] == "pistond_probe"
    assert resolved[0]["version"] == "1.0.0"
    assert all(path.lstat().st_uid == 0 for path in [opt, *opt.rglob("*")])
    assert f"/files/{wheel_name}" in registry.requests
    assert sys.prefix  # the daemon's own interpreter ran pip (bound read-only into the jail)


def test_registries_interpreter_in_tmp_appears_below_the_host_target(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A venv the jail's own /tmp would hide is bound, and run, below HOST_TARGET; one outside
    the jail's mounts keeps its path (its links to a base interpreter stay valid)."""
    venv = os.path.join(os.path.realpath("/tmp"), "pistond-ci", ".venv")
    monkeypatch.setattr(sys, "prefix", venv)
    monkeypatch.setattr(sys, "exec_prefix", venv)
    monkeypatch.setattr(sys, "base_prefix", "/opt/python3.11")
    monkeypatch.setattr(sys, "executable", f"{venv}/bin/python")
    assert [(b.source, b.target, b.writable) for b in registries.python_binds()] == [
        (venv, registries.HOST_TARGET + venv, False),
        ("/opt/python3.11", "/opt/python3.11", False),
    ]
    assert registries.python_executable() == f"{registries.HOST_TARGET}{venv}/bin/python"
