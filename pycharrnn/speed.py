"""How fast this machine trains and samples (``pycharrnn bench``): a few
seconds of pycharrnn alone. The side-by-side benchmarks against PyTorch and
NumPy are in the repository's benchmarks/ folder (``python
benchmarks/run.py --quick``)."""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

import numpy as np

from .backend import build_info, get_num_threads
from .model import CharRNN
from .optim import Adam

__all__ = ["measure", "WORKLOADS"]

#: (name, model arguments, batch, sequence length): a small one-hot GRU and
#: the course lab's model.
WORKLOADS = [("gru 1x128 one-hot", dict(cell="gru", hidden_size=128), 1, 50),
             ("lstm 3x512 embedding 100", dict(cell="lstm", hidden_size=512, num_layers=3,
                                               embedding_dim=100), 32, 50)]


def _rate(fn, chars: int, seconds: float) -> float:
    """chars / seconds of calls of fn, the best of three spells of
    ``seconds / 3`` after one warm-up call."""
    fn()
    best = 0.0
    for _ in range(3):
        n, t0 = 0, time.perf_counter()
        while n == 0 or time.perf_counter() - t0 < seconds / 3:
            fn()
            n += 1
        best = max(best, n * chars / (time.perf_counter() - t0))
    return best


def measure(seconds: float = 1.0, vocab_size: int = 65, seed: int = 0) -> Dict[str, Any]:
    """Training (forward, BPTT and an Adam update) and sampling (batch 1)
    speed of each of :data:`WORKLOADS`, in characters per second, on random
    ids, about ``seconds`` per measurement; with the build's facts."""
    rng = np.random.default_rng(seed)
    rows: List[Dict[str, Optional[float]]] = []
    for name, kw, B, T in WORKLOADS:
        model = CharRNN(vocab_size, seed=seed, **kw)
        opt = Adam(model, lr=2e-3)
        x, y = (rng.integers(0, vocab_size, (B, T)).astype(np.int32) for _ in range(2))
        state = [model.initial_state(B)]

        def step():
            _, state[0] = model.forward_backward(x, y, state[0])
            opt.step()

        train = _rate(step, B * T, seconds)
        sample = _rate(lambda: model.sample_ids(200, prime=x[0, :10], seed=1), 200, seconds)
        rows.append({"workload": name, "batch": B, "seq_length": T,
                     "train_chars_per_sec": train, "sample_chars_per_sec": sample})
    info = build_info()
    return {"threads": get_num_threads(), "simd": info["simd"], "compiler": info["compiler"],
            "results": rows}
