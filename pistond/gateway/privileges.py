"""Dropping root: started by root, the gateway becomes its own unprivileged user before serving.

The gateway parses untrusted HTTP, so it never serves as root. An init script, a container's
entry point or a test harness that starts it as root gets what nginx, postgres and sshd do: it
switches to ``PISTON_GATEWAY_USER`` (default ``pistond-gateway``, the system user that
``systemd/sysusers.d/pistond.conf`` creates), keeps that user's groups plus the RPC socket's
group (so it can reach the daemon), and can never regain root: all three uids and gids change,
the capability sets empty themselves, and ``no_new_privs`` bars setuid programs.

``PISTON_GATEWAY_USER`` is ``user`` or ``user:group``, by name or number; ``group`` replaces the
user's primary group. A user that does not exist, or that is root, refuses the start.
"""

from __future__ import annotations

import ctypes
import grp
import os
import pwd
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs
import hypercorn
import starlette
import trio

import pistond
from pistond.config import resolve_socket_group
from pistond.errors import ConfigError

if TYPE_CHECKING:
    from pistond.config import DaemonConfig

VARIABLE: Final = "PISTON_GATEWAY_USER"
_PR_SET_NO_NEW_PRIVS: Final = 38


@attrs.frozen
class Identity:
    """The user, primary group and supplementary groups the gateway serves as."""

    user: str
    home: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    """Supplementary groups: the user's own, plus the RPC socket's group."""


def become_gateway_user(config: DaemonConfig) -> Identity:
    """Drop from root to ``config.gateway_user``, in the socket's group; return who we are now.

    Raises:
        ConfigError: the user or group does not exist, is root, or cannot read the gateway's
            own installation once dropped to (the start must stop with this one line).
        OSError: a set*id call failed.
    """
    identity = resolve_identity(config.gateway_user, resolve_socket_group(config))
    drop_privileges(identity)
    unreadable = unreadable_paths(
        [
            str(Path(module.__file__ or "").parent)
            for module in (pistond, hypercorn, starlette, trio)
        ]
    )
    if unreadable:
        raise ConfigError(
            VARIABLE,
            f"user {identity.user!r} cannot read {unreadable[0]}; install pistond where "
            "service users can read it (e.g. a virtualenv in /opt/pistond)",
        )
    return identity


def resolve_identity(spec: str, socket_group: int | None) -> Identity:
    """The identity ``PISTON_GATEWAY_USER`` names.

    Args:
        spec: ``user`` or ``user:group`` (names or numeric ids).
        socket_group: gid of the RPC socket, added to the supplementary groups; None for none.

    Raises:
        ConfigError: the user or group does not exist, or the user is root.
    """
    user, _, group = spec.partition(":")
    entry = _password_entry(user)
    if entry.pw_uid == 0:
        raise ConfigError(
            VARIABLE, f"{user!r} is root; name an unprivileged user (or pass --allow-root)"
        )
    gid = _group_id(group) if group else entry.pw_gid
    groups = set(os.getgrouplist(entry.pw_name, gid))
    if socket_group is not None:
        groups.add(socket_group)
    return Identity(
        user=entry.pw_name,
        home=entry.pw_dir,
        uid=entry.pw_uid,
        gid=gid,
        groups=tuple(sorted(groups)),
    )


def _password_entry(user: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(
            VARIABLE,
            f"no such user: {user!r} (`pistond install-units --users-only` "
            "creates it; or name another user)",
        ) from None


def _group_id(group: str) -> int:
    try:
        return grp.getgrgid(int(group)).gr_gid if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(VARIABLE, f"no such group: {group!r}") from None


def drop_privileges(identity: Identity) -> None:
    """Become ``identity`` for good (groups first, then gid, then uid) and set no_new_privs.

    Raises:
        PermissionError: the process could regain root afterwards (never expected on Linux).
        OSError: a set*id call failed.
    """
    os.setgroups(list(identity.groups))
    os.setresgid(identity.gid, identity.gid, identity.gid)
    os.setresuid(identity.uid, identity.uid, identity.uid)
    if os.getresuid() != (identity.uid,) * 3 or os.getresgid() != (identity.gid,) * 3:
        raise PermissionError("the gateway's uids or gids did not all change")
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        raise PermissionError("the gateway could become root again after dropping privileges")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(errno)}")
    os.environ.update(HOME=identity.home, USER=identity.user, LOGNAME=identity.user)


def unreadable_paths(paths: list[str]) -> list[str]:
    """Those of ``paths`` the current user cannot read (checked after the drop).

    The gateway imports modules lazily while it serves, so its own installation must stay
    readable by the user it dropped to (a virtualenv under ``/root`` is not).
    """
    return [path for path in paths if not os.access(path, os.R_OK | os.X_OK)]
