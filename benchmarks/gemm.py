"""pycharrnn's matrix product against numpy's (OpenBLAS) on the shapes a
training step of the lab model (H=512, L=3, E=100, T=50) multiplies.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/gemm.py [--threads 2] [--rounds 7]

Each round runs every shape in a fresh process per implementation, taking turns
(OpenMP and OpenBLAS threads spin after a call, so sharing a process distorts
the other's timing); the table gives the median GFLOP/s over the rounds.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

# name, ta, tb, M, N, K (C[M,N] = op(A)[M,K] op(B)[K,N]) for B=128 (N = B*T rows)
SHAPES = [
    ("lstm input projection", False, True, 6400, 2048, 512),
    ("lstm weight gradient", True, False, 2048, 512, 6400),
    ("lstm input gradient", False, False, 6400, 512, 2048),
    ("lstm recurrent step", False, True, 128, 2048, 512),
    ("rnn input projection", False, True, 6400, 512, 512),
    ("rnn recurrent step", False, True, 128, 512, 512),
]

_CHILD = r"""
import json, sys, time, numpy as np
impl, threads, shapes = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
if impl == "pycharrnn":
    import pycharrnn as pc
    from pycharrnn import _core
    pc.set_num_threads(threads)
rng = np.random.default_rng(0)
out = []
for name, ta, tb, M, N, K in shapes:
    A = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    B = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    C = np.empty((M, N), np.float32)
    if impl == "pycharrnn":
        f = lambda: _core.gemm(A, B, C, ta=ta, tb=tb)
    else:
        a, b = (A.T if ta else A), (B.T if tb else B)
        f = lambda: np.matmul(a, b, out=C)
    reps = max(2, int(2e9 / (2 * M * N * K)))
    f()
    best = 1e9
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            f()
        best = min(best, (time.perf_counter() - t) / reps)
    out.append(2 * M * N * K / best / 1e9)
print(json.dumps(out))
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=7)
    a = p.parse_args(argv)
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads))
    res = {"pycharrnn": [], "numpy": []}
    for _ in range(a.rounds):
        for impl in res:
            out = subprocess.run([sys.executable, "-c", _CHILD, impl, str(a.threads),
                                  json.dumps(SHAPES)], env=env, capture_output=True, text=True,
                                 check=True).stdout
            res[impl].append(json.loads(out))
    print(f"threads: {a.threads}, median of {a.rounds} rounds\n")
    print("| product | M x N x K | pycharrnn GFLOP/s | numpy GFLOP/s | ratio |")
    print("|---|---|---|---|---|")
    for i, (name, ta, tb, M, N, K) in enumerate(SHAPES):
        ours = statistics.median(r[i] for r in res["pycharrnn"])
        theirs = statistics.median(r[i] for r in res["numpy"])
        print(f"| {name} | {M} x {N} x {K} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
