"""How fast this machine streams weights through a matrix-vector product.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bandwidth.py

At batch 1 every time step (and every sampled character) multiplies each
recurrent matrix by one vector: the time is the time to read the weights, not
to do the arithmetic. This prints numpy's float32 matrix-vector rate (OpenBLAS
sgemv, the best of several runs) in GB/s of weights read, for weight sizes from
cache-resident to well past L2, at 1 and at 2 threads (each in its own
process, since OpenBLAS reads its thread count at start). Bounds quoted in
benchmarks/RESULTS.md's notes come from these numbers.
"""

import os
import subprocess
import sys

SIZES_MB = (0.25, 1, 2, 4, 8, 12, 16, 20, 24)

_CHILD = r"""
import time, numpy as np
for mb in %r:
    rows = int(mb * 2**20 / 4 / 512)
    W = np.random.default_rng(0).random((rows, 512), dtype=np.float32)
    x = np.ones(512, np.float32); y = np.empty(rows, np.float32)
    reps = max(20, int(2e9 / W.nbytes / 8))
    best = 1e9
    for _ in range(3):
        np.dot(W, x, out=y)
        t = time.perf_counter()
        for _ in range(reps):
            np.dot(W, x, out=y)
        best = min(best, (time.perf_counter() - t) / reps)
    print(mb, W.nbytes / best / 1e9, best * 1e6)
"""


def main() -> int:
    print("| weights MB | threads | GB/s | us per product |")
    print("|---|---|---|---|")
    for threads in (1, 2):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
        out = subprocess.run([sys.executable, "-c", _CHILD % (SIZES_MB,)], env=env,
                             capture_output=True, text=True, check=True).stdout
        for line in out.split("\n"):
            if line.strip():
                mb, gbs, us = line.split()
                print(f"| {float(mb):g} | {threads} | {float(gbs):.1f} | {float(us):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
