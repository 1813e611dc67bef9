"""A job whose output must stay intact while another job attacks: prints a counted line every
50 ms for argv[1] seconds."""

import sys
import time

end = time.monotonic() + float(sys.argv[1])
count = 0
while time.monotonic() < end:
    print(f"line {count}", flush=True)
    count += 1
    time.sleep(0.05)
print("done", flush=True)
