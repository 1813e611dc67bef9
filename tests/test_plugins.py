"""The plugin manager: built-in plugin, entry points, block list, and each hook."""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

import attrs
import pytest

from pistond import hookspecs
from pistond.config import DaemonConfig
from pistond.plugins import BUILTIN_PLUGINS, get_plugin_manager
from pistond.runtimes import Runtime, RuntimeRegistry
from pistond.sandbox.spec import Bind, RootView
from pistond.testing.conformance import check_runtime, runtime_problems

EXAMPLE_PLUGIN = Path(__file__).resolve().parents[1] / "contrib" / "example-plugin"


@pytest.fixture
def config(tmp_path: Path) -> DaemonConfig:
    return DaemonConfig(data_directory=tmp_path, recipes_directory=tmp_path / "recipes")


@pytest.fixture
def example_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example plugin's source plus a distribution declaring its entry point, on sys.path."""
    site = tmp_path / "site"
    dist_info = site / "pistond_cowsay-1.0.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: pistond-cowsay\nVersion: 1.0.0\n"
    )
    (dist_info / "entry_points.txt").write_text("[pistond]\ncowsay = pistond_cowsay\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGIN / "src"))
    yield
    sys.modules.pop("pistond_cowsay", None)


def install_lua(config: DaemonConfig) -> None:
    directory = config.packages_directory / "lua" / "5.4.4"
    directory.mkdir(parents=True)
    (directory / "metadata.json").write_text(json.dumps({"language": "lua", "version": "5.4.4"}))
    (directory / "run").write_text('lua5.4 "$@"\n')
    (directory / ".env").write_text("PATH=/usr/bin:/bin\n")
    (directory / ".ppman-installed").write_text("1")


def test_plugins_builtin_registered(config: DaemonConfig) -> None:
    """The built-in packages plugin is registered once, under its entry-point name."""
    manager = get_plugin_manager(config)
    assert set(BUILTIN_PLUGINS) <= {name for name, _ in manager.list_name_plugin()}
    assert len([p for p in manager.get_plugins() if p.__name__ == "pistond_packages"]) == 1


def test_plugins_block_list(tmp_path: Path) -> None:
    """A disabled plugin name is neither registered nor loaded from its entry point."""
    config = DaemonConfig(data_directory=tmp_path, disabled_plugins=("packages",))
    install_lua(config)
    manager = get_plugin_manager(config)
    assert manager.get_plugin("packages") is None
    assert manager.hook.pistond_runtimes(config=config) == []


@pytest.mark.usefixtures("example_plugin")
def test_plugins_entry_point_loaded(config: DaemonConfig) -> None:
    """A third-party distribution's `pistond` entry point is loaded and its runtime resolves."""
    manager = get_plugin_manager(config)
    assert manager.get_plugin("cowsay") is not None
    registry = RuntimeRegistry.from_plugins(manager, config)
    runtime = registry.resolve("cow", "1")
    assert runtime.language == "cowsay"
    check_runtime(runtime)


@pytest.mark.usefixtures("example_plugin")
def test_plugins_entry_point_blocked(tmp_path: Path) -> None:
    """Blocking an entry-point plugin by name keeps it out."""
    config = DaemonConfig(data_directory=tmp_path, disabled_plugins=("cowsay",))
    manager = get_plugin_manager(config)
    assert manager.get_plugin("cowsay") is None
    assert manager.get_plugin("packages") is not None


def test_hook_pistond_runtimes(config: DaemonConfig) -> None:
    """pistond_runtimes: each plugin's runtimes, gathered in load order by the registry."""
    install_lua(config)
    manager = get_plugin_manager(config)
    results = manager.hook.pistond_runtimes(config=config)
    assert [[r.language for r in result] for result in results] == [["lua"]]
    registry = RuntimeRegistry.from_plugins(manager, config)
    assert registry.resolve("lua", "5.x").version == "5.4.4"


def test_hook_pistond_recipe_directories(config: DaemonConfig) -> None:
    """pistond_recipe_directories: the configured recipes directory (or the shipped one)."""
    manager = get_plugin_manager(config)
    assert manager.hook.pistond_recipe_directories(config=config) == [[config.recipes_directory]]


def test_hook_pistond_package_indexes(tmp_path: Path) -> None:
    """pistond_package_indexes: PISTON_REPO_URL when set, nothing otherwise."""
    plain = DaemonConfig(data_directory=tmp_path)
    assert get_plugin_manager(plain).hook.pistond_package_indexes(config=plain) == [[]]
    config = DaemonConfig(data_directory=tmp_path, repo_url="file:///srv/index")
    manager = get_plugin_manager(config)
    assert manager.hook.pistond_package_indexes(config=config) == [["file:///srv/index"]]


def test_plugins_every_hook_documented_and_tested() -> None:
    """Every hookspec has a docstring with Args and Returns, and a test_hook_<name> here."""
    specs = [
        (name, function)
        for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("pistond_")
    ]
    assert specs
    for name, function in specs:
        doc = inspect.getdoc(function) or ""
        assert "Args:" in doc
        assert "Returns:" in doc
        assert f"test_hook_{name}" in globals(), f"no test_hook_{name}"


def test_plugins_conformance_catches_bad_runtime(config: DaemonConfig) -> None:
    """check_runtime reports relative argv, secrets in env and reserved bind targets."""
    good = Runtime(
        language="bash",
        version="5.2.15",
        aliases=("sh",),
        package=None,
        compiled=False,
        root=RootView(),
        compile_argv=None,
        run_argv=("/bin/bash",),
        env={"PATH": "/usr/bin:/bin"},
    )
    check_runtime(good)
    bad = attrs.evolve(
        good,
        version="5.2",
        run_argv=("bash",),
        compiled=True,
        env={"AWS_SECRET_ACCESS_KEY": "x", "HOME": "/root", "PWD": "/"},
        root=RootView(binds=(Bind("/etc", "/box/etc"),)),
    )
    problems = "\n".join(runtime_problems(bad))
    for fragment in (
        "not a semantic version",
        "not an absolute path",
        "compile_argv must be set",
        "host secret",
        "HOME, PWD, which jobs set themselves",
        "covers a sandbox mount",
    ):
        assert fragment in problems
    with pytest.raises(AssertionError, match=r"runtime bash-5\.2"):
        check_runtime(bad)
