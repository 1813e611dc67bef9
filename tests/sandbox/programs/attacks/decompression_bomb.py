"""Further case: inflate a small gzip of zeros (1 GiB) into argv[1] (a directory)."""

import gzip
import io
import os
import sys
import zlib

from probe import errname, say

compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
stream = io.BytesIO()
block = bytes(2**20)
for _ in range(1024):
    stream.write(compressor.compress(block))
stream.write(compressor.flush())
say("compressed", len(stream.getvalue()))
stream.seek(0)
written = 0
try:
    with gzip.GzipFile(fileobj=stream) as source, open(os.path.join(sys.argv[1], "bomb"), "wb") as target:
        while chunk := source.read(2**20):
            target.write(chunk)
            written += len(chunk)
except OSError as exc:
    say("inflate", f"{errname(exc)} {written}")
    raise
say("inflate", f"ok {written}")
