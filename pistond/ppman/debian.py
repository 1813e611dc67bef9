"""Debian root filesystems: suites checked through a private apt, roots built with mmdebstrap.

Any suite the host's Debian mirror serves can be built from (bullseye, bookworm and its
backports, trixie, forky, sid, ...). Before a build, :class:`PrivateApt` asks the mirror about
the wanted suite with ``apt-get update`` and ``apt-cache policy`` over an apt configuration of
its own (its own sources and lists directory under the data directory; nothing system-wide
changes). That gives clear messages where a suite left the mirror, a pinned package version left
its suite, or the suite's version of the recipe's main package no longer matches the recipe's
version, and it tells which of the suite's ``-updates`` and ``-security`` companions exist.

mmdebstrap then builds the root (variant ``essential`` plus the recipe's packages, no docs, man
pages or locales), fed the same mirror lines. The host's apt trust and proxy settings
(``Acquire::*::Proxy``, ``CAInfo``, ``Verify-Peer``, ``Check-Valid-Until`` and the like, read
with ``apt-config dump``) apply to both. mmdebstrap gets them through a file that a setup hook
copies into the new root and a customize hook removes again, so they never stay in a runtime
root that jobs see. The installed package versions and the sha256 of their debs are recorded.
"""

from __future__ import annotations

import fcntl
import re
import shlex
import shutil
import subprocess
import time
import urllib.parse
from typing import TYPE_CHECKING, Final

import attrs

from pistond.errors import PackageError
from pistond.ppman import aptsources
from pistond.ppman.index import sha256_file
from pistond.ppman.process import CommandError, run_command

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path

DEFAULT_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
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
HOST_APT_SETTINGS: Final = re.compile(
    r"Acquire::(?:(?:http|https|ftp|socks)::(?:[^:\s]+::)?"
    r"(?:Proxy|CAInfo|CaPath|Verify-Peer|Verify-Host|SslCert|SslKey|SslForceVersion|Timeout)"
    r"|Check-Valid-Until|Check-Date|Retries|ForceIPv4|ForceIPv6|Max-ValidTime|Min-ValidTime)"
)
"""apt settings of the host that say how its mirrors are reached and trusted."""
_VERSION_LINE: Final = re.compile(r" +(?:\*\*\* )?\S+ -?\d+")
"""A version line of ``apt-cache policy``'s table: ``     5.3-4 500`` or `` *** 5.2.15-2 100``."""
HOST_SETTINGS_FILE: Final = "00pistond-host-apt"
LISTS_MAX_AGE: Final = 6 * 3600
"""Seconds the private apt's package lists are reused before ``apt-get update`` runs again."""
_TOOL_ENV: Final = (
    "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
)  # fmt: skip


def tool_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of apt and mmdebstrap: PATH, proxies and ``LC_ALL``; nothing else."""
    env = {name: environ[name] for name in _TOOL_ENV if name in environ}
    env["PATH"] = environ.get("PATH", DEFAULT_PATH)
    env["LC_ALL"] = "C.UTF-8"
    return env


def host_apt_settings(environ: Mapping[str, str]) -> str:
    """The host's proxy and trust settings as apt.conf text (from ``apt-config dump``)."""
    try:
        result = subprocess.run(
            ["apt-config", "dump"],
            capture_output=True,
            env=tool_env(environ),
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    lines = []
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        name, _, value = line.partition(" ")
        if HOST_APT_SETTINGS.fullmatch(name) and value.endswith(";"):
            lines.append(line)
    return "".join(line + "\n" for line in lines)


@attrs.frozen
class SuiteState:
    """What the mirror serves of one suite, as the private apt saw it."""

    suite: str
    lines: tuple[str, ...]
    """The ``deb`` lines that the mirror serves (the suite and those of its companions found)."""
    versions: Mapping[str, tuple[str, ...]]
    """Package name -> every version the suite offers, candidate first."""


@attrs.define(eq=False)
class PrivateApt:
    """apt over a configuration of its own: ``<directory>/<suite>/`` (sources, lists, cache).

    Args:
        directory: the private apt's home (``<data>/packages/.apt``).
        environ: the daemon's environment (proxies).
        apt_directory: where the host's apt sources are read.
        timeout: seconds ``apt-get update`` may take.
    """

    directory: Path
    environ: Mapping[str, str]
    apt_directory: Path = aptsources.APT_DIRECTORY
    timeout: float = 600.0

    def _home(self, suite: str) -> Path:
        return self.directory / suite

    def _config(self, suite: str, lines: Sequence[str]) -> Path:
        home = self._home(suite)
        for sub in (
            "lists/partial",
            "cache/archives/partial",
            "etc/apt.conf.d",
            "etc/preferences.d",
        ):
            (home / sub).mkdir(parents=True, exist_ok=True)
        (home / "etc" / "sources.list").write_text("".join(f"{line}\n" for line in lines))
        config = home / "apt.conf"
        config.write_text(
            f'Dir::State "{home}";\n'
            f'Dir::State::Lists "{home}/lists";\n'
            'Dir::State::status "/dev/null";\n'
            f'Dir::Cache "{home}/cache";\n'
            f'Dir::Etc "{home}/etc";\n'
            f'Dir::Etc::Trusted "{self.apt_directory}/trusted.gpg";\n'
            f'Dir::Etc::TrustedParts "{self.apt_directory}/trusted.gpg.d";\n'
            'Acquire::Languages "none";\n'
            'Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled "false";\n'
            'APT::Get::List-Cleanup "true";\n' + host_apt_settings(self.environ)
        )
        return config

    def _apt(self, config: Path, *argv: str, progress: Callable[[str], None]) -> str:
        env = {**tool_env(self.environ), "APT_CONFIG": str(config)}
        output: list[str] = []

        def line(text: str) -> None:
            output.append(text)
            progress(text)

        try:
            done = run_command(argv, env=env, timeout=self.timeout, on_line=line)
        except CommandError as exc:
            raise PackageError(f"apt: {exc}") from None
        if done.code != 0 and argv[0] != "apt-get":
            raise PackageError(f"{argv[0]} failed (exit {done.code}): {'; '.join(done.tail)}")
        return "\n".join(output)

    def suite(
        self, suite: str, packages: Sequence[str], progress: Callable[[str], None]
    ) -> SuiteState:
        """Refresh the suite's lists if stale, then look ``packages`` up in it.

        Raises:
            PackageError: the mirror does not serve ``suite``, or apt failed.
        """
        base, wanted = aptsources.mirror_lines(suite, self.apt_directory)
        self._home(suite).mkdir(parents=True, exist_ok=True)
        # Builds run in threads and daemons may share a data directory: one apt per suite.
        with open(self._home(suite) / "lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return self._suite_locked(suite, base, wanted, packages, progress)

    def _suite_locked(
        self,
        suite: str,
        base: str,
        wanted: Sequence[str],
        packages: Sequence[str],
        progress: Callable[[str], None],
    ) -> SuiteState:
        config = self._config(suite, wanted)
        lists = self._home(suite) / "lists"
        stamp = self._home(suite) / "updated"
        fresh = stamp.is_file() and time.time() - stamp.stat().st_mtime < LISTS_MAX_AGE
        if not fresh:
            progress(f"asking the Debian mirror about {suite}")
            self._apt(config, "apt-get", "update", "-q", progress=lambda _line: None)
            stamp.touch()
        served = tuple(line for line in wanted if _has_release(lists, line))
        if not any(line.split()[2] in (base, suite) for line in served):
            stamp.unlink(missing_ok=True)
            raise PackageError(
                f"the host's Debian mirror does not serve {suite} (any more); "
                "recipes of that suite cannot be built here"
            )
        if not packages:
            return SuiteState(suite, served, {})
        names = [package.split("=")[0] for package in packages]
        policy = self._apt(config, "apt-cache", "policy", *names, progress=lambda _line: None)
        return SuiteState(suite, served, parse_policy(policy))


def _has_release(lists: Path, line: str) -> bool:
    """Whether apt fetched the Release file of the ``deb`` line ``line``."""
    _deb, uri, suite, *_components = line.split()
    parts = urllib.parse.urlsplit(uri)
    prefix = (parts.netloc + parts.path).rstrip("/").replace("/", "_")
    stem = f"{prefix}_dists_{suite.replace('/', '_')}_"
    return any((lists / (stem + name)).is_file() for name in ("InRelease", "Release"))


def parse_policy(text: str) -> dict[str, tuple[str, ...]]:
    """``apt-cache policy`` output -> package -> its versions, candidate first (none: absent)."""
    versions: dict[str, list[str]] = {}
    current: str | None = None
    candidate: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            current = line[:-1]
            versions[current] = []
        elif current is None:
            continue
        elif line.strip().startswith("Candidate:"):
            value = line.split(":", 1)[1].strip()
            if value != "(none)":
                candidate[current] = value
        elif _VERSION_LINE.fullmatch(line):
            versions[current].append(line.split()[-2])
    result: dict[str, tuple[str, ...]] = {}
    for name, found in versions.items():
        first = candidate.get(name)
        ordered = ([first] if first else []) + [v for v in found if v != first]
        result[name] = tuple(ordered)
    return result


def upstream_version(debian_version: str) -> str:
    """The upstream part of a Debian version: no epoch, no revision, no ``+dfsg``-style suffix
    (``+reallyX`` means X)."""
    text = debian_version.split(":", 1)[-1]
    if "-" in text:
        text = text.rsplit("-", 1)[0]
    # "3.1.7+really3.1.2": Debian's way of shipping an older upstream under a higher version.
    text = text.rsplit("+really", 1)[-1]
    return re.split(r"[+~]", text, maxsplit=1)[0]


def check_pins(state: SuiteState, packages: Sequence[str], recipe_version: str, main: str) -> None:
    """Check the recipe against the suite as it is today.

    Raises:
        PackageError: a package is missing from the suite, a pinned ``name=version`` is no
            longer offered, or the suite's version of ``main`` no longer matches the recipe.
    """
    for package in packages:
        name, _, pinned = package.partition("=")
        offered = state.versions.get(name, ())
        if not offered:
            raise PackageError(f"{state.suite} has no package {name} (any more)")
        if pinned and pinned not in offered:
            raise PackageError(
                f"{state.suite} no longer has {name} {pinned} (it has {offered[0]}); the recipe "
                "pins what its suite offered when it was written and must be updated"
            )
    if main:
        name, _, pinned = next(
            (p for p in packages if p.partition("=")[0] == main), main
        ).partition("=")
        offered = state.versions.get(name, ())
        version = pinned or (offered[0] if offered else "")
        if version and not _same_release(upstream_version(version), recipe_version):
            raise PackageError(
                f"{state.suite} now has {name} {version}, not {recipe_version}: the suite changed "
                "since the recipe was written; the recipe must be updated"
            )


def _same_release(upstream: str, recipe_version: str) -> bool:
    """Whether an upstream version is the recipe's (``2.16.01`` is 2.16.1, ``28.2`` is 28.2.0)."""
    numbers = [int(part) for part in re.findall(r"\d+", upstream)[:3]]
    wanted = [
        int(part) for part in re.findall(r"\d+", recipe_version.split("-", maxsplit=1)[0])[:3]
    ]
    numbers += [0] * (3 - len(numbers))
    return numbers[: len(wanted)] == wanted


def build_root(
    root: Path,
    suite: str,
    packages: Sequence[str],
    lines: Sequence[str],
    *,
    environ: Mapping[str, str],
    timeout: float,
    progress: Callable[[str], None],
    scratch: Path,
) -> list[dict[str, str]]:
    """Build a Debian root with mmdebstrap; return the installed packages and deb hashes.

    Raises:
        PackageError: mmdebstrap is missing or failed (its last lines are in the message).
    """
    base = suite.removesuffix("-backports")
    settings = scratch / HOST_SETTINGS_FILE
    settings.write_text(host_apt_settings(environ), encoding="utf-8")
    target = f"/etc/apt/apt.conf.d/{HOST_SETTINGS_FILE}"
    argv = [
        # mmdebstrap mounts /proc, /sys, /dev/pts and /dev/shm into the new root while it runs
        # maintainer scripts: in a private mount namespace those mounts can never outlive it on
        # the host (a killed build would otherwise leave them mounted).
        "/usr/bin/unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        ensure_mmdebstrap(environ, timeout, progress),
        "--mode=root",
        "--format=directory",
        "--variant=essential",
        "--skip=cleanup/apt/cache",
        # update-alternatives (openjdk's postinst) needs man1 although man pages are excluded
        '--setup-hook=mkdir -p "$1/usr/share/man/man1" "$1/etc/apt/apt.conf.d"',
        f"--setup-hook=copy-in {shlex.quote(str(settings))} /etc/apt/apt.conf.d/",
        f'--customize-hook=rm -f "$1{target}"',
        *(f"--dpkgopt={rule}" for rule in DPKG_EXCLUDES),
    ]
    if packages:
        argv.append("--include=" + ",".join(packages))
    if suite != base:
        argv.append(f'--aptopt=APT::Default-Release "{suite}"')
    argv += [base, str(root), *lines]
    progress("$ mmdebstrap " + " ".join([base, *packages])[:200])
    try:
        done = run_command(argv, env=tool_env(environ), timeout=timeout, on_line=progress)
    except CommandError as exc:
        raise PackageError(f"mmdebstrap: {exc}") from None
    if done.code != 0:
        last = "; ".join(line for line in done.tail if line.strip())
        raise PackageError(f"mmdebstrap failed (exit {done.code}): {last}")
    return record_debian(root, environ)


def ensure_mmdebstrap(
    environ: Mapping[str, str], timeout: float, progress: Callable[[str], None]
) -> str:
    """The mmdebstrap binary, installed with apt-get when missing."""
    found = shutil.which("mmdebstrap", path=DEFAULT_PATH)
    if found is None:
        progress("mmdebstrap is missing: installing it with apt-get")
        argv = ["apt-get", "install", "-y", "--no-install-recommends", "mmdebstrap"]
        try:
            run_command(argv, env=tool_env(environ), timeout=timeout, on_line=progress)
        except CommandError as exc:
            raise PackageError(f"apt-get: {exc}") from None
        found = shutil.which("mmdebstrap", path=DEFAULT_PATH)
    if found is None:
        raise PackageError("mmdebstrap is not available")
    return found


def record_debian(root: Path, environ: Mapping[str, str]) -> list[dict[str, str]]:
    """Installed package versions (from dpkg's database) with the sha256 of their debs.

    The debs are deleted once hashed.
    """
    result = subprocess.run(
        [
            "dpkg-query",
            f"--admindir={root}/var/lib/dpkg",
            "-W",
            "-f=${Package}\t${Version}\t${Architecture}\n",
        ],
        capture_output=True,
        check=False,
        env=tool_env(environ),
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
