"""Regenerate tests/data/torch_reference.npz with PyTorch (run by hand:
``python tests/make_torch_reference.py``; needs torch). The file lets the
suite check every cell against PyTorch's numbers without torch installed.

Every case: random float64 weights, ids, targets and initial state; stored
with the loss, logits, final state and every gradient torch autograd gives.
"""

from pathlib import Path

import numpy as np
import torch

import pycharrnn as pc
from torch_helpers import torch_forward_backward

CASES = [  # (cell, nonlinearity, L, B, T, E)
    ("rnn", "tanh", 2, 3, 7, None),
    ("rnn", "relu", 2, 3, 7, 4),
    ("gru", "tanh", 2, 3, 7, None),
    ("gru", "tanh", 1, 2, 5, 4),
    ("lstm", "tanh", 2, 3, 7, None),
    ("lstm", "tanh", 1, 2, 5, 4),
]
V, H = 6, 5


def main() -> None:
    rng = np.random.default_rng(2024)
    out = {"torch_version": np.array(torch.__version__)}
    for i, (cell, nl, L, B, T, E) in enumerate(CASES):
        m = pc.CharRNN(V, hidden_size=H, num_layers=L, cell=cell, nonlinearity=nl,
                       embedding_dim=E, dtype="float64", seed=i)
        m.flat_params[:] = rng.uniform(-0.7, 0.7, m.num_params)
        x = rng.integers(0, V, (B, T))
        y = rng.integers(0, V, (B, T))
        slots = 2 if cell == "lstm" else 1
        st = rng.standard_normal((slots, L, B, H)) * 0.5
        state = (st[0], st[1]) if cell == "lstm" else st[0]
        t = torch_forward_backward(m, x, y, state)
        p = f"case{i}/"
        out[p + "config"] = np.array([cell, nl, str(L), str(B), str(T), str(E or 0)])
        out[p + "x"], out[p + "y"], out[p + "state"] = x, y, st
        out[p + "loss"] = np.array(t["loss"])
        out[p + "logits"] = t["logits"]
        out[p + "final_state"] = np.stack(t["state"]) if cell == "lstm" else t["state"][None]
        out[p + "dstate"] = np.stack(t["dstate"]) if cell == "lstm" else t["dstate"][None]
        for k, v in m.state_dict().items():
            out[p + "param/" + k] = v
        for k, v in t["grads"].items():
            out[p + "grad/" + k] = v
    path = Path(__file__).parent / "data" / "torch_reference.npz"
    path.parent.mkdir(exist_ok=True)
    np.savez_compressed(path, **out)
    print(f"wrote {path} ({len(CASES)} cases, torch {torch.__version__})")


if __name__ == "__main__":
    main()
