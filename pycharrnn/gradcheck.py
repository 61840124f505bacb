"""Gradient check by central differences."""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

__all__ = ["gradcheck", "max_relative_error"]


def max_relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """max |a - n| / max(|a|, |n|) over a whole tensor (0 when both are 0)."""
    a = np.asarray(analytic, np.float64)
    n = np.asarray(numeric, np.float64)
    scale = max(np.abs(a).max(initial=0.0), np.abs(n).max(initial=0.0))
    if scale == 0.0:
        return 0.0
    return float(np.abs(a - n).max() / scale)


def gradcheck(model, x: Any, y: Any, state: Any = None, eps: float = 1e-5,
              max_checks: Optional[int] = None, seed: int = 0) -> Dict[str, float]:
    """Compare the C++ gradients with central differences of the loss.

    The derivative is the fourth-order central difference
    (8 (f(p+e) - f(p-e)) - (f(p+2e) - f(p-2e))) / (12 e): its truncation error
    (~e^4) and rounding error (~1e-16 |loss| / e) are both far below the
    gradients of deep layers, which a two-point difference cannot resolve.

    The model is copied to float64 first (a float32 model is checked through
    its float64 twin). Returns, for every parameter name and for the initial
    state ("h0", and "c0" for the LSTM), the max relative error of
    :func:`max_relative_error`. ``max_checks`` limits the elements probed per
    tensor (a random subset); None probes all. Dropout is not applied.
    """
    from .model import CharRNN

    m = CharRNN(model.vocab if model.vocab is not None else model.vocab_size,
                **{k: v for k, v in model.config().items() if k not in ("vocab_size", "dtype")},
                dtype="float64")
    m.load_state_dict(model.state_dict())
    m.eval()
    if state is None:
        state = m.initial_state(np.asarray(x).reshape(-1, np.asarray(x).shape[-1]).shape[0])
    lstm = m.cell == "lstm"
    parts = [np.array(s, np.float64) for s in state] if lstm else [np.array(state, np.float64)]

    def loss_at() -> float:
        return m.loss(x, y, tuple(parts) if lstm else parts[0])[0]

    m.forward_backward(x, y, tuple(parts) if lstm else parts[0])
    analytic = {k: v.copy() for k, v in m.grads.items()}
    sg = m.state_grad
    analytic_state = [np.array(s) for s in sg] if lstm else [np.array(sg)]
    targets = [(name, m.params[name], analytic[name]) for name in analytic]
    for i, p in enumerate(parts):
        targets.append((("h0", "c0")[i], p, analytic_state[i]))

    rng = np.random.default_rng(seed)
    out: Dict[str, float] = {}
    for name, arr, ana in targets:
        flat = arr.reshape(-1)
        n = flat.size
        probe = np.arange(n) if max_checks is None or max_checks >= n else \
            rng.choice(n, size=max_checks, replace=False)
        num = np.zeros(len(probe))
        for j, i in enumerate(probe):
            old = flat[i]
            f = {}
            for k in (-2, -1, 1, 2):
                flat[i] = old + k * eps
                f[k] = loss_at()
            flat[i] = old
            num[j] = (8 * (f[1] - f[-1]) - (f[2] - f[-2])) / (12 * eps)
        out[name] = max_relative_error(ana.reshape(-1)[probe], num)
    return out
