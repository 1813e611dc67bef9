"""PackageManager: listing, install by range, uninstall from installed packages only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pistond.config import DaemonConfig, load_config
from pistond.errors import PackageError, PackageNotFound
from pistond.models import PackageInfo
from pistond.ppman import PackageManager
from pistond.ppman.build import Builder
from pistond.ppman.pack import pack
from pistond.ppman.recipes import load_recipe
from pistond.runtimes import RuntimeRegistry

pytestmark = pytest.mark.usefixtures("needs_jail")


async def test_manager_install_list_uninstall(
    tmp_path: Path, recipe: Callable[..., Path], host_bash: str
) -> None:
    """Local recipes and index entries are listed; install picks the highest; uninstall works."""
    recipes = tmp_path / "recipes"
    source = recipe(recipes, "bash", "host", host_bash)
    built = Builder(tmp_path / "elsewhere", lambda _l: None).build(load_recipe(source), "1.0.0")
    _archive, entry = pack(built, tmp_path / "served", (tmp_path / "served").as_uri())
    index = tmp_path / "index"
    index.write_text(entry.line() + "\n")
    config = DaemonConfig(
        data_directory=tmp_path / "data", recipes_directory=recipes, repo_url=index.as_uri()
    )
    manager = PackageManager(config)
    listing = await manager.packages()
    host_version = next(p.version for p in listing if p.source == "local")
    assert PackageInfo("bash", "1.0.0", installed=False, source="index") in listing
    lines: list[str] = []

    async def progress(line: str) -> None:
        lines.append(line)

    assert await manager.install("bash", "1.0.0", progress) == ("bash", "1.0.0")
    assert await manager.install("bash", "*", progress) == ("bash", host_version)
    assert lines[-1] == f"installed bash-{host_version}"
    with pytest.raises(PackageError, match="Already installed"):
        await manager.install("bash", "*")
    with pytest.raises(PackageNotFound, match=r"^Requested package sh-\* does not exist$"):
        await manager.install("sh", "*")
    registry = RuntimeRegistry.from_plugins(manager.plugin_manager, config)
    assert registry.resolve("bash", "*").version == host_version
    assert await manager.uninstall("bash", "<2") == ("bash", "1.0.0")
    with pytest.raises(PackageNotFound, match="is not installed"):
        await manager.uninstall("bash", "1.0.0")
    registry.reload()
    assert [r.version for r in registry.runtimes()] == [host_version]


def test_manager_scrubs_host_paths(tmp_path: Path) -> None:
    """Build output and errors sent to clients name no host data directory."""
    config = load_config({"PISTON_DATA_DIRECTORY": str(tmp_path / "data")})
    manager = PackageManager(config)
    line = (
        f"E: cannot chroot into {tmp_path}/data/packages/.build/x-1-abc/root (in {tmp_path}/data)"
    )
    assert manager.scrub(line) == "E: cannot chroot into <packages>/.build/x-1-abc/root (in <data>)"
