"""The RPC method table: PROTOCOL.md methods to handlers, with authorisation."""

from __future__ import annotations

import logging
import os
import pwd
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio

from pistond import interactive
from pistond._version import __version__
from pistond.convert import converter
from pistond.errors import Forbidden, InvalidParams, MethodNotFound
from pistond.models import PackageRef, PingResult, StatusResult

if TYPE_CHECKING:
    from pistond.config import DaemonConfig
    from pistond.jobs import JobManager
    from pistond.models import SandboxInfo
    from pistond.ppman import PackageManager
    from pistond.rpc import Peer
    from pistond.runtimes import RuntimeRegistry

logger = logging.getLogger(__name__)

PROTOCOL_VERSION: Final = 1
Handler = Callable[[Mapping[str, Any], "Peer"], Awaitable[Any]]
ADMIN_METHODS: Final = frozenset({"packages.install", "packages.uninstall"})
"""Methods only root or members of the socket group may call."""


def _wire(record: object) -> dict[str, Any]:
    """A reply record as the wire carries it (the one converter)."""
    wire: dict[str, Any] = converter.unstructure(record)
    return wire


def _no_params(params: Mapping[str, Any]) -> None:
    if params:
        raise InvalidParams(f"unknown field {sorted(params)[0]!r}")


def _package_params(params: Mapping[str, Any]) -> tuple[str, str]:
    unknown = sorted(set(params) - {"language", "version"})
    if unknown:
        raise InvalidParams(f"unknown field {unknown[0]!r}")
    language, version = params.get("language"), params.get("version", "*")
    if not isinstance(language, str) or not language:
        raise InvalidParams("language is required as a string")
    if not isinstance(version, str) or not version:
        raise InvalidParams("version is required as a string")
    return language, version


@attrs.define(eq=False)
class Api:
    """Dispatches PROTOCOL.md methods; the RPC server calls it once per request."""

    config: DaemonConfig
    jobs: JobManager
    registry: RuntimeRegistry
    packages: PackageManager
    sandbox_info: SandboxInfo
    admin_gid: int | None
    """Group whose members may manage packages (besides root)."""
    started: float = attrs.field(factory=trio.current_time)
    _methods: dict[str, Handler] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._methods = {
            "ping": self.ping,
            "status": self.status,
            "runtimes": self.runtimes,
            "execute": self.execute,
            "job.start": self.job_start,
            "job.write": interactive.write,
            "job.close_stdin": interactive.close_stdin,
            "job.signal": self.job_signal,
            "job.kill": self.job_kill,
            "packages": self.list_packages,
            "packages.install": self.install_package,
            "packages.uninstall": self.uninstall_package,
        }

    @property
    def methods(self) -> frozenset[str]:
        """Every method name this API answers."""
        return frozenset(self._methods)

    async def __call__(self, method: str, params: dict[str, Any], peer: Peer) -> Any:
        """Run the handler of ``method``.

        Raises:
            MethodNotFound: no such method.
            Forbidden: the peer may not call it.
        """
        handler = self._methods.get(method)
        if handler is None:
            raise MethodNotFound(f"unknown method {method[:64]!r}")
        if method in ADMIN_METHODS and not self.is_admin(peer):
            raise Forbidden(f"{method} is only for root or the socket group")
        return await handler(params, peer)

    def is_admin(self, peer: Peer) -> bool:
        """Root, or a member (primary or supplementary) of the socket group."""
        uid, gid = peer.credentials.uid, peer.credentials.gid
        if uid == 0:
            return True
        if self.admin_gid is None:
            return False
        if gid == self.admin_gid:
            return True
        try:
            user = pwd.getpwuid(uid)
        except KeyError:
            return False
        return self.admin_gid in os.getgrouplist(user.pw_name, user.pw_gid)

    async def ping(self, params: Mapping[str, Any], peer: Peer) -> dict[str, Any]:
        """``ping``: the daemon's version and protocol."""
        _no_params(params)
        return _wire(PingResult(version=__version__, protocol=PROTOCOL_VERSION))

    async def status(self, params: Mapping[str, Any], peer: Peer) -> dict[str, Any]:
        """``status``: uptime, job counts, sandbox capabilities, configured limits and the
        compile cache's counters."""
        _no_params(params)
        status = StatusResult(
            version=__version__,
            uptime=round(trio.current_time() - self.started, 3),
            jobs=self.jobs.counts(),
            sandbox=self.sandbox_info,
            limits=converter.unstructure(self.config.limits),
            compile_cache=self.jobs.cache_statistics(),
        )
        return _wire(status)

    async def runtimes(self, params: Mapping[str, Any], peer: Peer) -> list[dict[str, Any]]:
        """``runtimes``: every installed runtime."""
        _no_params(params)
        result: list[dict[str, Any]] = converter.unstructure(
            [runtime.info() for runtime in self.registry.runtimes()]
        )
        return result

    async def execute(self, params: Mapping[str, Any], peer: Peer) -> dict[str, Any]:
        """``execute``: run a job to completion."""
        job = self.jobs.prepare(params)
        result: dict[str, Any] = converter.unstructure(await self.jobs.execute(job))
        return result

    async def job_start(self, params: Mapping[str, Any], peer: Peer) -> dict[str, Any]:
        """``job.start``: start an interactive job owned by this connection."""
        return await interactive.start_job(self.jobs, params, peer)

    async def job_signal(self, params: Mapping[str, Any], peer: Peer) -> dict[str, Any]:
        """``job.signal``."""
        return await interactive.signal(self.jobs, params, peer)

    async def job_kill(self, params: Mapping[str, Any], peer: Peer) -> dict[str, Any]:
        """``job.kill``."""
        return await interactive.kill(self.jobs, params, peer)

    async def list_packages(self, params: Mapping[str, Any], peer: Peer) -> list[dict[str, Any]]:
        """``packages``: recipes and index entries, with their install state."""
        _no_params(params)
        result: list[dict[str, Any]] = converter.unstructure(await self.packages.packages())
        return result

    async def install_package(self, params: Mapping[str, Any], peer: Peer) -> dict[str, Any]:
        """``packages.install``: build or download a package; build lines go as notifications."""
        language, version = _package_params(params)

        async def progress(line: str) -> None:
            if not peer.closed:
                await peer.notify(
                    "packages.progress", {"language": language, "version": version, "line": line}
                )

        name, resolved = await self.packages.install(language, version, progress)
        self.registry.reload()
        return _wire(PackageRef(language=name, version=resolved))

    async def uninstall_package(self, params: Mapping[str, Any], peer: Peer) -> dict[str, Any]:
        """``packages.uninstall``: remove an installed package and its runtimes."""
        language, version = _package_params(params)
        name, resolved = await self.packages.uninstall(language, version)
        self.registry.reload()
        return _wire(PackageRef(language=name, version=resolved))
