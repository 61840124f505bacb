"""Dropout between layers: seeded, the same mask in forward and backward, p=0 is exact."""

import numpy as np
import pytest

import pycharrnn as pc
from conftest import CELLS, cell_id, make_model
from pycharrnn.gradcheck import max_relative_error


def _packed(m, B, rng):
    s = rng.standard_normal((2 if m.cell == "lstm" else 1, m.num_layers, B, m.hidden_size))
    return s * 0.5


@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
def test_backward_uses_the_forward_mask(cell, rng):
    # With a fixed dropout seed the training loss is a deterministic function
    # of the weights; its central differences must equal the C++ gradients,
    # which holds only if backward reuses the forward pass's mask.
    m = make_model(*cell, V=7, H=6, L=3, E=4, seed=11, dropout=0.4)
    m.flat_params[:] = rng.uniform(-0.8, 0.8, m.num_params)
    core, P = m._core, m.flat_params
    x = rng.integers(0, 7, (3, 5)).astype(np.int32)
    y = rng.integers(0, 7, (3, 5)).astype(np.int32)
    s0 = _packed(m, 3, rng)
    s1, ds = np.empty_like(s0), np.empty_like(s0)
    G = np.empty_like(P)
    seed = 987654321
    loss = core.forward_backward(P, G, x, y, s0, s1, ds, train=True, seed=seed)
    assert loss == core.loss(P, x, y, s0, s1, train=True, seed=seed)
    assert loss != core.loss(P, x, y, s0, s1, train=False, seed=0)  # dropout is active
    assert loss != core.loss(P, x, y, s0, s1, train=True, seed=seed + 1)  # and seeded
    eps = 1e-5
    probe = rng.choice(P.size, 120, replace=False)
    num = np.empty(probe.size)
    for j, i in enumerate(probe):
        old = P[i]
        f = {}
        for k in (-2, -1, 1, 2):
            P[i] = old + k * eps
            f[k] = core.loss(P, x, y, s0, s1, train=True, seed=seed)
        P[i] = old
        num[j] = (8 * (f[1] - f[-1]) - (f[2] - f[-2])) / (12 * eps)
    assert max_relative_error(G[probe], num) < 1e-6


@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
def test_dropout_zero_equals_no_dropout_exactly(cell, rng):
    a = make_model(*cell, V=7, H=6, L=3, E=4, seed=11, dropout=0.0)
    b = make_model(*cell, V=7, H=6, L=3, E=4, seed=11, dropout=0.5)
    b.load_state_dict(a.state_dict())
    x = rng.integers(0, 7, (2, 9))
    la, sa = a.forward_backward(x, x)  # training mode, p = 0
    ga = a.flat_grads.copy()
    b.eval()  # p = 0.5 but evaluation: no dropout
    lb, sb = b.forward_backward(x, x)
    assert la == lb
    assert np.array_equal(ga, b.flat_grads)
    la2, _ = a.loss(x, x)
    assert la == la2


def test_dropout_is_reproducible_and_changes_between_steps(rng):
    x = rng.integers(0, 7, (2, 9))
    a, b = (make_model(*CELLS[0], V=7, H=6, L=3, E=4, seed=11, dropout=0.3) for _ in range(2))
    first = [a.forward_backward(x, x)[0] for _ in range(3)]
    second = [b.forward_backward(x, x)[0] for _ in range(3)]
    assert first == second  # same model seed, same masks
    assert len(set(first)) == 3  # a new mask every step


def test_dropout_keeps_the_expected_fraction():
    # Inverted dropout: E[mask] = 1. A 2-layer linear-ish check: the mean of
    # the second layer's pre-activation input over many masks is unbiased.
    m = pc.CharRNN(3, hidden_size=200, num_layers=2, cell="rnn", embedding_dim=2,
                   dropout=0.25, dtype="float64", seed=0)
    x = np.zeros((1, 1), np.int64)
    m.eval()
    base, _ = m.loss(x, x)
    m.train()
    losses = []
    core = m._core
    s0 = np.zeros((1, 2, 1, 200))
    s1 = np.empty_like(s0)
    lg = np.empty((1, 1, 3))
    outs = []
    for seed in range(400):
        core.forward(m.flat_params, x.astype(np.int32), s0, s1, lg, train=True, seed=seed)
        outs.append(lg.copy())
        losses.append(seed)
    # Zeroed units: with p = 0.25 about a quarter of the 200 inputs of layer 1
    # are dropped, so different seeds give different logits...
    assert len({o.tobytes() for o in outs}) > 390
    # ...and the first-order effect averages out: the mean logits approach
    # the evaluation logits.
    ev = np.empty_like(lg)
    core.forward(m.flat_params, x.astype(np.int32), s0, s1, ev)
    spread = np.std([o for o in outs], axis=0)
    assert np.all(np.abs(np.mean(outs, axis=0) - ev) < 4 * spread / np.sqrt(len(outs)) + 0.02)
