"""Case 11: open host devices, make device nodes, list /dev and use its five devices."""

import os
import stat

from probe import outcome, probe, read_file, say, write_file

for name in (
    "mem", "kmem", "port", "kmsg", "sda", "vda", "nvme0n1", "tty", "tty0", "console",
    "ptmx", "net/tun", "fuse",
):
    probe(f"/dev/{name}", os.open, f"/dev/{name}", os.O_RDWR)
probe("mknod-box", os.mknod, "mem", stat.S_IFCHR | 0o666, os.makedev(1, 1))
probe("mknod-tmp", os.mknod, "/tmp/mem", stat.S_IFCHR | 0o666, os.makedev(1, 1))
say("dev", ",".join(sorted(os.listdir("/dev"))))
say("null-write", outcome(write_file, "/dev/null", b"x"))
say("zero-read", read_file("/dev/zero", 8) == b"\0" * 8)
say("full-write", outcome(write_file, "/dev/full", b"x"))
say("random-read", len(read_file("/dev/random", 16)))
say("urandom-read", len(read_file("/dev/urandom", 16)))
