"""Case 13: 8 x CPU-count busy processes (multiprocessing)."""

import multiprocessing
import os


def spin() -> None:
    while True:
        pass


if __name__ == "__main__":
    workers = [multiprocessing.Process(target=spin) for _ in range(8 * (os.cpu_count() or 1))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
