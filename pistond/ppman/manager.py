"""The package manager the RPC API uses: list, install and uninstall packages.

Packages come from local recipes (the ``pistond_recipe_directories`` hook) and Piston-format
indexes (the ``pistond_package_indexes`` hook). Installs of one package name are serialised
by a per-name lock; builds and downloads run in worker threads, never on the event loop, and
their progress lines are handed to the caller's async callback.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

import attrs
import trio
from pistond_packages.layout import PackageLayout, installed_packages

from pistond.errors import PackageError, PackageNotFound
from pistond.models import PackageInfo
from pistond.ppman import install as installing
from pistond.ppman.build import Builder
from pistond.ppman.index import IndexCache, IndexEntry
from pistond.ppman.recipes import (
    HostSource,
    Recipe,
    detect_version,
    find_recipes,
    host_binaries_present,
)
from pistond.semver import Version, parse_range, parse_version

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    import pluggy

    from pistond.config import DaemonConfig

logger = logging.getLogger(__name__)

SOURCE_LOCAL: Final = "local"
SOURCE_INDEX: Final = "index"


@attrs.frozen
class Candidate:
    """A package version that can be installed: a recipe or an index entry."""

    language: str
    version: str
    recipe: Recipe | None = None
    entry: IndexEntry | None = None

    @property
    def source(self) -> str:
        """``local`` or ``index``."""
        return SOURCE_LOCAL if self.recipe is not None else SOURCE_INDEX


async def _discard(_line: str) -> None:
    """A progress callback that drops every line."""


class PackageManager:
    """Lists, installs and uninstalls packages under ``config.packages_directory``.

    Args:
        config: the daemon configuration.
        plugin_manager: source of recipe directories and index URLs; None builds one.
    """

    def __init__(
        self, config: DaemonConfig, plugin_manager: pluggy.PluginManager | None = None
    ) -> None:
        if plugin_manager is None:
            from pistond.plugins import get_plugin_manager  # noqa: PLC0415 (avoids an import cycle)

            plugin_manager = get_plugin_manager(config)
        self.config = config
        self.plugin_manager = plugin_manager
        self.indexes = IndexCache()
        self._locks: dict[str, trio.Lock] = {}
        self._host_versions: dict[tuple[str, ...], str | None] = {}
        self.uninstalled: list[Callable[[str, str], None]] = []
        """Called with the package and version after each uninstall (the compile cache drops
        the package's entries)."""

    @property
    def packages_directory(self) -> Path:
        """``<data>/packages``."""
        return self.config.packages_directory

    def recipe_directories(self) -> list[Path]:
        """Recipe directories from every plugin, in hook order."""
        results = self.plugin_manager.hook.pistond_recipe_directories(config=self.config)
        return [path for result in results for path in result]

    def index_urls(self) -> list[str]:
        """Index URLs from every plugin."""
        results = self.plugin_manager.hook.pistond_package_indexes(config=self.config)
        return [url for result in results for url in result]

    def host_version(self, source: HostSource) -> str | None:
        """The detected version of a host source (cached: host binaries rarely change)."""
        key = source.version_command
        if key not in self._host_versions:
            self._host_versions[key] = detect_version(source)
        return self._host_versions[key]

    def candidates(self) -> list[Candidate]:
        """Every installable package version: recipes first, then index entries (blocking)."""
        found: list[Candidate] = []
        for recipe in find_recipes(self.recipe_directories()):
            version = recipe.metadata.version
            if isinstance(recipe.source, HostSource):
                if not self.config.host_runtimes or not host_binaries_present(recipe.source):
                    continue
                detected = self.host_version(recipe.source)
                if detected is None:
                    continue
                version = detected
            found.append(Candidate(recipe.package, version, recipe=recipe))
        found += [
            Candidate(entry.language, entry.version, entry=entry)
            for entry in self.indexes.get(self.index_urls())
        ]
        return found

    def _packages_blocking(self) -> list[PackageInfo]:
        listed: list[PackageInfo] = []
        seen: set[tuple[str, str]] = set()
        for candidate in self.candidates():
            key = (candidate.language, candidate.version)
            if key in seen:
                continue
            seen.add(key)
            layout = PackageLayout.of(self.packages_directory, *key)
            listed.append(
                PackageInfo(*key, installed=layout.is_installed(), source=candidate.source)
            )
        for layout in installed_packages(self.packages_directory):
            key = (layout.package, layout.version)
            if key not in seen:
                source = SOURCE_INDEX if "index" in layout.read_pkg_info() else SOURCE_LOCAL
                listed.append(PackageInfo(*key, installed=True, source=source))
        return listed

    async def packages(self) -> list[PackageInfo]:
        """Local recipes and index entries with their install state, plus installed leftovers."""
        return await trio.to_thread.run_sync(self._packages_blocking)

    def choose(self, candidates: list[Candidate], language: str, version: str) -> Candidate:
        """The highest candidate named exactly ``language`` within ``version``; recipes win ties.

        Raises:
            PackageNotFound: ``Requested package <language>-<version> does not exist``.
        """
        wanted = parse_range(version)
        best: tuple[Version, Candidate] | None = None
        for candidate in candidates:
            parsed = parse_version(candidate.version)
            if candidate.language != language or parsed is None or wanted is None:
                continue
            if not wanted.test(parsed):
                continue
            if best is None or parsed > best[0]:
                best = (parsed, candidate)
        if best is None:
            raise PackageNotFound(f"Requested package {language}-{version} does not exist")
        return best[1]

    def _lock(self, language: str) -> trio.Lock:
        return self._locks.setdefault(language, trio.Lock())

    async def install(
        self,
        language: str,
        version: str,
        progress: Callable[[str], Awaitable[None]] = _discard,
    ) -> tuple[str, str]:
        """Build or download the highest package version matching ``version``.

        Args:
            language: the package name (not an alias or provided language).
            version: a semver range.
            progress: awaited with each progress line; its failures are ignored.

        Returns:
            ``(package, resolved version)``.

        Raises:
            PackageNotFound: nothing matches.
            PackageError: ``Already installed``, or the build or download failed.
        """
        candidates = await trio.to_thread.run_sync(self.candidates)
        chosen = self.choose(candidates, language, version)
        return await self._install(chosen, progress)

    async def _install(
        self, chosen: Candidate, progress: Callable[[str], Awaitable[None]]
    ) -> tuple[str, str]:
        """Build (recipe) or download (index entry) exactly ``chosen``."""
        token = trio.lowlevel.current_trio_token()

        def report(line: str) -> None:
            logger.info("%s-%s: %s", chosen.language, chosen.version, line)
            try:
                trio.from_thread.run(progress, self.scrub(line), trio_token=token)
            except Exception:
                logger.debug("progress callback failed", exc_info=True)

        async with self._lock(chosen.language):
            try:
                if chosen.recipe is not None:
                    builder = Builder(self.packages_directory, report)
                    await trio.to_thread.run_sync(builder.build, chosen.recipe, chosen.version)
                else:
                    assert chosen.entry is not None
                    await trio.to_thread.run_sync(
                        installing.install_from_index,
                        self.packages_directory,
                        chosen.entry,
                        report,
                    )
            except PackageError as exc:
                logger.error("%s-%s: %s", chosen.language, chosen.version, exc.message)
                raise PackageError(self.scrub(exc.message)) from None
        return chosen.language, chosen.version

    def scrub(self, text: str) -> str:
        """``text`` without the host's data directory paths (build output names them)."""
        for directory, placeholder in (
            (self.packages_directory, "<packages>"),
            (self.config.data_directory, "<data>"),
        ):
            text = text.replace(str(directory), placeholder)
            resolved = str(directory.resolve())
            if resolved != str(directory):
                text = text.replace(resolved, placeholder)
        return text

    async def uninstall(self, language: str, version: str) -> tuple[str, str]:
        """Remove the highest installed version of package ``language`` within ``version``.

        Resolved against installed packages only (no index needed); every runtime of the
        package disappears at the next registry reload.

        Raises:
            PackageNotFound: no installed version matches.
            PackageError: the removal failed.
        """
        installed = await trio.to_thread.run_sync(
            lambda: list(installed_packages(self.packages_directory))
        )
        candidates = [Candidate(layout.package, layout.version) for layout in installed]
        try:
            chosen = self.choose(candidates, language, version)
        except PackageNotFound:
            raise PackageNotFound(f"{language}-{version} is not installed") from None
        async with self._lock(chosen.language):
            layout = PackageLayout.of(self.packages_directory, chosen.language, chosen.version)
            await trio.to_thread.run_sync(installing.uninstall, self.packages_directory, layout)
        for hook in self.uninstalled:
            hook(chosen.language, chosen.version)
        return chosen.language, chosen.version

    async def ensure_host_runtimes(
        self, progress: Callable[[str], Awaitable[None]] = _discard
    ) -> list[tuple[str, str]]:
        """Install every host recipe whose binaries exist and whose version is not installed.

        For daemon start with ``PISTON_HOST_RUNTIMES`` on; failures are logged and skipped.
        Returns the packages installed.
        """
        done: list[tuple[str, str]] = []
        for candidate in await trio.to_thread.run_sync(self.candidates):
            recipe = candidate.recipe
            if recipe is None or not recipe.is_host:
                continue
            layout = PackageLayout.of(
                self.packages_directory, candidate.language, candidate.version
            )
            if layout.is_installed():
                continue
            try:
                # This very recipe: a Debian recipe of the same version must not be built here.
                done.append(await self._install(candidate, progress))
            except PackageError as exc:
                logger.warning("host runtime %s not installed: %s", candidate.language, exc.message)
        return done
