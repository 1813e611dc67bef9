"""Case 24, Python part: walk ``..`` from /, /proc/self/root and /proc/1/root. argv[1]: the
name of the host canary in the host's /."""

import os
import sys

from probe import outcome, say

canary = sys.argv[1]
say("dotdot", os.path.realpath("/" + "../" * 64))
say("self-root", os.readlink("/proc/self/root"))
say("init-root", outcome(os.listdir, "/proc/1/root"))
for start in ("/", "/proc/self/root/", "/proc/1/root/", "/box/../../"):
    say(f"canary:{start}", outcome(os.stat, start + "../" * 32 + canary))
