"""The build jail: package-manager commands run in the sandbox's namespaces and filesystem.

Recipe commands (``environment`` for ``.env``, ``[build] warm``) and the registry clients (pip,
npm) never run on the host as they are. :func:`run_jailed` starts this module as a helper
process (a fresh single-threaded interpreter, as the fork server is). The helper unshares a PID
namespace and forks; the child is the jail's PID 1, dies with the helper (``PR_SET_PDEATHSIG``)
and builds the jail with :mod:`pistond.sandbox`'s own steps, the build profile of one stage:

1. new mount, IPC and UTS namespaces (:func:`pistond.sandbox.namespaces.enter_namespaces`) and,
   unless the command needs the registries, a new network namespace (loopback down: no network);
2. the stage's filesystem (:func:`pistond.sandbox.mounts.build_root`): the package's root
   filesystem, or the read-only host view for commands of rootless packages and for the
   registry clients; the binds; a scratch directory at ``/box``; fresh ``/tmp``, ``/dev`` and
   ``/proc``; then ``pivot_root``;
3. for a writable root (``warm``), ``/`` remounted read-write (still nosuid, nodev);
4. the given uid with no supplementary groups, exactly the given environment, exec.

Profiles in use: ``.env`` as ``nobody`` over the read-only root without network; ``warm`` as
root over the writable, not yet published root without network; pip and npm as ``nobody`` in
the host view with the host's network, the package's ``/opt/<package>`` bound writable.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import TYPE_CHECKING, Any, Final

import attrs

from pistond.ppman.process import CommandError, Completed, run_command
from pistond.sandbox import libc, mounts, namespaces
from pistond.sandbox.spec import Bind, RootView, SpawnSpec, StageLimits, StageSpec

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

NOBODY: Final = 65534
DEFAULT_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOSTNAME: Final = "pistond-build"
TMP_SIZE: Final = 1024 * 1024 * 1024
"""Bytes the jail's /tmp may hold (tmpfs: memory is used only as files are written)."""
TMP_INODES: Final = 262144
_NO_LIMITS: Final = StageLimits(1, 1, None, 1, 1, 1, 1)
"""The mount steps read no limit; the deadline of a jailed command is the caller's timeout."""


class IsolationError(RuntimeError):
    """Raised by :func:`run_jailed` when the jail cannot start or its command times out."""


@attrs.frozen
class IsolatedCommand:
    """A command to run in the build jail."""

    argv: tuple[str, ...]
    box: str
    """A host directory bound read-write at ``/box`` (scratch space, HOME of registry clients)."""
    root: str | None = None
    """The root filesystem; None for the read-only host view."""
    binds: tuple[Bind, ...] = ()
    """Further binds; their targets must exist in a root filesystem (the host view creates them)."""
    writable_root: bool = False
    network: bool = False
    """Share the host's network (registry clients); otherwise a network namespace of its own."""
    cwd: str = "/"
    env: Mapping[str, str] = attrs.field(factory=lambda: {"PATH": DEFAULT_PATH})
    uid: int = NOBODY

    def to_json(self) -> str:
        """The wire form passed to the helper."""
        return json.dumps(attrs.asdict(self, value_serializer=_plain))

    @classmethod
    def from_json(cls, text: str) -> IsolatedCommand:
        """Rebuild a command from :meth:`to_json` output."""
        data = json.loads(text)
        return cls(
            **{
                **data,
                "argv": tuple(data["argv"]),
                "binds": tuple(Bind(**bind) for bind in data["binds"]),
            }
        )

    def spawn_spec(self) -> SpawnSpec:
        """The sandbox stage this command's filesystem is built from."""
        return SpawnSpec(
            stage=StageSpec(
                argv=self.argv,
                env=self.env,
                root=RootView(path=self.root, binds=self.binds),
                limits=_NO_LIMITS,
                cwd=self.cwd,
                network=self.network,
            ),
            box_path=self.box,
            uid=self.uid or NOBODY,
            cgroup_procs=(),
            hostname=HOSTNAME,
            tmp_size=TMP_SIZE,
            tmp_inodes=TMP_INODES,
        )


def _plain(_instance: object, _field: object, value: Any) -> Any:
    return dict(value) if hasattr(value, "items") else value


def run_jailed(
    command: IsolatedCommand,
    *,
    timeout: float,
    on_line: Callable[[str], None],
    capture: bool = False,
) -> Completed:
    """Run ``command`` in the build jail and wait for it.

    Args:
        command: what to run, and over which root.
        timeout: seconds before the helper's whole process group (the jail with it) is killed.
        on_line: receives output lines (stderr only, when ``capture`` is set).
        capture: keep the command's stdout as bytes.

    Raises:
        IsolationError: the helper could not start, or the command timed out.
    """
    try:
        return run_command(
            [sys.executable, "-I", "-m", "pistond.ppman.isolate", command.to_json()],
            env={"PATH": DEFAULT_PATH},
            timeout=timeout,
            on_line=on_line,
            capture=capture,
            name=os.path.basename(command.argv[0]),
        )
    except CommandError as exc:
        raise IsolationError(str(exc)) from None


# ---- the helper process (runs as root, single-threaded) -------------------------------------


def _enter_jail(command: IsolatedCommand) -> None:
    """In the jail's PID 1: namespaces, filesystem, credentials; then exec (never returns)."""
    libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
    namespaces.enter_namespaces(network=command.network)
    spec = command.spawn_spec()
    mounts.build_root(spec)
    # Without the registries the jail has no network at all: its loopback stays down (bringing
    # it up would need CAP_NET_ADMIN, which a container may not grant; no build step needs it).
    namespaces.set_hostname(spec.hostname)
    if command.writable_root:
        # The root is a read-only bind of the build's own tree; the build profile lifts only
        # the read-only flag of that one mount (nosuid and nodev stay).
        libc.mount(
            None,
            "/",
            None,
            libc.MS_REMOUNT | libc.MS_BIND | libc.MS_NOSUID | libc.MS_NODEV,
            what="writable /",
        )
    os.chdir(command.cwd)
    os.setgroups([])
    os.setresgid(command.uid, command.uid, command.uid)
    os.setresuid(command.uid, command.uid, command.uid)
    os.execve(command.argv[0], command.argv, dict(command.env))


def _helper_main(argv: list[str]) -> int:
    command = IsolatedCommand.from_json(argv[1])
    libc.unshare(libc.CLONE_NEWPID)
    pid = os.fork()
    if pid == 0:
        try:
            _enter_jail(command)
        except BaseException as exc:
            os.write(2, f"build jail: {exc}\n".encode())
        os._exit(127)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(_helper_main(sys.argv))
