"""Helpers shared by the Python attack programs (sent beside each one as ``probe.py``).

Each probe prints one line ``name result``: ``ok`` when the call succeeded, else the errno
name (``EPERM``) or the exception class, so a test compares a whole table.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from typing import Any, Callable

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def errname(exc: OSError) -> str:
    """The errno name of an OSError (``EPERM``)."""
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))


def outcome(fn: Callable[..., Any], *args: Any) -> str:
    """``ok``, the errno name of an OSError, or the exception's class name."""
    try:
        fn(*args)
    except OSError as exc:
        return errname(exc)
    except Exception as exc:  # noqa: BLE001 - every failure is a result here
        return type(exc).__name__
    return "ok"


def say(name: str, result: object) -> None:
    """Print one probe line and flush it at once."""
    sys.stdout.write(f"{name} {result}\n")
    sys.stdout.flush()


def probe(name: str, fn: Callable[..., Any], *args: Any) -> str:
    """Run ``fn(*args)`` and print its outcome as ``name outcome``."""
    result = outcome(fn, *args)
    say(name, result)
    return result


def _arg(value: Any) -> Any:
    if isinstance(value, int):
        return ctypes.c_ulong(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, bytes):
        return ctypes.c_char_p(value)
    return value


def syscall(number: int, *args: Any) -> int:
    """The raw system call; raises OSError with its errno when it returns -1."""
    ctypes.set_errno(0)
    result = int(libc.syscall(ctypes.c_long(number), *(_arg(a) for a in args)))
    if result == -1:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def errno_of(number: int, *args: Any) -> str:
    """``ok`` or the errno name of a raw system call."""
    return outcome(syscall, number, *args)


def write_file(path: str, data: bytes, flags: int = os.O_WRONLY) -> None:
    """Open ``path`` with ``flags`` and write ``data``."""
    fd = os.open(path, flags | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read_file(path: str, size: int = 65536) -> bytes:
    """Up to ``size`` bytes of ``path``."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)
