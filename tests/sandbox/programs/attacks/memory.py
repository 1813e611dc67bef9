"""Case 7: exhaust memory. argv[1]: ``list`` (10 MiB bytearrays), ``big`` (one 2 GiB
allocation), ``mmap`` (anonymous map touched page by page) or ``shm`` (fill /dev/shm)."""

import mmap
import sys

PAGE = 4096
mode = sys.argv[1]
if mode == "list":
    hoard = []
    while True:
        block = bytearray(10 * 2**20)
        for offset in range(0, len(block), PAGE):
            block[offset] = 1
        hoard.append(block)
elif mode == "big":
    block = bytearray(2 * 2**30)
    for offset in range(0, len(block), PAGE):
        block[offset] = 1
elif mode == "mmap":
    area = mmap.mmap(-1, 2 * 2**30, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for offset in range(0, len(area), PAGE):
        area[offset] = 1
elif mode == "shm":
    # Files under RLIMIT_FSIZE each, until /dev/shm's size cap (ENOSPC) or the memory cap.
    chunk = b"x" * 900_000
    count = 0
    while True:
        with open(f"/dev/shm/fill{count}", "wb") as file:
            file.write(chunk)
        count += 1
print("survived")
