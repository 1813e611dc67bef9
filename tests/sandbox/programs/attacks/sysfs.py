"""Case 30: what /sys tells, and mounting sysfs."""

import os

from probe import errno_of, outcome, say

say("list-sys", outcome(os.listdir, "/sys"))
for path in (
    "/sys/class/net/lo/address",
    "/sys/fs/cgroup",
    "/sys/kernel/debug",
    "/sys/kernel/tracing",
    "/sys/class/dmi/id/product_uuid",
    "/sys/devices/system/cpu/vulnerabilities",
):
    say(path, outcome(os.stat, path))
say("mount-sysfs", errno_of(165, b"sysfs", b"/tmp", b"sysfs", 0, 0))
