"""Case 26: start sleeping threads until the kernel refuses; prints the count and the error."""

import sys
import threading
import time

count = 0
try:
    while True:
        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
        count += 1
except RuntimeError as exc:
    print(f"threads {count} {exc}", flush=True)
    sys.exit(1)
