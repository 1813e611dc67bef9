"""Case 31, Python part: the same idea with perf_counter_ns (hot versus cold reads)."""

import statistics
import time

data = bytearray(64 * 2**20)
hot, cold = [], []
for round_ in range(2000):
    start = time.perf_counter_ns()
    data[0] ^= 1
    hot.append(time.perf_counter_ns() - start)
    index = (round_ * 4096 * 17) % len(data)
    start = time.perf_counter_ns()
    data[index] ^= 1
    cold.append(time.perf_counter_ns() - start)
print("hot", statistics.median(hot))
print("cold", statistics.median(cold))
