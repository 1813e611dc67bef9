"""The builder: host and Debian recipes built, jailed .env, atomic publication."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import urllib.parse
from typing import TYPE_CHECKING

import pytest

from pistond.errors import PackageError
from pistond.ppman import aptsources
from pistond.ppman.build import Builder, compute_env, prepare_root
from pistond.ppman.layout import PackageLayout, installed_packages, parse_env
from pistond.ppman.recipes import load_recipe

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.usefixtures("needs_jail")


def debian_reachable() -> str | None:
    """Why a Debian build cannot run here, or None."""
    if shutil.which("mmdebstrap") is None and shutil.which("apt-get") is None:
        return "neither mmdebstrap nor apt-get is installed"
    sources = aptsources.host_sources()
    if not sources:
        return "the host has no Debian apt sources"
    address = urllib.parse.urlsplit(sources[0].uri)
    try:
        socket.create_connection((address.hostname, address.port or 80), timeout=5).close()
    except OSError as exc:
        return f"the host's Debian mirror is unreachable: {exc}"
    return None


def test_build_host_recipe_publishes(
    tmp_path: Path, recipe: Callable[..., Path], host_bash: str
) -> None:
    """A host recipe builds into packages/<pkg>/<version> with .env, pkg-info and the marker."""
    source = recipe(tmp_path / "recipes", "bash", "host", host_bash, files={"test.sh": "echo OK"})
    lines: list[str] = []
    packages = tmp_path / "packages"
    layout = Builder(packages, lines.append).build(load_recipe(source), "5.2.15")
    assert layout.is_installed()
    assert not layout.root.exists()
    env = parse_env(layout.env_file.read_text())
    assert env["PATH"] == "/piston/packages/bash/5.2.15/bin:/usr/bin:/bin"
    assert env["X_RECIPE"] == "1"
    assert not {"HOME", "PWD", "SHLVL", "_"} & set(env)
    info = json.loads(layout.pkg_info.read_text())
    assert info["version"] == "5.2.15"
    assert info["source"] == {
        "host": {
            "binaries": ["/bin/bash"],
            "version_command": info["source"]["host"]["version_command"],
        }
    }
    assert "/bin/bash" in info["resolved"]["binaries"]
    assert json.loads(layout.metadata.read_text())["version"] == "5.2.15"
    assert (layout.directory / "test.sh").is_file()
    assert list((packages / ".build").iterdir()) == []
    assert lines[-1] == "installed bash-5.2.15"
    with pytest.raises(PackageError, match="Already installed"):
        Builder(packages, lines.append).build(load_recipe(source), "5.2.15")


def test_build_environment_failure_leaves_nothing(
    tmp_path: Path, recipe: Callable[..., Path], host_bash: str
) -> None:
    """A failing environment script fails the build and removes every trace of it."""
    source = recipe(tmp_path / "recipes", "bash", "host", host_bash)
    (source / "environment").write_text("echo broken >&2; exit 3\n")
    packages = tmp_path / "packages"
    with pytest.raises(PackageError, match="environment script failed"):
        Builder(packages, lambda _line: None).build(load_recipe(source), "5.2.15")
    assert not (packages / "bash").exists()
    assert list((packages / ".build").iterdir()) == []


def test_build_env_runs_jailed(tmp_path: Path) -> None:
    """environment runs as nobody, without network or host environment, at the Piston path."""
    layout = PackageLayout.of(tmp_path, "probe", "1.0.0")
    layout.directory.mkdir(parents=True)
    (layout.directory / "environment").write_text(
        "export WHO=$(id -u) CWD=$PWD NET=$(ls /sys/class/net 2>/dev/null | wc -l)\n"
        "export SEEN=${SECRET_TOKEN:-none}\n"
    )
    staging = tmp_path / "stage"
    staging.mkdir()
    os.environ["SECRET_TOKEN"] = "leak"
    try:
        env = compute_env(layout, staging)
    finally:
        del os.environ["SECRET_TOKEN"]
    assert env["WHO"] == "65534"
    assert env["CWD"] == "/piston/packages/probe/1.0.0"
    assert env["SEEN"] == "none"
    assert env["NET"] == "0"


def test_build_prepare_root_refuses_symlinked_mount_point(tmp_path: Path) -> None:
    """Mount points are created without following symlinks; a symlinked one is refused."""
    layout = PackageLayout.of(tmp_path, "x", "1.0.0")
    (layout.root / "usr").mkdir(parents=True)
    (layout.root / "usr" / "su").write_text("")
    (layout.root / "usr" / "su").chmod(0o4755)
    prepare_root(layout)
    assert (layout.root / "piston/packages/x/1.0.0").is_dir()
    assert (layout.root / "usr" / "su").stat().st_mode & 0o7777 == 0o755
    (layout.root / "piston").rename(layout.root / "moved")
    (layout.root / "piston").symlink_to(tmp_path)
    with pytest.raises(PackageError, match="not a plain directory"):
        prepare_root(layout)


@pytest.mark.slow
def test_build_unknown_debian_package_leaves_nothing(
    tmp_path: Path, recipe: Callable[..., Path]
) -> None:
    """A Debian recipe naming a package its suite lacks fails before mmdebstrap, leaving nothing."""
    reason = debian_reachable()
    if reason:
        pytest.skip(reason)
    source = recipe(
        tmp_path / "recipes",
        "nothing",
        "1.0.0",
        '[debian]\nsuite = "bookworm"\npackages = ["pistond-no-such-package"]\n',
    )
    packages = tmp_path / "packages"
    with pytest.raises(PackageError, match="bookworm has no package pistond-no-such-package"):
        Builder(packages, lambda _line: None, timeout=300).build(load_recipe(source), "1.0.0")
    assert not (packages / "nothing").exists()
    assert list((packages / ".build").iterdir()) == []


@pytest.mark.slow
def test_build_small_debian_root(tmp_path: Path, recipe: Callable[..., Path]) -> None:
    """A real bookworm build of lua: root, recorded debs with sha256, mount points, warm run."""
    reason = debian_reachable()
    if reason:
        pytest.skip(reason)
    source = recipe(
        tmp_path / "recipes",
        "lua",
        "5.4.4",
        '[debian]\nsuite = "bookworm"\npackages = ["lua5.4"]\n'
        '[build]\nwarm = [["/usr/bin/lua5.4", "-e",\n'
        "  \"io.open('/opt/warm', 'w'):write('ok')\"]]\n",
    )
    (source / "run").write_text('/usr/bin/lua5.4 "$@"\n')
    packages = tmp_path / "packages"
    layout = Builder(packages, lambda _line: None, timeout=300).build(load_recipe(source), "5.4.4")
    try:
        root = layout.root
        assert (root / "usr/bin/lua5.4").exists()
        assert (root / "opt/warm").read_text() == "ok"
        # No manual pages are unpacked; maintainer scripts may still leave links (dash's sh.1.gz).
        assert not [page for page in (root / "usr/share/man").rglob("*") if page.is_file()]
        for mount_point in ("proc", "dev", "tmp", "box", "piston/packages/lua/5.4.4"):
            assert (root / mount_point).is_dir()
        assert not [
            entry
            for entry in (root / "dev").rglob("*")
            if stat.S_ISCHR(entry.lstat().st_mode) or stat.S_ISBLK(entry.lstat().st_mode)
        ]
        resolved = json.loads(layout.pkg_info.read_text())["resolved"]["debian"]
        lua = next(item for item in resolved if item["package"] == "lua5.4")
        assert len(lua["sha256"]) == 64
        assert not list((root / "var/cache/apt/archives").glob("*.deb"))
        assert [p.package for p in installed_packages(packages)] == ["lua"]
    finally:
        from pistond.ppman.fstree import remove_tree  # noqa: PLC0415

        remove_tree(packages)


def test_build_sdists_must_be_pure_python(tmp_path: Path) -> None:
    """A distribution a recipe lets pip build from source must have built a pure wheel."""
    from pistond.ppman.build import check_pure_sdists  # noqa: PLC0415

    (tmp_path / "docopt-0.6.2.dist-info").mkdir()
    (tmp_path / "docopt-0.6.2.dist-info" / "WHEEL").write_text("Root-Is-Purelib: true\n")
    report = {"install": [{"metadata": {"name": "docopt"}}]}
    check_pure_sdists(tmp_path, ["docopt"], report)
    (tmp_path / "fastthing-1.0.dist-info").mkdir()
    (tmp_path / "fastthing-1.0.dist-info" / "WHEEL").write_text("Root-Is-Purelib: false\n")
    with pytest.raises(PackageError, match="fastthing is not pure Python"):
        check_pure_sdists(tmp_path, ["docopt", "FastThing"], report)


def test_build_extension_modules_must_suit_the_root_python(tmp_path: Path) -> None:
    """Extension modules for the daemon's Python are refused in a root with another python3."""
    import sys  # noqa: PLC0415

    from pistond.ppman.build import check_python_abi  # noqa: PLC0415

    opt, root = tmp_path / "opt", tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    opt.mkdir()
    tag = f"cpython-{sys.version_info.major}{sys.version_info.minor}"
    (opt / f"fast.{tag}-x86_64-linux-gnu.so").write_text("")
    check_python_abi(opt, root)  # no python3 in the root: nothing to break
    (root / "usr" / "bin" / "python3").write_text("")
    (root / "usr" / "bin" / "python3.2").write_text("")
    with pytest.raises(PackageError, match="extension modules for Python"):
        check_python_abi(opt, root)
    (root / "usr" / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}").write_text(
        ""
    )
    check_python_abi(opt, root)
