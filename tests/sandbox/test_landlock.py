"""Landlock: writes only beneath the writable directories; /proc and devices closed."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import socket
from pathlib import Path

import pytest

from pistond.sandbox import landlock

ABI = landlock.abi_version()
pytestmark = pytest.mark.skipif(ABI == 0, reason="this kernel has no Landlock")
PR_SET_NO_NEW_PRIVS = 38


def _in_child(probe) -> dict[str, int]:
    """Run ``probe`` in a forked, Landlock-restricted child; its results (errno per probe)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            results = probe()
            os.write(write, json.dumps(results).encode())
        finally:
            os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    os.close(read)
    os.waitpid(pid, 0)
    return json.loads(data)


def _attempt(fn) -> int:
    try:
        fn()
    except OSError as exc:
        return exc.errno or -1
    return 0


def test_landlock_writes_only_beneath_writable(tmp_path: Path) -> None:
    """Creating and writing files works in the box, and fails elsewhere and in /proc."""
    box = tmp_path / "box"
    box.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("canary")

    def probe() -> dict[str, int]:
        landlock.restrict([str(box)], [], abi=ABI)
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:
            os.read(read_end, 1)
            os._exit(0)
        results = {
            "box-create": _attempt(lambda: (box / "new").write_text("x")),
            "box-mkdir": _attempt((box / "dir").mkdir),
            "outside-write": _attempt(lambda: outside.write_text("x")),
            "outside-create": _attempt(lambda: (tmp_path / "new").write_text("x")),
            "box-mknod": _attempt(lambda: os.mknod(box / "fifo", 0o600 | 0o10000)),
            "child-mem": _attempt(lambda: os.close(os.open(f"/proc/{child}/mem", os.O_RDWR))),
            "self-fd-pipe": _attempt(
                lambda: os.close(os.open(f"/proc/self/fd/{write_end}", os.O_WRONLY))
            ),
            "read-outside": _attempt(outside.read_text),
        }
        os.write(write_end, b"x")
        os.waitpid(child, 0)
        return results

    assert _in_child(probe) == {
        "box-create": 0,
        "box-mkdir": 0,
        "outside-write": errno.EACCES,
        "outside-create": errno.EACCES,
        "box-mknod": 0,
        "child-mem": errno.EACCES,
        "self-fd-pipe": 0,
        "read-outside": 0,
    }
    assert outside.read_text() == "canary"


def test_landlock_file_writable_allows_no_creation(tmp_path: Path) -> None:
    """A file-writable directory lets existing files be written, nothing be created."""
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "null").write_text("")

    def probe() -> dict[str, int]:
        landlock.restrict([], [str(dev)], abi=ABI)
        return {
            "write": _attempt(lambda: (dev / "null").write_text("x")),
            "create": _attempt(lambda: (dev / "new").write_text("x")),
        }

    assert _in_child(probe) == {"write": 0, "create": errno.EACCES}


@pytest.mark.skipif(ABI < 6, reason="abstract-socket scoping needs Landlock ABI 6")
def test_landlock_scopes_abstract_sockets(tmp_path: Path) -> None:
    """From ABI 6, an abstract socket outside the domain cannot be reached."""
    name = f"\0pistond-landlock-{os.getpid()}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(name)
    server.listen(1)
    try:

        def probe() -> dict[str, int]:
            landlock.restrict([str(tmp_path)], [], abi=ABI)
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            return {"connect": _attempt(lambda: client.connect(name))}

        assert _in_child(probe) == {"connect": errno.EPERM}
    finally:
        server.close()
