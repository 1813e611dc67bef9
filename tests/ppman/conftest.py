"""Fixtures for package-manager tests: recipe trees written on the fly."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable


def write_recipe(
    base: Path,
    package: str,
    version: str,
    source: str,
    *,
    metadata: dict[str, Any] | None = None,
    files: dict[str, str] | None = None,
) -> Path:
    """Write a recipe directory ``base/package/version`` and return it."""
    directory = base / package / version
    directory.mkdir(parents=True)
    data = metadata or {"language": package, "version": version, "aliases": []}
    (directory / "metadata.json").write_text(json.dumps(data))
    (directory / "source.toml").write_text(source)
    (directory / "run").write_text('#!/usr/bin/env bash\n/bin/bash "$@"\n')
    (directory / "environment").write_text(
        "export PATH=$PWD/bin:/usr/bin:/bin\nexport X_RECIPE=1\n"
    )
    for name, content in (files or {}).items():
        (directory / name).write_text(content)
    return directory


HOST_BASH = """
[host]
binaries = ["/bin/bash"]
version_command = ["/bin/bash", "-c",
  "echo ${BASH_VERSINFO[0]}.${BASH_VERSINFO[1]}.${BASH_VERSINFO[2]}"]
"""


def jail_available() -> str | None:
    """Why the build jail cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "the build jail needs root"
    if not Path("/proc/self/ns/pid").exists():
        return "no namespaces"
    if shutil.which("umount") is None:
        return "no umount"
    return None


@pytest.fixture
def needs_jail() -> None:
    reason = jail_available()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def recipe() -> Callable[..., Path]:
    """The recipe writer (see write_recipe)."""
    return write_recipe


@pytest.fixture
def host_bash() -> str:
    """source.toml of a host bash recipe."""
    return HOST_BASH
