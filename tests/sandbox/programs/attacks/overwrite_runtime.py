"""Further case: open the running runtime binaries for writing (runc CVE-2019-5736)."""

import os
import sys

from probe import outcome, say

for name, path in (
    ("self-exe", "/proc/self/exe"),
    ("interpreter", os.path.realpath(sys.executable)),
    ("init-exe", "/proc/1/exe"),
    ("parent-exe", f"/proc/{os.getppid()}/exe"),
):
    say(name, outcome(lambda: os.close(os.open(path, os.O_WRONLY))))
