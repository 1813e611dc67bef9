"""The native launcher's wire format: a spawn spec as bytes, and its replies (launcher/wire.c).

The daemon decides every detail of a sandbox (:mod:`pistond.sandbox.recipe` documents the
steps); this module writes that decision down for the launcher, which only carries it out.
A request is one ``SOCK_SEQPACKET`` message: a kind byte, a big-endian u32 id and the
payload; a spawn's payload is a sequence of fields (u16 tag, u32 length, value) and its
descriptors travel as SCM_RIGHTS in the order of the ``FDS`` field's roles.

The constants mirror ``launcher/launcher.h``; :data:`PROTOCOL_VERSION` changes with them.
"""

from __future__ import annotations

import enum
import resource
import struct
from typing import TYPE_CHECKING, Final

import attrs

from pistond.sandbox import rlimits

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from pistond.sandbox.spec import SpawnSpec

PROTOCOL_VERSION: Final = 1

MSG_HELLO: Final = b"H"
MSG_SPAWN: Final = b"S"
MSG_NETNS: Final = b"N"
MSG_REPLY: Final = b"R"

_HEADER: Final = struct.Struct("!cI")
_FIELD: Final = struct.Struct("!HI")
_U32: Final = struct.Struct("!I")
_RLIMIT: Final = struct.Struct("!IIQ")
_REPLY: Final = struct.Struct("!cIiH")
_FEATURES: Final = struct.Struct("!II")

RLIMIT_SOFT_IS_HARD: Final = 0x1
MAX_FDS: Final = 24


class Tag(enum.IntEnum):
    """Spec fields (``enum spec_tag``)."""

    ARGV = 1
    ENV = 2
    CWD = 3
    HOSTNAME = 4
    UID = 5
    RLIMIT = 6
    WRITABLE = 7
    DEV_WRITABLE = 8
    TMPFS = 9
    FLAGS = 10
    FDS = 11


class SpecFlag(enum.IntFlag):
    """``SPEC_*`` flags."""

    SHARE_NETWORK = 0x1
    TIMING = 0x2
    PROC_SYS_RO = 0x4


class FdRole(enum.IntEnum):
    """What each attached descriptor is (``enum fd_role``)."""

    STDIN = 1
    STDOUT = 2
    STDERR = 3
    REPORT = 4
    CONTROL = 5
    BOX = 6
    MNTNS = 7
    NETNS = 8
    CGROUP2 = 9
    CGROUP_V1 = 10


@attrs.frozen
class Reply:
    """One reply of the launcher."""

    request_id: int
    result: int
    """A pid (spawn), 0 (hello, network namespace), or -1 with ``error``."""
    error: str
    payload: bytes


@attrs.frozen
class Features:
    """What the launcher said of itself in its hello reply."""

    protocol: int
    landlock_abi: int


def request(kind: bytes, request_id: int, payload: bytes = b"") -> bytes:
    """A request message."""
    return _HEADER.pack(kind, request_id) + payload


def decode_reply(data: bytes) -> Reply:
    """Parse a reply message.

    Raises:
        ValueError: not a reply, or truncated.
    """
    if len(data) < _REPLY.size:
        raise ValueError("launcher reply too short")
    kind, request_id, result, error_len = _REPLY.unpack_from(data)
    if kind != MSG_REPLY or len(data) < _REPLY.size + error_len:
        raise ValueError("malformed launcher reply")
    error = data[_REPLY.size : _REPLY.size + error_len].decode("utf-8", "replace")
    return Reply(request_id, result, error, data[_REPLY.size + error_len :])


def decode_features(payload: bytes) -> Features:
    """The hello reply's payload.

    Raises:
        ValueError: truncated.
    """
    if len(payload) < _FEATURES.size:
        raise ValueError("launcher hello reply too short")
    protocol, abi = _FEATURES.unpack_from(payload)
    return Features(protocol=protocol, landlock_abi=abi)


def _field(tag: Tag, value: bytes) -> bytes:
    return _FIELD.pack(tag, len(value)) + value


def _text(tag: Tag, value: str) -> bytes:
    return _field(tag, value.encode("utf-8", "surrogateescape"))


def rlimit_fields(spec: SpawnSpec) -> bytes:
    """The stage's rlimit ceilings (:func:`pistond.sandbox.rlimits.wanted_limits`)."""
    same = {resource.RLIMIT_CPU, resource.RLIMIT_CORE}
    return b"".join(
        _field(Tag.RLIMIT, _RLIMIT.pack(which, RLIMIT_SOFT_IS_HARD if which in same else 0, top))
        for which, top in rlimits.wanted_limits(spec.stage.limits).items()
    )


def encode_spawn(
    spec: SpawnSpec,
    *,
    roles: Sequence[FdRole],
    writable: Iterable[str],
    device_writable: Iterable[str],
    timing: bool = False,
) -> bytes:
    """The payload of a spawn request for ``spec``, whose descriptors have ``roles``.

    Raises:
        ValueError: a string holds a NUL byte (exec could not take it), or too many descriptors.
    """
    stage = spec.stage
    strings = [*stage.argv, *(f"{k}={v}" for k, v in stage.env.items()), stage.cwd]
    if any("\0" in text for text in strings) or any("\0" in key for key in stage.env):
        raise ValueError("argv, environment and working directory must not hold NUL bytes")
    if len(roles) > MAX_FDS:
        raise ValueError("too many descriptors for one spawn")
    flags = SpecFlag.PROC_SYS_RO
    if stage.network:
        flags |= SpecFlag.SHARE_NETWORK
    if timing:
        flags |= SpecFlag.TIMING
    parts = [_text(Tag.ARGV, arg) for arg in stage.argv]
    parts += [_text(Tag.ENV, f"{key}={value}") for key, value in stage.env.items()]
    parts += [
        _text(Tag.CWD, stage.cwd),
        _text(Tag.HOSTNAME, spec.hostname),
        _field(Tag.UID, _U32.pack(spec.uid)),
        rlimit_fields(spec),
        _text(Tag.TMPFS, f"size={spec.tmp_size},nr_inodes={spec.tmp_inodes},mode=1777"),
        _field(Tag.FLAGS, _U32.pack(flags)),
        _field(Tag.FDS, bytes(roles)),
    ]
    parts += [_text(Tag.WRITABLE, path) for path in writable]
    parts += [_text(Tag.DEV_WRITABLE, path) for path in device_writable]
    return b"".join(parts)
