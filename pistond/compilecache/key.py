"""What identifies a compile: everything that can change what the compile stage does.

The key is the SHA-256 of one MessagePack document holding, in a fixed order:

- the entry format version;
- the runtime: language, version, package and the installed build's ``identity`` (a digest of
  its install stamp, ``pkg-info.json``, ``metadata.json``, compile script and environment, so a
  reinstall or rebuild changes it), and the patterns it declares as compile scratch;
- the compile stage exactly as the sandbox runs it: argv (the compile script and every text
  file name), environment, root view and binds, every limit, working directory, network;
- the box's size and inode bounds;
- the main file, and every submitted file in order: name, whether it is text (utf8, the
  files the compile is given) or binary (base64, hex, msgpack bin), and its bytes' SHA-256.

A runtime without an identity (a plugin that provides none) is never cached.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Final

import attrs
import msgpack

if TYPE_CHECKING:
    from pistond.config import DaemonConfig
    from pistond.models import ExecuteRequest
    from pistond.runtimes import Runtime
    from pistond.sandbox.spec import StageSpec

KEY_FORMAT: Final = 1


def compile_key(
    runtime: Runtime, spec: StageSpec, request: ExecuteRequest, config: DaemonConfig
) -> str | None:
    """The hex key of compiling ``request`` with ``spec``; None when it cannot be cached."""
    if runtime.identity is None:
        return None
    document = [
        KEY_FORMAT,
        [
            runtime.language,
            runtime.version,
            runtime.package,
            runtime.identity,
            list(runtime.compile_scratch),
        ],
        [
            list(spec.argv),
            sorted(spec.env.items()),
            spec.root.path,
            [[bind.source, bind.target, bind.writable] for bind in spec.root.binds],
            list(attrs.astuple(spec.limits)),
            spec.cwd,
            spec.network,
        ],
        [config.disk_size, config.disk_inodes],
        request.main,
        [
            [file.name, file.is_text, hashlib.sha256(file.content).digest()]
            for file in request.files
        ],
    ]
    return hashlib.sha256(msgpack.packb(document, use_bin_type=True)).hexdigest()
