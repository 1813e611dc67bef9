"""The built-in packages plugin: metadata loading and runtimes of installed packages."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from pistond_packages import pistond_runtimes
from pistond_packages.runtime import direct_run

from pistond.config import DaemonConfig
from pistond.ppman.layout import PackageLayout, format_env, installed_packages, parse_env
from pistond.ppman.metadata import MetadataError, load_metadata
from pistond.testing.conformance import check_runtime

if TYPE_CHECKING:
    from pathlib import Path

LUA: dict[str, Any] = {"language": "lua", "version": "5.4.4"}
GCC: dict[str, Any] = {
    "language": "gcc",
    "version": "12.2.0",
    "aliases": [],
    "provides": [
        {"language": "c", "aliases": ["gcc"]},
        {"language": "c++", "aliases": ["cpp", "g++"], "limit_overrides": {"run_timeout": 5000}},
    ],
}


def install(
    packages: Path,
    metadata: dict[str, Any],
    *,
    compiled: bool = False,
    marker: bool = True,
    root: bool = False,
    source: str = "debian",
) -> PackageLayout:
    layout = PackageLayout.of(packages, metadata["language"], metadata["version"])
    layout.directory.mkdir(parents=True)
    layout.metadata.write_text(json.dumps(metadata))
    (layout.directory / "run").write_text("#!/bin/bash\n")
    if compiled:
        (layout.directory / "compile").write_text("#!/bin/bash\n")
    if root:
        (layout.root / "bin").mkdir(parents=True)
        (layout.root / "bin" / "bash").write_text("")
    layout.pkg_info.write_text(json.dumps({"source": {source: {}}}))
    layout.env_file.write_text("PATH=/usr/local/bin:/usr/bin:/bin\nLANG=C.UTF-8\n")
    if marker:
        layout.marker.write_text("1700000000000")
    return layout


@pytest.fixture
def config(tmp_path: Path) -> DaemonConfig:
    return DaemonConfig(data_directory=tmp_path)


def write_metadata(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_packages_metadata_loads_piston_schema(tmp_path: Path) -> None:
    """A Piston metadata.json with provides and limit_overrides loads field by field."""
    metadata = load_metadata(write_metadata(tmp_path / "metadata.json", GCC))
    assert (metadata.language, metadata.version) == ("gcc", "12.2.0")
    assert [entry.language for entry in metadata.languages()] == ["c", "c++"]
    assert metadata.provides[1].limit_overrides == {"run_timeout": 5000}
    assert metadata.to_json()["provides"][1]["aliases"] == ["cpp", "g++"]


def test_packages_metadata_version_override(tmp_path: Path) -> None:
    """Host recipes get their detected version in place of the file's placeholder."""
    path = write_metadata(tmp_path / "metadata.json", {"language": "bash", "version": "host"})
    assert load_metadata(path, version="5.2.15").version == "5.2.15"
    with pytest.raises(MetadataError, match="version must be a semantic version"):
        load_metadata(path)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ([], "must be a JSON object"),
        ({"version": "1.0.0"}, "language must be a name"),
        ({"language": "../x", "version": "1.0.0"}, "language must be a name"),
        ({"language": "x", "version": "1.0"}, "version must be a semantic version"),
        (
            {"language": "x", "version": "1.0.0", "aliases": "x"},
            "aliases must be a list of strings",
        ),
        (
            {"language": "x", "version": "1.0.0", "aliases": [1]},
            "aliases must be a list of strings",
        ),
        ({"language": "x", "version": "1.0.0", "provides": {}}, "provides must be a list"),
        ({"language": "x", "version": "1.0.0", "provides": [1]}, r"provides\[0\] must be"),
        (
            {"language": "x", "version": "1.0.0", "provides": [{"language": "y", "aliases": 3}]},
            r"provides\[0\].aliases must be a list of strings",
        ),
        (
            {"language": "x", "version": "1.0.0", "limit_overrides": {"memory": 1}},
            "limit_overrides.memory is not a limit",
        ),
        (
            {"language": "x", "version": "1.0.0", "limit_overrides": {"run_timeout": "1"}},
            "limit_overrides.run_timeout must be an integer",
        ),
    ],
)
def test_packages_metadata_errors_name_the_file(tmp_path: Path, data: object, reason: str) -> None:
    """Every schema violation is a MetadataError starting with the file's path."""
    path = write_metadata(tmp_path / "metadata.json", data)
    with pytest.raises(MetadataError, match=reason) as caught:
        load_metadata(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_packages_metadata_unreadable_and_bad_json(tmp_path: Path) -> None:
    """Missing files and malformed JSON are reported with the path too."""
    missing = tmp_path / "nope" / "metadata.json"
    with pytest.raises(MetadataError, match=f"^{missing}: cannot read"):
        load_metadata(missing)
    bad = tmp_path / "metadata.json"
    bad.write_text("{")
    with pytest.raises(MetadataError, match=f"^{bad}: invalid JSON"):
        load_metadata(bad)


def test_packages_runtimes_one_per_provides(config: DaemonConfig) -> None:
    """A provides package yields one compiled runtime per entry, its package as `runtime`."""
    layout = install(config.packages_directory, GCC, compiled=True, root=True)
    runtimes = pistond_runtimes(config=config)
    assert [(r.language, r.package, r.compiled) for r in runtimes] == [
        ("c", "gcc", True),
        ("c++", "gcc", True),
    ]
    cpp = runtimes[1]
    assert cpp.compile_argv == ("/bin/bash", "/piston/packages/gcc/12.2.0/compile")
    assert cpp.run_argv == ("/bin/bash", "/piston/packages/gcc/12.2.0/run")
    assert cpp.root.path == str(layout.root)
    assert [(b.source, b.target, b.writable) for b in cpp.root.binds] == [
        (str(layout.directory), "/piston/packages/gcc/12.2.0", False)
    ]
    assert cpp.env == {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    assert cpp.limit_overrides == {"run_timeout": 5000}
    for runtime in runtimes:
        check_runtime(runtime)


def test_packages_run_script_that_only_execs_runs_its_program(config: DaemonConfig) -> None:
    """A run script of comments and one plain ``exec /abs "$@"`` is skipped; others are not."""
    layout = install(config.packages_directory, LUA, root=True)
    (layout.root / "usr" / "bin").mkdir(parents=True)
    executable(layout.root / "usr" / "bin" / "lua5.4")
    (layout.directory / "run").write_text(
        '#!/usr/bin/env bash\n# Lua\n\nexec /usr/bin/lua5.4 -W "$@"\n'
    )
    (runtime,) = pistond_runtimes(config=config)
    assert runtime.run_argv == ("/usr/bin/lua5.4", "-W")
    (layout.directory / "run").write_text('#!/bin/bash\nset -e\nexec /usr/bin/lua5.4 "$@"\n')
    (runtime,) = pistond_runtimes(config=config)
    assert runtime.run_argv == ("/bin/bash", "/piston/packages/lua/5.4.4/run")


@pytest.mark.parametrize(
    "script",
    [
        'exec /usr/bin/lua5.4 "$@" extra\n',
        'exec /usr/bin/lua5.4 "$1"\n',
        "exec /usr/bin/lua5.4 $@\n",
        'exec lua5.4 "$@"\n',
        'exec /usr/bin/lua5.4 $FLAGS "$@"\n',
        'exec /usr/bin/lua5.4 "-W" "$@"\n',
        'exec /usr/bin/lua5.4 *.lua "$@"\n',
        'exec /usr/bin/lua5.4 "$@"; echo done\n',
        'cd /tmp\nexec /usr/bin/lua5.4 "$@"\n',
        'exec /usr/bin/missing "$@"\n',
        'exec /usr/bin/lua5.4 "$@" \\\n  --more\n',
        "",
    ],
)
def test_packages_run_scripts_that_keep_their_bash(tmp_path: Path, script: str) -> None:
    """Anything but one plain exec of a program in the root keeps the script."""
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    executable(tmp_path / "usr" / "bin" / "lua5.4")
    assert direct_run('exec /usr/bin/lua5.4 "$@"\n', str(tmp_path)) == ("/usr/bin/lua5.4",)
    assert direct_run(script, str(tmp_path)) is None


def executable(path: Path, head: bytes = b"\x7fELF\x02\x01\x01", mode: int = 0o755) -> Path:
    """A file starting with ``head`` (an ELF header by default) with ``mode``."""
    path.write_bytes(head)
    path.chmod(mode)
    return path


def test_packages_direct_run_follows_links_inside_the_root_only(tmp_path: Path) -> None:
    """Links resolve as in the sandbox (absolute targets from the root, ``..`` stops at it);
    a program must be an executable ELF or ``#!`` file there, else the script keeps bash."""
    root = tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "etc" / "alternatives").mkdir(parents=True)
    executable(root / "usr" / "bin" / "lua5.4")
    executable(root / "usr" / "bin" / "coffee", b"#!/usr/bin/node\n")
    executable(root / "usr" / "bin" / "plain", b"echo hi\n")
    executable(root / "usr" / "bin" / "data", mode=0o644)
    (root / "bin").symlink_to("usr/bin")
    (root / "etc" / "alternatives" / "lua").symlink_to("/usr/bin/lua5.4")
    (root / "usr" / "bin" / "lua").symlink_to("/etc/alternatives/lua")
    (root / "usr" / "bin" / "up").symlink_to("../../../../usr/bin/lua5.4")
    (root / "usr" / "bin" / "loop").symlink_to("loop")
    # A host program the root does not hold: a link must not reach it.
    (root / "usr" / "bin" / "host").symlink_to(str(tmp_path / "outside"))
    executable(tmp_path / "outside")
    for program in (
        "/usr/bin/lua5.4",
        "/bin/lua5.4",
        "/usr/bin/lua",
        "/usr/bin/up",
        "/usr/bin/coffee",
        "/usr/bin/../bin/lua5.4",
    ):
        assert direct_run(f'exec {program} "$@"', str(root)) == (program,), program
    for program in (
        "/usr/bin/plain",
        "/usr/bin/data",
        "/usr/bin/loop",
        "/usr/bin/host",
        "/usr/bin",
        "/usr/bin/missing",
    ):
        assert direct_run(f'exec {program} "$@"', str(root)) is None, program


def test_packages_runtime_for_plain_package(config: DaemonConfig) -> None:
    """A package without provides is one interpreted runtime named after it, no `runtime`."""
    install(
        config.packages_directory, {"language": "lua", "version": "5.4.4", "aliases": ["lua5.4"]}
    )
    (runtime,) = pistond_runtimes(config=config)
    assert (runtime.language, runtime.aliases, runtime.package) == ("lua", ("lua5.4",), None)
    assert runtime.compile_argv is None
    assert runtime.root.path is None


def test_packages_skips_uninstalled_and_broken(config: DaemonConfig) -> None:
    """No marker, no .env, a mismatched or broken metadata.json: skipped, never fatal."""
    packages = config.packages_directory
    install(packages, {"language": "a", "version": "1.0.0"}, marker=False)
    (install(packages, {"language": "b", "version": "1.0.0"}).env_file).unlink()
    wrong = install(packages, {"language": "c", "version": "1.0.0"})
    wrong.metadata.write_text(json.dumps({"language": "c", "version": "2.0.0"}))
    broken = install(packages, {"language": "d", "version": "1.0.0"})
    broken.metadata.write_text("{]")
    install(packages, {"language": "e", "version": "1.0.0"})
    (packages / ".build" / "x-1.0.0-abc").mkdir(parents=True)
    assert [r.language for r in pistond_runtimes(config=config)] == ["e"]
    assert [layout.package for layout in installed_packages(packages)] == ["c", "d", "e"]


def test_packages_host_runtimes_switch(tmp_path: Path) -> None:
    """With host_runtimes off, packages built from a host source are not offered."""
    config = DaemonConfig(data_directory=tmp_path, host_runtimes=False)
    install(config.packages_directory, {"language": "bash", "version": "5.2.15"}, source="host")
    install(config.packages_directory, {"language": "lua", "version": "5.4.4"})
    assert [r.language for r in pistond_runtimes(config=config)] == ["lua"]


def test_packages_env_roundtrip_rejects_multiline() -> None:
    """.env lines round-trip; names must be valid and values single-line."""
    env = {"PATH": "/a:/b", "X": "a=b c"}
    assert parse_env(format_env(env)) == env
    assert parse_env("not a line\n=x\n1A=b\nOK=1\n") == {"OK": "1"}
    with pytest.raises(ValueError, match="cannot store"):
        format_env({"X": "a\nb"})
