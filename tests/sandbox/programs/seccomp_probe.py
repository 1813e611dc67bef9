"""Probe run inside a sandbox: calls restricted syscalls raw and prints {probe: result} as JSON.

Usage: seccomp_probe.py JSON, where JSON maps syscall names to their numbers (the deny-list).
Each result is "ok" or the errno name. Arguments are harmless (zeros).
"""

import ctypes
import errno
import json
import os
import signal
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

SYS_CLONE = 56
SYS_CLONE3 = 435
SYS_SOCKET = 41
SYS_SOCKETPAIR = 53
SYS_PERSONALITY = 135
SYS_GETPID = 39
X32_BIT = 0x40000000


def raw(nr, *args):
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(nr), *(ctypes.c_ulong(a) for a in args))
    if result == -1:
        return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
    return result


def status(nr, *args):
    result = raw(nr, *args)
    if isinstance(result, int) and nr in (SYS_SOCKET, SYS_SOCKETPAIR) and result >= 0:
        os.close(result)
    return "ok" if isinstance(result, int) else result


def clone(flags):
    result = raw(SYS_CLONE, flags | signal.SIGCHLD, 0, 0, 0, 0)
    if result == 0:
        os._exit(0)
    if isinstance(result, int):
        os.waitpid(result, 0)
        return "ok"
    return result


def main():
    denied = json.loads(sys.argv[1])
    table = {name: status(nr, 0, 0, 0, 0, 0, 0) for name, nr in denied.items()}
    for name, flag in json.loads(sys.argv[2]).items():
        table["clone " + name] = clone(flag)
    table["clone plain"] = clone(0)
    table["clone3"] = status(SYS_CLONE3, 0, 0)
    for family in (
        1,
        2,
        10,
        16,
        3,
        4,
        5,
        15,
        17,
        21,
        29,
        30,
        31,
        38,
        40,
        44,
        45,
        (1 << 32) | 1,
        (1 << 32) | 2,
        0xFFFFFFFF,
    ):
        table[f"socket {family:#x}"] = status(SYS_SOCKET, family, 2, 0)
    for protocol in (0, 132, 33, (1 << 32) | 132):
        kind = 6 if protocol == 33 else 1
        table[f"socket inet proto {protocol:#x}"] = status(SYS_SOCKET, 2, kind, protocol)
    pair = (ctypes.c_int * 2)()
    for family in (1, 2, (1 << 32) | 1):
        result = raw(SYS_SOCKETPAIR, family, 1, 0, ctypes.addressof(pair))
        if isinstance(result, int):
            os.close(pair[0])
            os.close(pair[1])
        table[f"socketpair {family:#x}"] = "ok" if isinstance(result, int) else result
    for persona in (
        0xFFFFFFFF,
        0,
        0x0040000,
        0x0008,
        0xFFFFFFFE,
        (1 << 32) | 0xFFFFFFFF,
        (1 << 32) | 0x0008,
        0xFFFFFFFFFFFFFFFF,
    ):
        table[f"personality {persona:#x}"] = status(SYS_PERSONALITY, persona)
    table["x32 getpid"] = status(X32_BIT | SYS_GETPID)
    table["getpid"] = status(SYS_GETPID)
    print(json.dumps(table), flush=True)


main()
