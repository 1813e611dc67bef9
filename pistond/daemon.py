"""The daemon's root nursery: listeners, plugins, sandbox, jobs, signals and the graceful drain.

Shutdown: the first SIGTERM or SIGINT stops accepting connections and lets running and queued
jobs finish within ``PISTON_SHUTDOWN_GRACE``; then every connection (and so every job still
running) is cancelled, which kills and cleans their sandboxes. A second signal skips the wait.
"""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING

import trio

from pistond import listeners as listening
from pistond.api import Api
from pistond.compilecache import CompileCache
from pistond.config import DaemonConfig, resolve_admin_group
from pistond.jobs import JobManager
from pistond.plugins import get_plugin_manager
from pistond.ppman import PackageManager
from pistond.rpc import serve_rpc
from pistond.rpc.descriptors import lift_open_files_limit
from pistond.runtimes import RuntimeRegistry
from pistond.sandbox.service import open_sandbox

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from pistond.notify import Notifier
    from pistond.sandbox.spawners import RawSpawner

logger = logging.getLogger(__name__)

DRAIN_POLL_SECONDS = 0.05
FILES_PER_JOB = 32
"""Descriptors a running job may hold in the daemon: pipes, pidfds, cgroup files."""
FILES_SPARE = 256


def open_files_needed(config: DaemonConfig) -> int:
    """Descriptors for every allowed RPC connection and running job, and some to spare."""
    connections = config.max_connections or 32_768
    return connections + FILES_PER_JOB * config.max_concurrent_jobs + FILES_SPARE


async def run_daemon(
    config: DaemonConfig,
    spawner: RawSpawner,
    sockets: listening.Listeners,
    notifier: Notifier,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> bool:
    """Serve RPC on ``sockets`` until SIGTERM or SIGINT, then drain and clean up.

    The caller opens ``sockets`` and the ``notifier`` before it starts the spawner (the native
    launcher or the fork server), so it never inherits systemd's descriptors or
    ``NOTIFY_SOCKET``.

    A signal that arrives during start-up is kept and handled as soon as the daemon is ready.

    Returns:
        True after a graceful stop, False when a second signal cut the drain short.
    """
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        return await _run(
            config=config,
            spawner=spawner,
            sockets=sockets,
            notifier=notifier,
            signals=signals,
            task_status=task_status,
        )


async def _run(
    *,
    config: DaemonConfig,
    spawner: RawSpawner,
    sockets: listening.Listeners,
    notifier: Notifier,
    signals: AsyncIterator[int],
    task_status: trio.TaskStatus[None],
) -> bool:
    try:
        lift_open_files_limit(open_files_needed(config))
        plugin_manager = get_plugin_manager(config)
        registry = RuntimeRegistry.from_plugins(plugin_manager, config)
        packages = PackageManager(config, plugin_manager)
        if config.host_runtimes:
            installed = await packages.ensure_host_runtimes()
            if installed:
                logger.info(
                    "host runtimes installed: %s", ", ".join("-".join(p) for p in installed)
                )
                registry.reload()
        cache = await CompileCache.open(config, registry.runtimes())
        packages.uninstalled.append(cache.remove_package)
        async with open_sandbox(config, spawner) as sandbox, trio.open_nursery() as teardown:
            packages.uninstalled.append(lambda _package, _version: sandbox.forget_roots())
            jobs = JobManager.create(config, sandbox, registry, cache=cache)
            # Finished jobs release their box and slot here, after their result went out.
            jobs.teardown = teardown
            api = Api(
                config=config,
                jobs=jobs,
                registry=registry,
                packages=packages,
                sandbox_info=sandbox.info,
                admin_gid=resolve_admin_group(config),
            )
            return await _serve_until_signalled(
                config=config,
                api=api,
                sockets=sockets,
                signals=signals,
                notifier=notifier,
                task_status=task_status,
            )
    finally:
        listening.remove_own_socket(sockets)
        with trio.CancelScope(shield=True):
            await spawner.aclose()


async def _serve_until_signalled(
    *,
    config: DaemonConfig,
    api: Api,
    sockets: list[trio.SocketListener],
    signals: AsyncIterator[int],
    notifier: Notifier,
    task_status: trio.TaskStatus[None],
) -> bool:
    graceful = True
    async with trio.open_nursery() as connections:
        accepting = trio.CancelScope()

        async def accept() -> None:
            with accepting:
                await serve_rpc(
                    sockets,
                    api,
                    max_message_size=config.max_message_size,
                    max_in_flight=config.max_requests_per_connection,
                    frame_timeout=config.frame_timeout / 1000,
                    notification_buffer=config.notification_buffer_size,
                    max_connections=config.max_connections,
                    handler_nursery=connections,
                )

        connections.start_soon(accept)
        count = len(api.registry.runtimes())
        logger.info("pistond ready: %d runtimes, sandbox %s", count, api.sandbox_info.cgroup)
        notifier.notify("READY=1", f"STATUS=serving; {count} runtimes")
        task_status.started()

        first = await anext(signals)
        logger.info("%s: no new connections; draining jobs", signal.Signals(first).name)
        accepting.cancel()
        for sock in sockets:
            await sock.aclose()
        notifier.notify("STOPPING=1", "STATUS=draining jobs")
        with trio.move_on_after(config.shutdown_grace / 1000):
            async with trio.open_nursery() as drain:
                drain.start_soon(_wait_for_jobs, api, drain.cancel_scope)

                async def second_signal() -> None:
                    nonlocal graceful
                    second = await anext(signals)
                    logger.warning("%s: stopping now", signal.Signals(second).name)
                    graceful = False
                    drain.cancel_scope.cancel()

                drain.start_soon(second_signal)
        left = api.jobs.counts()
        if left.running or left.queued:
            logger.warning("cancelling %d running and %d queued jobs", left.running, left.queued)
        connections.cancel_scope.cancel()
    return graceful


async def _wait_for_jobs(api: Api, done: trio.CancelScope) -> None:
    while True:
        counts = api.jobs.counts()
        if counts.running == 0 and counts.queued == 0:
            done.cancel()
            return
        await trio.sleep(DRAIN_POLL_SECONDS)
