"""Case 14: look for the daemon's environment. Prints the environment, whether
/proc/self/environ matches it, which /proc/*/environ are readable, and every readable file
line or environment entry that holds the prefix of the daemon's variables."""

import os

from probe import outcome, read_file, say

NEEDLE = ("PIST" + "OND").encode()  # split so this file itself never matches

for key in sorted(os.environ):
    say("env", f"{key}={os.environ[key]}")
own = read_file("/proc/self/environ").split(b"\0")
say("self-environ-matches", sorted(e.decode() for e in own if e) == sorted(
    f"{k}={v}" for k, v in os.environ.items()
))
say("proc1-environ", outcome(read_file, "/proc/1/environ"))
readable = []
hits = []
for pid in sorted((p for p in os.listdir("/proc") if p.isdigit()), key=int):
    for name in ("environ", "cmdline"):
        try:
            content = read_file(f"/proc/{pid}/{name}", 1 << 20)
        except OSError:
            continue
        if name == "environ":
            readable.append(pid)
        if NEEDLE in content:
            hits.append(content)
say("readable-environ", ",".join(readable))
for top in ("/etc", "/box", "/tmp", "/dev/shm", "/run", "/var", "/root", "/home"):
    for root, _dirs, files in os.walk(top):
        for name in files:
            try:
                content = read_file(os.path.join(root, name), 1 << 20)
            except OSError:
                continue
            if NEEDLE in content:
                hits.append(content)
for content in hits:
    for line in content.replace(b"\0", b"\n").splitlines():
        if NEEDLE in line:
            say("hit", line.decode(errors="replace"))
say("done", len(hits))
