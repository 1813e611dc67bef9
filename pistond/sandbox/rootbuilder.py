"""A template's builder: a short-lived process making one prepared root in a mount namespace.

Started by :mod:`pistond.sandbox.templates` (never imported by the daemon for its own use):
it reads a root plan (JSON, :func:`pistond.sandbox.spec.plan_to_wire`) from stdin, unshares a
mount namespace, builds the plan's static root there with
:func:`pistond.sandbox.mounts.prepare_root` (the same code the Python fork server uses: one
definition of a sandbox's root) and pivots into
it, so the namespace holds nothing of the host's mount tree. It then writes ``1`` on stdout
and waits for EOF on stdin, while the daemon opens its mount namespace; a failure writes
``E`` and the error text (no host paths) instead.
"""

from __future__ import annotations

import json
import os
import sys

from pistond.sandbox import libc, mounts
from pistond.sandbox.spec import plan_from_wire

READY = b"1"
FAILED = b"E"


def main() -> int:
    """Build the root of the plan on stdin; hold the namespace until stdin closes."""
    try:
        plan = plan_from_wire(json.loads(sys.stdin.buffer.readline()))
        libc.unshare(libc.CLONE_NEWNS)
        mounts.prepare_root(plan)
    except OSError as exc:
        _say(FAILED + (exc.strerror or "error").encode("utf-8", "replace"))
        return 1
    except (ValueError, KeyError, TypeError) as exc:
        _say(FAILED + f"bad root plan ({type(exc).__name__})".encode())
        return 1
    _say(READY)
    sys.stdin.buffer.read()
    return 0


def _say(message: bytes) -> None:
    os.write(1, message)
    os.close(1)


if __name__ == "__main__":
    sys.exit(main())
