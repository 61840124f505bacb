"""Time one training step of a model whose gates saturate, with subnormal
floats flushed to zero (the default) and without.

    python benchmarks/denormals.py [--cell lstm] [--hidden 128] [--push 1000]

The model is first pushed into saturation, deterministically: --push Adam
steps along one fixed gradient make the logits and gate pre-activations
large. Softmax probabilities and gate derivatives then underflow into the
float32 subnormal range during backpropagation, and x86 runs each operation
on a subnormal in microcode. Prints the median time of one forward+backward
in each mode, measured interleaved.
"""

import argparse
import statistics
import time

import numpy as np

import pycharrnn as pc


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--cell", default="lstm", choices=["rnn", "gru", "lstm"])
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--push", type=int, default=1000,
                   help="Adam steps along one gradient first (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args(argv)
    V, T = 65, 50
    m = pc.CharRNN(V, hidden_size=a.hidden, cell=a.cell, dtype="float32", seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, V, (a.batch, T)), rng.integers(0, V, (a.batch, T))
    m.forward_backward(x, y)
    opt = pc.optim.Adam(m, lr=2e-3)
    for _ in range(a.push):
        opt.step()
    before = pc.get_flush_denormals()
    times = {True: [], False: []}
    try:
        for _ in range(a.repeats):
            for flush in (True, False):
                pc.set_flush_denormals(flush)
                m.forward_backward(x, y)
                n, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < 0.3:
                    m.forward_backward(x, y)
                    n += 1
                times[flush].append((time.perf_counter() - t0) / n)
    finally:
        pc.set_flush_denormals(before)
    g = m.flat_grads
    sub = np.count_nonzero((g != 0) & (np.abs(g) < np.finfo(np.float32).tiny))
    on, off = statistics.median(times[True]), statistics.median(times[False])
    loss, _ = m.loss(x, y)
    print(f"{a.cell} H={a.hidden} B={a.batch} T={T}, after {a.push} steps along one gradient: "
          f"loss {loss:.3g}, subnormal gradients (IEEE mode): {sub}")
    print(f"  forward+backward, subnormals flushed (default): {on * 1e6:9.0f} us")
    print(f"  forward+backward, IEEE subnormals:              {off * 1e6:9.0f} us"
          f"   ({off / on:.2f}x the time)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
