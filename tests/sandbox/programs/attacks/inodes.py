"""Case 8: exhaust inodes in the work dir and /tmp; prints ``<where> <errno> <count>``."""

import os

from probe import errname, say

for label, directory in (("workdir", "inodes"), ("tmp", "/tmp/inodes")):
    os.mkdir(directory)
    count = 0
    result = "ok"
    try:
        while True:
            if count % 2:
                os.mkdir(f"{directory}/d{count}")
            else:
                os.close(os.open(f"{directory}/f{count}", os.O_CREAT | os.O_WRONLY, 0o644))
            count += 1
    except OSError as exc:
        result = errname(exc)
    say(label, f"{result} {count}")
