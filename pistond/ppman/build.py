"""The package builder: a recipe in, a published ``<data>/packages/<package>/<version>/`` out.

Steps, in order (each a method of :class:`Builder`):

1. a fresh build directory ``<data>/packages/.build/<package>-<version>-<random>/``;
2. the recipe files, with ``metadata.json`` carrying the resolved version;
3. the root filesystem, by source: ``debian``: mmdebstrap (variant ``essential`` plus the
   recipe's packages, no docs, man pages or locales), fed the host's own apt mirrors for the
   wanted suite; ``pypi`` / ``npm``: a hard-linked copy of a shared Debian base built once,
   then ``pip install --target /opt/<package>`` (binary wheels only) or ``npm install --prefix
   /opt/<package> --ignore-scripts`` with the host's own pip and npm configuration, so no
   package code runs on the host; ``host``: no root at all;
4. root preparation: set-user-ID bits and device nodes removed, mount points created
   (``/proc``, ``/dev``, ``/tmp``, ``/box``, ``/piston/packages/<package>/<version>``);
5. ``.env``: the recipe's ``environment`` sourced by a clean bash inside the build jail
   (:mod:`pistond.ppman.isolate`), as ``nobody``, over the read-only root;
6. ``[build] warm`` commands, in the jail as root over the writable, not yet published root,
   with the package environment and no network;
7. deduplication: identical files hard-linked to those of already installed roots;
8. ``pkg-info.json``: metadata, source, resolved package versions and checksums, build time,
   root size, build platform; then the ``.ppman-installed`` marker;
9. publication by one ``rename``. Any failure removes the build directory: nothing is left.

Steps 1 and 8-9 are :func:`pistond.ppman.workspace.open_workspace`. Builds are synchronous and run as root; callers put them in a worker thread.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from pistond.errors import PackageError
from pistond.ppman import aptsources, fstree
from pistond.ppman.index import sha256_file
from pistond.ppman.isolate import (
    DEFAULT_PATH,
    IsolatedCommand,
    IsolationError,
    run_isolated,
    stream_isolated,
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
MOUNT_POINTS: Final = ("proc", "dev", "tmp", "box")
DROPPED_ENV: Final = frozenset({"PWD", "OLDPWD", "_", "SHLVL", "HOME"})
DPKG_EXCLUDES: Final = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/lintian/*",
    "path-exclude=/usr/share/linda/*",
)
TOOL_ENV: Final = (
    "PATH",
    "HOME",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
)
ENV_TIMEOUT: Final = 30.0
ENV_SCRIPT: Final = (
    'cd "$1" || exit 1; if [[ -f environment ]]; then source ./environment; fi; exec env -0'
)


def _tool_env() -> dict[str, str]:
    """The environment of package-manager tools: PATH, HOME, proxies; nothing else."""
    env = {name: os.environ[name] for name in TOOL_ENV if name in os.environ}
    env.setdefault("PATH", DEFAULT_PATH)
    env["LC_ALL"] = "C.UTF-8"
    return env


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


@attrs.define(eq=False)
class Builder:
    """Builds recipes into installed packages under ``packages_directory``.

    Args:
        packages_directory: ``<data>/packages``.
        progress: receives one line at a time (tool output, step names); must not block long.
        apt_directory: where the host's apt sources are read.
        timeout: seconds each tool or build command may run.
    """

    packages_directory: Path
    progress: Callable[[str], None]
    apt_directory: Path = aptsources.APT_DIRECTORY
    timeout: float = 1800.0

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
            resolved = self.make_root(recipe, layout)
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

    def make_root(self, recipe: Recipe, layout: PackageLayout) -> dict[str, Any]:
        """Build the root filesystem for the recipe's source; return what was resolved."""
        source = recipe.source
        if isinstance(source, HostSource):
            return {"binaries": {binary: sha256_file(Path(binary)) for binary in source.binaries}}
        if isinstance(source, DebianSource):
            return {"debian": self.debootstrap(layout.root, source.suite, source.packages)}
        base = self.base_root(source.debian_packages)
        fstree.hardlink_copy(base, layout.root)
        opt = layout.root / "opt" / recipe.package
        opt.mkdir(parents=True, exist_ok=False)
        resolved: dict[str, Any] = {
            "debian": json.loads((base.parent / "resolved.json").read_text())
        }
        if isinstance(source, PypiSource):
            resolved["pypi"] = self.pip_install(opt, source.requirement)
        else:
            assert isinstance(source, NpmSource)
            resolved["npm"] = self.npm_install(opt, source.specs)
        return resolved

    def run_tool(
        self, argv: Sequence[str], *, cwd: Path | None = None, name: str | None = None
    ) -> None:
        """Run a package-manager tool on the host, streaming its output lines to progress.

        Raises:
            PackageError: it could not start, failed or timed out (its last lines are kept).
        """
        tool = name or Path(argv[0]).name
        self.progress("$ " + " ".join(argv[:6]) + (" ..." if len(argv) > 6 else ""))
        tail: list[str] = []

        def line(text: str) -> None:
            tail.append(text)
            del tail[:-5]
            self.progress(text)

        try:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=_tool_env(),
                start_new_session=True,
            )
        except OSError as exc:
            raise PackageError(f"cannot run {tool}: {exc.strerror}") from None
        deadline = time.monotonic() + self.timeout
        assert process.stdout is not None
        for raw in process.stdout:
            line(raw.decode("utf-8", "replace").rstrip("\n")[:1000])
            if time.monotonic() > deadline:
                os.killpg(process.pid, 9)
        code = process.wait()
        if code != 0:
            last = "; ".join(text for text in tail if text.strip())
            raise PackageError(f"{tool} failed (exit {code}): {last}")

    def ensure_mmdebstrap(self) -> str:
        """The mmdebstrap binary, installed with apt-get when missing."""
        found = shutil.which("mmdebstrap", path=DEFAULT_PATH)
        if found is None:
            self.progress("mmdebstrap is missing: installing it with apt-get")
            self.run_tool(["apt-get", "install", "-y", "--no-install-recommends", "mmdebstrap"])
            found = shutil.which("mmdebstrap", path=DEFAULT_PATH)
        if found is None:
            raise PackageError("mmdebstrap is not available")
        return found

    def debootstrap(self, root: Path, suite: str, packages: Sequence[str]) -> list[dict[str, str]]:
        """Build a Debian root with mmdebstrap; return the installed packages and deb hashes."""
        base, mirrors = aptsources.mirror_lines(suite, self.apt_directory)
        argv = [
            # mmdebstrap mounts /proc, /sys, /dev/pts and /dev/shm into the new root while it
            # runs maintainer scripts: in a private mount namespace those mounts can never
            # outlive it on the host (a killed build would otherwise leave them mounted).
            "/usr/bin/unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            self.ensure_mmdebstrap(),
            "--mode=root",
            "--format=directory",
            "--variant=essential",
            "--skip=cleanup/apt/cache",
            # update-alternatives (openjdk's postinst) needs man1 although man pages are excluded
            '--setup-hook=mkdir -p "$1/usr/share/man/man1"',
            *(f"--dpkgopt={rule}" for rule in DPKG_EXCLUDES),
        ]
        if packages:
            argv.append("--include=" + ",".join(packages))
        if suite != base:
            argv.append(f'--aptopt=APT::Default-Release "{suite}"')
        self.run_tool([*argv, base, str(root), *mirrors], name="mmdebstrap")
        return self.record_debian(root)

    def record_debian(self, root: Path) -> list[dict[str, str]]:
        """Installed package versions (from dpkg's database) with the sha256 of their debs."""
        result = subprocess.run(
            [
                "dpkg-query",
                f"--admindir={root}/var/lib/dpkg",
                "-W",
                "-f=${Package}\t${Version}\t${Architecture}\n",
            ],
            capture_output=True,
            check=False,
            env=_tool_env(),
        )
        archives = root / "var" / "cache" / "apt" / "archives"
        hashes: dict[tuple[str, str], str] = {}
        if archives.is_dir():
            for deb in archives.glob("*.deb"):
                parts = urllib.parse.unquote(deb.name[: -len(".deb")]).split("_")
                if len(parts) == 3 and not deb.is_symlink():
                    hashes[(parts[0], parts[1].split(":")[-1])] = sha256_file(deb)
                deb.unlink()
        packages = []
        for line in result.stdout.decode("utf-8", "replace").splitlines():
            name, version, arch = ([*line.split("\t"), "", ""])[:3]
            entry = {"package": name, "version": version, "architecture": arch}
            digest = hashes.get((name, version.split(":")[-1]))
            if digest:
                entry["sha256"] = digest
            packages.append(entry)
        return packages

    def base_root(self, debian_packages: Sequence[str]) -> Path:
        """The shared Debian base root for PyPI and npm sources, built once per package set."""
        key = hashlib.sha256(" ".join(sorted(debian_packages)).encode()).hexdigest()[:12]
        base = self.packages_directory / BASE_DIRECTORY / f"{BASE_SUITE}-{key}"
        if (base / "root").is_dir() and (base / "resolved.json").is_file():
            return base / "root"
        (base.parent).mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"{base.name}-", dir=base.parent))
        try:
            self.progress(f"building the shared Debian base {base.name}")
            resolved = self.debootstrap(
                work / "root", BASE_SUITE, ["ca-certificates", *debian_packages]
            )
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

    def pip_install(self, target: Path, requirement: str) -> list[dict[str, Any]]:
        """``pip install --target`` of binary wheels only; return what pip resolved."""
        with tempfile.TemporaryDirectory(dir=self.build_directory) as scratch:
            report = Path(scratch) / "report.json"
            self.run_tool(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--no-input",
                    "--no-compile",
                    "--only-binary=:all:",
                    "--target",
                    str(target),
                    "--report",
                    str(report),
                    requirement,
                ]
            )
            data = json.loads(report.read_text(encoding="utf-8"))
        return [
            {
                "name": item.get("metadata", {}).get("name"),
                "version": item.get("metadata", {}).get("version"),
                "sha256": item.get("download_info", {}).get("archive_info", {}).get("hash", ""),
            }
            for item in data.get("install", [])
        ]

    def npm_install(self, prefix: Path, specs: Sequence[str]) -> list[dict[str, Any]]:
        """``npm install --prefix --ignore-scripts``; return versions and integrity hashes."""
        npm = shutil.which("npm", path=DEFAULT_PATH)
        if npm is None:
            raise PackageError("npm is not installed on this host")
        self.run_tool(
            [
                npm,
                "install",
                "--prefix",
                str(prefix),
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
                "--omit=dev",
                *specs,
            ]
        )
        lock = json.loads((prefix / "package-lock.json").read_text(encoding="utf-8"))
        return [
            {"path": path, "version": item.get("version"), "integrity": item.get("integrity")}
            for path, item in sorted(lock.get("packages", {}).items())
            if path
        ]

    def warm(
        self, layout: PackageLayout, staging: Path, argv: Sequence[str], env: Mapping[str, str]
    ) -> None:
        """Run one warm command in the jail over the writable root, as root, without network.

        Raises:
            PackageError: it failed or timed out.
        """
        self.progress("warm: " + " ".join(argv))
        command = IsolatedCommand(
            argv=tuple(argv),
            root=str(layout.root),
            staging=str(staging),
            binds=(Bind(str(layout.directory), layout.piston_path),),
            writable_root=True,
            cwd="/tmp",
            env={**env, "HOME": "/tmp", "PISTON_LANGUAGE": layout.package},
            uid=0,
        )
        try:
            code = stream_isolated(command, timeout=self.timeout, on_line=self.progress)
        except IsolationError as exc:
            raise PackageError(f"warm command failed: {exc}") from None
        if code != 0:
            raise PackageError(f"warm command {argv[0]} failed (exit {code})")

    def deduplicate(self, layout: PackageLayout) -> int:
        """Hard-link files of the new root to identical ones of installed roots."""
        if not layout.root.is_dir():
            return 0
        others = [other.root for other in installed_packages(self.packages_directory)]
        saved = fstree.deduplicate(layout.root, others)
        if saved:
            self.progress(f"deduplicated {saved // 1024} KiB against installed packages")
        return saved


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


def compute_env(layout: PackageLayout, staging: Path) -> dict[str, str]:
    """The package environment: ``environment`` sourced by a clean bash in the build jail.

    As in Piston: bash enters the package directory (at its Piston path) and sources
    ``environment``; the resulting environment minus PWD, OLDPWD, _, SHLVL and HOME is the
    ``.env``. It runs as ``nobody``, with no network, over the read-only root (or host view).

    Raises:
        PackageError: the script failed, or set a value that cannot be stored.
    """
    command = IsolatedCommand(
        argv=("/bin/bash", "--noprofile", "--norc", "-c", ENV_SCRIPT, "bash", layout.piston_path),
        root=str(layout.root) if layout.root.is_dir() else None,
        staging=str(staging),
        binds=(Bind(str(layout.directory), layout.piston_path),),
        env={"PATH": DEFAULT_PATH, "HOME": "/tmp", "LANG": "C.UTF-8"},
    )
    errors: list[str] = []
    try:
        code, output = run_isolated(command, timeout=ENV_TIMEOUT, on_line=errors.append)
    except IsolationError as exc:
        raise PackageError(f"environment script failed: {exc}") from None
    if code != 0:
        raise PackageError(
            f"environment script failed (exit {code}): {'; '.join(errors[-3:])}".rstrip(": ")
        )
    env: dict[str, str] = {}
    for item in output.decode("utf-8", "replace").split("\0"):
        name, sep, value = item.partition("=")
        if not sep or name in DROPPED_ENV or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            continue
        if "\n" in value:
            raise PackageError(f"environment variable {name} holds a newline")
        env[name] = value
    return env
