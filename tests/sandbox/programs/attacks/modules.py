"""Case 32: load kernel modules, directly and through autoloading."""

import socket
import subprocess

from probe import errno_of, outcome, say, write_file

SYS = {"init_module": 175, "finit_module": 313, "delete_module": 176}
say("init_module", errno_of(SYS["init_module"], 0, 0, b""))
say("finit_module", errno_of(SYS["finit_module"], 0, b"", 0))
say("delete_module", errno_of(SYS["delete_module"], b"dummy", 0o4000))
for tool in (["modprobe", "dummy"], ["insmod", "/nonexistent.ko"]):
    try:
        done = subprocess.run(tool, capture_output=True, check=False, timeout=1)
        say(tool[0], "fail" if done.returncode else "ok")
    except FileNotFoundError:
        say(tool[0], "absent")
say("modprobe-path", outcome(write_file, "/proc/sys/kernel/modprobe", b"/tmp/x"))
for name, family, kind, protocol in (
    ("tipc", 30, socket.SOCK_RDM, 0),
    ("rds", 21, socket.SOCK_SEQPACKET, 0),
    ("can", 29, socket.SOCK_RAW, 1),
    ("sctp", socket.AF_INET, socket.SOCK_STREAM, 132),
    ("dccp", socket.AF_INET, 6, 33),  # SOCK_DCCP
):
    say(f"socket-{name}", outcome(lambda: socket.socket(family, kind, protocol).close()))
