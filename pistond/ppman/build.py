"""The package builder: a recipe in, a published ``<data>/packages/<package>/<version>/`` out.

Steps, in order (each a method of :class:`Builder`):

1. a fresh work tree (:func:`pistond.ppman.workspace.open_workspace`);
2. the recipe files, with ``metadata.json`` carrying the resolved version;
3. the root filesystem, by source: ``debian``: the suite checked and the root built by
   :mod:`pistond.ppman.debian` (mmdebstrap, the host's own mirrors and apt settings);
   ``pypi`` / ``npm``: a hard-linked copy of a shared Debian base built once, then pip or npm in
   the build jail (:mod:`pistond.ppman.isolate`) with the host's registry configuration
   (:mod:`pistond.ppman.registries`), writing only ``/opt/<package>``: pip takes binary wheels
   plus the source distributions a recipe names, npm runs no install scripts; no package code
   ever runs on the host; ``host``: no root at all;
4. root preparation: set-user-ID bits and device nodes removed, mount points created
   (``/proc``, ``/dev``, ``/tmp``, ``/box``, ``/piston/packages/<package>/<version>``);
5. ``.env``: the recipe's ``environment`` sourced by a clean bash in the build jail, as
   ``nobody``, over the read-only root, without network;
6. ``[build] warm`` commands, in the jail as root over the writable, not yet published root,
   with the package environment and no network;
7. deduplication: identical files hard-linked to those of already installed roots;
8. ``pkg-info.json``: metadata, source, resolved package versions and checksums, build time,
   root size, build platform; the ``.ppman-installed`` marker;
9. publication by one ``rename``. Any failure removes the work tree: nothing is left.

Builds are synchronous and run as root; callers put them in a worker thread.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from pistond.errors import PackageError
from pistond.ppman import aptsources, debian, fstree, registries
from pistond.ppman.index import sha256_file
from pistond.ppman.isolate import (
    DEFAULT_PATH,
    NOBODY,
    IsolatedCommand,
    IsolationError,
    run_jailed,
)
from pistond.ppman.layout import (
    BUILD_DIRECTORY,
    PackageLayout,
    format_env,
    installed_packages,
)
from pistond.ppman.recipes import (
    DebianSource,
    HostSource,
    NpmSource,
    PypiSource,
    Recipe,
    source_to_json,
)
from pistond.ppman.workspace import open_workspace
from pistond.sandbox.spec import Bind

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

logger = logging.getLogger(__name__)

BASE_DIRECTORY: Final = ".base"
BASE_SUITE: Final = "bookworm"
APT_DIRECTORY: Final = ".apt"
MOUNT_POINTS: Final = ("proc", "dev", "tmp", "box")
DROPPED_ENV: Final = frozenset({"PWD", "OLDPWD", "_", "SHLVL", "HOME"})
ENV_TIMEOUT: Final = 30.0
ENV_SCRIPT: Final = (
    'cd "$1" || exit 1; if [[ -f environment ]]; then source ./environment; fi; exec env -0'
)


def build_platform() -> str:
    """``pistond-<os-release ID>-<VERSION_ID>-<machine>``, as pkg-info.json records it."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/etc/os-release").read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition("=")
            fields[key] = value.strip().strip('"')
    except OSError:
        pass
    return (
        f"pistond-{fields.get('ID', 'linux')}-{fields.get('VERSION_ID', '')}-{platform.machine()}"
    )


def jail_box(scratch: Path, uid: int = 0) -> Path:
    """A fresh directory under ``scratch`` for a jail's ``/box``, owned by ``uid``."""
    box = Path(tempfile.mkdtemp(prefix="box-", dir=scratch))
    os.chmod(box, 0o755)
    os.chown(box, uid, uid)
    return box


@attrs.define(eq=False)
class Builder:
    """Builds recipes into installed packages under ``packages_directory``.

    Args:
        packages_directory: ``<data>/packages``.
        progress: receives one line at a time (tool output, step names); must not block long.
        apt_directory: where the host's apt sources are read.
        timeout: seconds each tool or build command may run.
        environ: the daemon's environment (proxies, CA and registry variables).
    """

    packages_directory: Path
    progress: Callable[[str], None]
    apt_directory: Path = aptsources.APT_DIRECTORY
    timeout: float = 1800.0
    environ: Mapping[str, str] = attrs.field(factory=lambda: dict(os.environ))

    @property
    def build_directory(self) -> Path:
        """``<data>/packages/.build``."""
        return self.packages_directory / BUILD_DIRECTORY

    def build(self, recipe: Recipe, version: str) -> PackageLayout:
        """Build ``recipe`` at ``version`` and publish it.

        Raises:
            PackageError: ``Already installed``, or a build step failed (its reason).
        """
        with open_workspace(self.packages_directory, recipe.package, version) as workspace:
            layout = workspace.layout
            started = time.monotonic()
            self.progress(f"building {recipe.package}-{version} from {recipe.directory.name}/")
            self.copy_recipe(recipe, layout, version)
            resolved = self.make_root(recipe, layout, version, workspace.scratch)
            if layout.root.is_dir():
                prepare_root(layout)
            env = compute_env(layout, workspace.scratch)
            layout.env_file.write_text(format_env(env), encoding="utf-8")
            for command in recipe.warm:
                self.warm(layout, workspace.scratch, command, env)
            saved = self.deduplicate(layout)
            final = workspace.publish(
                {
                    **json.loads(layout.metadata.read_text(encoding="utf-8")),
                    "source": source_to_json(recipe.source),
                    "resolved": resolved,
                    "build_time_ms": round((time.monotonic() - started) * 1000),
                    "root_size": fstree.tree_size(layout.root) if layout.root.is_dir() else 0,
                    "dedup_saved": saved,
                    "build_platform": build_platform(),
                    "built_at": int(time.time()),
                }
            )
        self.progress(f"installed {recipe.package}-{version}")
        return final

    def copy_recipe(self, recipe: Recipe, layout: PackageLayout, version: str) -> None:
        """Copy the recipe's files (regular files only) and write the resolved metadata."""
        for source in recipe.files():
            if source.is_symlink():
                raise PackageError(f"recipe file {source.name} is a symlink")
            target = layout.directory / source.name
            shutil.copyfile(source, target)
            os.chmod(target, 0o755 if source.name in ("run", "compile") else 0o644)
        metadata = attrs.evolve(recipe.metadata, version=version)
        layout.metadata.write_text(
            json.dumps(metadata.to_json(), indent=2) + "\n", encoding="utf-8"
        )

    def make_root(
        self, recipe: Recipe, layout: PackageLayout, version: str, scratch: Path
    ) -> dict[str, Any]:
        """Build the root filesystem for the recipe's source; return what was resolved."""
        source = recipe.source
        if isinstance(source, HostSource):
            return {"binaries": {binary: sha256_file(Path(binary)) for binary in source.binaries}}
        if isinstance(source, DebianSource):
            main = source.packages[0] if source.version_of is None else source.version_of
            suite = self.check_suite(source.suite, source.packages, version, main)
            packages = self.debian_root(layout.root, suite, source.packages, scratch)
            return {"debian": packages, "suite": source.suite, "apt": list(suite.lines)}
        base = self.base_root(source.debian_packages, scratch)
        fstree.hardlink_copy(base, layout.root)
        opt = layout.root / "opt" / recipe.package
        opt.mkdir(parents=True, exist_ok=False)
        resolved: dict[str, Any] = {
            "debian": json.loads((base.parent / "resolved.json").read_text())
        }
        if isinstance(source, PypiSource):
            resolved["pypi"] = self.pip_install(opt, source, layout, scratch)
        else:
            assert isinstance(source, NpmSource)
            resolved["npm"] = self.npm_install(opt, source.specs, layout, scratch)
        return resolved

    def check_suite(
        self, suite: str, packages: Sequence[str], version: str | None, main: str
    ) -> debian.SuiteState:
        """Ask the mirror about ``suite`` now (private apt): served, pins valid, main current.

        Raises:
            PackageError: the suite is gone, a pin no longer resolves, or the main package's
                version changed since the recipe was written (each with a clear message).
        """
        apt = debian.PrivateApt(
            self.packages_directory / APT_DIRECTORY, self.environ, self.apt_directory
        )
        state = apt.suite(suite, packages, self.progress)
        if packages:
            debian.check_pins(state, packages, version or "", main if version else "")
        return state

    def debian_root(
        self, root: Path, state: debian.SuiteState, packages: Sequence[str], scratch: Path
    ) -> list[dict[str, str]]:
        """Build a Debian root of ``state.suite`` holding ``packages``."""
        return debian.build_root(
            root,
            state.suite,
            packages,
            state.lines,
            environ=self.environ,
            timeout=self.timeout,
            progress=self.progress,
            scratch=scratch,
        )

    def base_root(self, debian_packages: Sequence[str], scratch: Path) -> Path:
        """The shared Debian base root for PyPI and npm sources, built once per package set."""
        key = hashlib.sha256(" ".join(sorted(debian_packages)).encode()).hexdigest()[:12]
        base = self.packages_directory / BASE_DIRECTORY / f"{BASE_SUITE}-{key}"
        base.parent.mkdir(parents=True, exist_ok=True)
        # Builds of different packages run at once: the first builds the base, the rest wait.
        with open(base.parent / f"{base.name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return self._base_root_locked(base, debian_packages, scratch)

    def _base_root_locked(self, base: Path, debian_packages: Sequence[str], scratch: Path) -> Path:
        if (base / "root").is_dir() and (base / "resolved.json").is_file():
            return base / "root"
        work = Path(tempfile.mkdtemp(prefix=f"{base.name}-", dir=base.parent))
        try:
            self.progress(f"building the shared Debian base {base.name}")
            packages = ["ca-certificates", *debian_packages]
            state = self.check_suite(BASE_SUITE, packages, None, "")
            resolved = self.debian_root(work / "root", state, packages, scratch)
            (work / "resolved.json").write_text(json.dumps(resolved), encoding="utf-8")
            try:
                os.rename(work, base)
            except OSError:
                if not (base / "root").is_dir():
                    raise
                fstree.remove_tree(work)
        except BaseException:
            fstree.remove_tree(work)
            raise
        return base / "root"

    def registry_command(
        self,
        argv: Sequence[str],
        opt: Path,
        layout: PackageLayout,
        scratch: Path,
        *,
        name: str,
        binds: Sequence[Bind] = (),
    ) -> Path:
        """Run a registry client in the jail, writing only ``/opt/<package>``; return its box.

        The client runs as ``nobody`` in the read-only host view with the host's network, its
        registry configuration (:mod:`pistond.ppman.registries`), ``HOME`` and ``TMPDIR`` in its
        box. Afterwards everything it wrote is owned by root again.

        Raises:
            PackageError: it failed or timed out (its last lines are in the message).
        """
        host = registries.read_host_registries(self.environ)
        box = jail_box(scratch, NOBODY)
        (box / "tmp").mkdir()
        os.chown(box / "tmp", NOBODY, NOBODY)
        config_dir = Path(tempfile.mkdtemp(prefix="registries-", dir=scratch))
        config_env = registries.write_configs(host, config_dir / "etc", NOBODY)
        target = f"/opt/{layout.package}"
        os.chown(opt, NOBODY, NOBODY)
        command = IsolatedCommand(
            argv=tuple(argv),
            box=str(box),
            binds=(
                Bind(source=str(opt), target=target, writable=True),
                *registries.config_binds(host, config_dir / "etc"),
                *binds,
            ),
            network=True,
            cwd="/box",
            env={
                **host.env,
                **config_env,
                "PATH": DEFAULT_PATH,
                "HOME": "/box",
                "TMPDIR": "/box/tmp",
                "LANG": "C.UTF-8",
                "npm_config_cache": "/box/npm-cache",
                "npm_config_update_notifier": "false",
                "PIP_CACHE_DIR": "/box/pip-cache",
            },
        )
        self.progress(f"$ {name} " + " ".join(argv[3:9]))
        try:
            done = run_jailed(command, timeout=self.timeout, on_line=self.progress)
        except IsolationError as exc:
            raise PackageError(f"{name}: {exc}") from None
        finally:
            fstree.chown_tree(opt, 0, 0)
        if done.code != 0:
            last = "; ".join(line for line in done.tail if line.strip())
            raise PackageError(f"{name} failed (exit {done.code}): {last}")
        return box

    def pip_install(
        self, opt: Path, source: PypiSource, layout: PackageLayout, scratch: Path
    ) -> list[dict[str, Any]]:
        """pip in the jail: binary wheels, plus the source distributions the recipe names."""
        argv = [
            registries.python_executable(), "-I", "-m", "pip", "install",
            "--disable-pip-version-check", "--no-input", "--no-compile",
            "--only-binary=:all:",
            *(f"--no-binary={name}" for name in source.sdists),
            "--target", f"/opt/{layout.package}",
            "--report", "/box/report.json",
            source.requirement,
        ]  # fmt: skip
        box = self.registry_command(
            argv, opt, layout, scratch, name="pip", binds=registries.python_binds()
        )
        data = json.loads((box / "report.json").read_text(encoding="utf-8"))
        check_pure_sdists(opt, source.sdists, data)
        check_python_abi(opt, layout.root)
        return [
            {
                "name": item.get("metadata", {}).get("name"),
                "version": item.get("metadata", {}).get("version"),
                "sha256": item.get("download_info", {}).get("archive_info", {}).get("hash", ""),
                "wheel": not item.get("download_info", {}).get("url", "").endswith(".tar.gz"),
            }
            for item in data.get("install", [])
        ]

    def npm_install(
        self, opt: Path, specs: Sequence[str], layout: PackageLayout, scratch: Path
    ) -> list[dict[str, Any]]:
        """npm in the jail (no install scripts); return versions and integrity hashes."""
        node, npm_cli = registries.npm_command()
        argv = [
            node, npm_cli, "install",
            "--prefix", f"/opt/{layout.package}",
            "--ignore-scripts", "--no-audit", "--no-fund", "--omit=dev",
            *specs,
        ]  # fmt: skip
        self.registry_command(
            argv, opt, layout, scratch, name="npm", binds=registries.tool_binds(node, npm_cli)
        )
        lock = json.loads((opt / "package-lock.json").read_text(encoding="utf-8"))
        return [
            {"path": path, "version": item.get("version"), "integrity": item.get("integrity")}
            for path, item in sorted(lock.get("packages", {}).items())
            if path
        ]

    def warm(
        self, layout: PackageLayout, scratch: Path, argv: Sequence[str], env: Mapping[str, str]
    ) -> None:
        """Run one warm command in the jail over the writable root, as root, without network.

        Raises:
            PackageError: it failed or timed out.
        """
        self.progress("warm: " + " ".join(argv))
        command = IsolatedCommand(
            argv=tuple(argv),
            box=str(jail_box(scratch)),
            root=str(layout.root),
            binds=(Bind(str(layout.directory), layout.piston_path),),
            writable_root=True,
            cwd="/tmp",
            env={**env, "HOME": "/tmp", "PISTON_LANGUAGE": layout.package},
            uid=0,
        )
        try:
            done = run_jailed(command, timeout=self.timeout, on_line=self.progress)
        except IsolationError as exc:
            raise PackageError(f"warm command failed: {exc}") from None
        if done.code != 0:
            raise PackageError(f"warm command {argv[0]} failed (exit {done.code})")

    def deduplicate(self, layout: PackageLayout) -> int:
        """Hard-link files of the new root to identical ones of installed roots."""
        if not layout.root.is_dir():
            return 0
        others = [other.root for other in installed_packages(self.packages_directory)]
        saved = fstree.deduplicate(layout.root, others)
        if saved:
            self.progress(f"deduplicated {saved // 1024} KiB against installed packages")
        return saved


def check_python_abi(opt: Path, root: Path) -> None:
    """Compiled modules pip installed must suit the root's own Python, if it has one.

    pip runs under the daemon's interpreter and picks wheels for its Python version; a root
    whose ``python3`` is another version could not load their extension modules.

    Raises:
        PackageError: extension modules for another Python version than the root's.
    """
    tag = f"cpython-{sys.version_info.major}{sys.version_info.minor}"
    root_python = root / "usr" / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    if not (root / "usr" / "bin" / "python3").exists() or root_python.exists():
        return
    if any(tag in path.name for path in opt.rglob("*.so")):
        raise PackageError(
            f"pip installed extension modules for Python {sys.version_info.major}."
            f"{sys.version_info.minor}, which the root's python3 is not; build on a host whose "
            "pistond runs under the same Python version as the recipe's Debian base"
        )


def check_pure_sdists(opt: Path, sdists: Sequence[str], report: Mapping[str, Any]) -> None:
    """Source distributions a recipe allows must have built pure-Python wheels.

    Raises:
        PackageError: one of them installed compiled code (``Root-Is-Purelib: false``).
    """
    wanted = {re.sub(r"[-_.]+", "-", name).lower() for name in sdists}
    if not wanted:
        return
    for wheel in opt.glob("*.dist-info/WHEEL"):
        distribution = wheel.parent.name.removesuffix(".dist-info").rsplit("-", 1)[0]
        name = re.sub(r"[-_.]+", "-", distribution).lower()
        if name in wanted and "Root-Is-Purelib: true" not in wheel.read_text(encoding="utf-8"):
            raise PackageError(f"source distribution {name} is not pure Python; not allowed")
    built = {
        re.sub(r"[-_.]+", "-", str(item.get("metadata", {}).get("name", ""))).lower()
        for item in report.get("install", [])
    }
    missing = sorted(wanted - built)
    if missing:
        logger.info("source distributions allowed but not needed: %s", ", ".join(missing))


def _make_directories(root: Path, relative: str) -> None:
    """Create ``root/relative`` without following any symlink on the way.

    Raises:
        PackageError: a component exists and is not a real directory.
    """
    current = root
    for part in relative.strip("/").split("/"):
        current = current / part
        if current.is_symlink() or (current.exists() and not current.is_dir()):
            raise PackageError(f"root filesystem: /{relative} is not a plain directory")
        if not current.exists():
            current.mkdir(mode=0o755)


def prepare_root(layout: PackageLayout) -> None:
    """Make a root filesystem ready for the sandbox (see the module docstring, step 4).

    Raises:
        PackageError: a mount point is a symlink or a file.
    """
    root = layout.root
    if root.is_symlink():
        raise PackageError("root filesystem is a symlink")
    fstree.strip_special_bits(root)
    for name in MOUNT_POINTS:
        _make_directories(root, name)
    os.chmod(root / "tmp", 0o1777)
    _make_directories(root, layout.piston_path)


def compute_env(layout: PackageLayout, scratch: Path) -> dict[str, str]:
    """The package environment: ``environment`` sourced by a clean bash in the build jail.

    As in Piston: bash enters the package directory (at its Piston path) and sources
    ``environment``; the resulting environment minus PWD, OLDPWD, _, SHLVL and HOME is the
    ``.env``. It runs as ``nobody``, with no network, over the read-only root (or host view).

    Raises:
        PackageError: the script failed, or set a value that cannot be stored.
    """
    command = IsolatedCommand(
        argv=("/bin/bash", "--noprofile", "--norc", "-c", ENV_SCRIPT, "bash", layout.piston_path),
        box=str(jail_box(scratch)),
        root=str(layout.root) if layout.root.is_dir() else None,
        binds=(Bind(str(layout.directory), layout.piston_path),),
        env={"PATH": DEFAULT_PATH, "HOME": "/tmp", "LANG": "C.UTF-8"},
    )
    errors: list[str] = []
    try:
        done = run_jailed(command, timeout=ENV_TIMEOUT, on_line=errors.append, capture=True)
    except IsolationError as exc:
        raise PackageError(f"environment script failed: {exc}") from None
    if done.code != 0:
        raise PackageError(
            f"environment script failed (exit {done.code}): {'; '.join(errors[-3:])}".rstrip(": ")
        )
    env: dict[str, str] = {}
    for item in done.stdout.decode("utf-8", "replace").split("\0"):
        name, sep, value = item.partition("=")
        if not sep or name in DROPPED_ENV or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            continue
        if "\n" in value:
            raise PackageError(f"environment variable {name} holds a newline")
        env[name] = value
    return env
