"""The bytes of one compile cache entry: a compile's result and the box it left, hash-checked.

Layout: ``MAGIC`` (8 bytes, holding the format version), the SHA-256 of the body (32 bytes),
then the body, one MessagePack map::

    {"key": str, "runtime": {...}, "result": Stage, "mode": int,
     "entries": [[kind, path, mode, mtime_ns, content], ...]}

:func:`decode` checks the magic, the hash, the key and every field's type and refuses anything
else with :class:`CorruptEntry`; a truncated, altered or misplaced file is never served.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Final

import attrs
import msgpack

from pistond.convert import converter
from pistond.models import StageResult
from pistond.sandbox.hostfs import BoxTree, EntryKind, TreeEntry

if TYPE_CHECKING:
    from collections.abc import Mapping

MAGIC: Final = b"PDCC\x00\x00\x00\x01"
"""``PDCC`` and the format version (1)."""
HEADER_SIZE: Final = len(MAGIC) + hashlib.sha256().digest_size


class CorruptEntry(ValueError):
    """Raised by :func:`decode` when an entry's bytes are not an intact entry for its key."""


@attrs.frozen
class CachedCompile:
    """A compile stage that succeeded: its result and what it left in the box."""

    result: StageResult
    tree: BoxTree


def encode(key: str, runtime: Mapping[str, Any], compiled: CachedCompile) -> bytes:
    """The file content of the entry ``key``; ``runtime`` describes its runtime (for logs)."""
    body: bytes = msgpack.packb(
        {
            "key": key,
            "runtime": dict(runtime),
            "result": converter.unstructure(compiled.result),
            "mode": compiled.tree.mode,
            "entries": [
                [entry.kind.value, entry.path, entry.mode, entry.mtime_ns, entry.content]
                for entry in compiled.tree.entries
            ],
        },
        use_bin_type=True,
    )
    return MAGIC + hashlib.sha256(body).digest() + body


def decode(data: bytes, key: str) -> CachedCompile:
    """The compile stored in ``data``, which must be the intact entry of ``key``.

    Raises:
        CorruptEntry: wrong magic or version, a hash mismatch (truncated or altered), another
            key, or a body that is not the shape :func:`encode` writes.
    """
    if len(data) < HEADER_SIZE or not data.startswith(MAGIC):
        raise CorruptEntry("not a compile cache entry of this version")
    body = memoryview(data)[HEADER_SIZE:]
    if hashlib.sha256(body).digest() != data[len(MAGIC) : HEADER_SIZE]:
        raise CorruptEntry("the entry's hash does not match its content")
    try:
        document = msgpack.unpackb(body, raw=False, use_list=True, strict_map_key=True)
        if not isinstance(document, dict) or document.get("key") != key:
            raise CorruptEntry("the entry belongs to another key")
        result = converter.structure(document["result"], StageResult)
        mode = _integer(document["mode"])
        entries = tuple(_entry(raw) for raw in document["entries"])
    except CorruptEntry:
        raise
    except Exception as exc:
        # Whatever a malformed body raises (msgpack, cattrs, KeyError, TypeError...).
        raise CorruptEntry(f"the entry's body is malformed: {type(exc).__name__}") from None
    return CachedCompile(result=result, tree=BoxTree(mode=mode, entries=entries))


def _integer(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CorruptEntry("an integer field is wrong")
    return value


def _entry(raw: object) -> TreeEntry:
    if not isinstance(raw, list) or len(raw) != 5:
        raise CorruptEntry("a tree entry is malformed")
    kind, path, mode, mtime_ns, content = raw
    if not isinstance(path, str) or not isinstance(content, bytes):
        raise CorruptEntry("a tree entry is malformed")
    return TreeEntry(
        path=path,
        kind=EntryKind(kind),
        mode=_integer(mode),
        mtime_ns=_integer(mtime_ns),
        content=content,
    )
