"""The runtime registry: installed runtimes by language or alias, matched by semver range.

Plugins provide runtimes through the ``pistond_runtimes`` hook; the registry keeps an immutable
snapshot of them and swaps it whole on :meth:`RuntimeRegistry.reload`, so a job resolving a
runtime during an install sees either the old or the new set, never a mix.
"""

from __future__ import annotations

import logging
import threading
from types import MappingProxyType
from typing import TYPE_CHECKING

import attrs

from pistond.errors import RuntimeUnknown
from pistond.models import RuntimeInfo
from pistond.semver import max_satisfying

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import pluggy

    from pistond.config import DaemonConfig
    from pistond.sandbox.spec import RootView

logger = logging.getLogger(__name__)


def _frozen_env(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


def _frozen_limits(value: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(value))


@attrs.frozen
class Runtime:
    """One language at one version, ready to run jobs."""

    language: str
    """The runtime language (``c++`` for gcc's C++ entry), as requests name it."""
    version: str
    """The package version as written (a semantic version)."""
    aliases: tuple[str, ...]
    """Other names requests may use."""
    package: str | None
    """Piston's ``runtime`` field: the package name, for packages that ``provide`` languages."""
    compiled: bool
    """True when the runtime has a compile stage."""
    root: RootView
    """The sandbox's ``/``: the package's root filesystem (or the host view) plus its binds."""
    compile_argv: tuple[str, ...] | None
    """Compile command; jobs append every utf8 file name. None for interpreted runtimes."""
    run_argv: tuple[str, ...]
    """Run command; jobs append the main file and the request's args."""
    env: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_env, hash=False)
    """The package environment (``.env``); jobs add ``HOME``, ``PISTON_LANGUAGE``, ``PWD`` and
    ``SHLVL`` (unless set here)."""
    limit_overrides: Mapping[str, int] = attrs.field(
        factory=dict, converter=_frozen_limits, hash=False
    )
    """The package's (or provides entry's) ``limit_overrides``."""
    identity: str | None = None
    """A digest of the installed build (install stamp, package files): it changes with every
    reinstall or rebuild. The compile cache keys on it; None: never compile-cached."""
    compile_scratch: tuple[str, ...] = ()
    """Patterns of what the compile leaves in the box that the run does not need (left out of
    compile cache entries): a pattern without ``/`` matches names at any depth."""

    def info(self) -> RuntimeInfo:
        """The ``runtimes`` entry of this runtime."""
        return RuntimeInfo(
            language=self.language,
            version=self.version,
            aliases=self.aliases,
            runtime=self.package,
            compiled=self.compiled,
        )

    def answers_to(self, name: str) -> bool:
        """Whether ``name`` is this runtime's language or one of its aliases."""
        return name == self.language or name in self.aliases


class RuntimeRegistry:
    """Every installed runtime, resolved by name or alias and a semver range.

    Args:
        load: returns the current runtimes in load order (e.g. by calling the plugin hook).

    Thread and task safety: :meth:`reload` builds a new immutable snapshot and swaps it in one
    assignment under a lock; readers never lock and always see a complete snapshot.
    """

    def __init__(self, load: Callable[[], list[Runtime]]) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._snapshot: tuple[Runtime, ...] = ()
        self.reload()

    @classmethod
    def from_plugins(
        cls, plugin_manager: pluggy.PluginManager, config: DaemonConfig
    ) -> RuntimeRegistry:
        """A registry fed by every plugin's ``pistond_runtimes`` hook."""

        def load() -> list[Runtime]:
            results: list[list[Runtime]] = plugin_manager.hook.pistond_runtimes(config=config)
            # pluggy calls the most recently registered plugin first: reverse for load order.
            return [runtime for result in reversed(results) for runtime in result]

        return cls(load)

    def reload(self) -> None:
        """Ask the plugins again and swap in the new set (after installs and uninstalls)."""
        with self._lock:
            seen: set[tuple[str, str]] = set()
            kept: list[Runtime] = []
            for runtime in self._load():
                key = (runtime.language, runtime.version)
                if key in seen:
                    logger.warning(
                        "runtime %s-%s is provided twice; keeping the first",
                        runtime.language,
                        runtime.version,
                    )
                    continue
                seen.add(key)
                kept.append(runtime)
            self._snapshot = tuple(kept)
        logger.info("%d runtimes registered", len(kept))

    def runtimes(self) -> list[Runtime]:
        """Every runtime, in load order."""
        return list(self._snapshot)

    def resolve(self, language: str, version: str) -> Runtime:
        """The highest-versioned runtime named ``language`` (or aliased so) within ``version``.

        Raises:
            RuntimeUnknown: nothing matches (``<language>-<version> runtime is unknown``).
        """
        named = (runtime for runtime in self._snapshot if runtime.answers_to(language))
        best = max_satisfying(named, version, key=lambda runtime: runtime.version)
        if best is None:
            raise RuntimeUnknown(f"{language}-{version} runtime is unknown")
        return best
