"""Further case: inflate a small gzip of zeros (1 GiB: 64 members of 16 MiB each) into
argv[1] (a directory)."""

import gzip
import io
import os
import sys
import zlib

from probe import errname, say

compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
member = compressor.compress(bytes(16 * 2**20)) + compressor.flush()
stream = io.BytesIO(member * 64)
say("compressed", len(stream.getvalue()))
path = os.path.join(sys.argv[1], "bomb")
try:
    with gzip.GzipFile(fileobj=stream) as source, open(path, "wb") as target:
        while chunk := source.read(2**20):
            target.write(chunk)
except OSError as exc:
    say("inflate", f"{errname(exc)} {os.stat(path).st_size}")
    raise
say("inflate", f"ok {os.stat(path).st_size}")
