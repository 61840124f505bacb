"""The C++ forward/backward equals the NumPy reference (pycharrnn.reference) in float64."""

import itertools

import numpy as np
import pytest

from pycharrnn import reference as ref
from conftest import CELLS, cell_id, make_model, random_state
from pycharrnn.gradcheck import max_relative_error

TOL = 1e-10


def run_both(cell, nl, L, E, B, T, rng, V=7, H=5):
    params = ref.init_params(rng, V, H, L, cell, E)
    m = make_model(cell, nl, V, H, L, E)
    m.load_state_dict(params)
    x = rng.integers(0, V, (B, T))
    y = rng.integers(0, V, (B, T))
    st = random_state(rng, cell, L, B, H)
    r = ref.forward_backward(params, x, y, st, cell, nl)
    return m, x, y, st, r


@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
@pytest.mark.parametrize("L,E,B,T", list(itertools.product([1, 3], [None, 3], [1, 4], [1, 5])))
def test_forward_backward_matches_reference(cell, L, E, B, T, rng):
    m, x, y, st, r = run_both(cell[0], cell[1], L, E, B, T, rng)
    loss, state = m.forward_backward(x, y, st)
    assert abs(loss - r["loss"]) <= TOL * abs(r["loss"])
    for k, g in r["grads"].items():
        assert max_relative_error(m.grads[k], g) < TOL, k
    if cell[0] == "lstm":
        for a, b in zip(m.state_grad, r["dstate"]):
            assert max_relative_error(a, b) < TOL
        for a, b in zip(state, r["state"]):
            assert max_relative_error(a, b) < TOL
    else:
        assert max_relative_error(m.state_grad, r["dstate"]) < TOL
        assert max_relative_error(state, r["state"]) < TOL
    logits, state2 = m.forward(x, st)
    assert max_relative_error(logits, r["logits"]) < TOL
    loss2, _ = m.loss(x, y, st)
    assert abs(loss2 - r["loss"]) <= TOL * abs(r["loss"])


def test_reference_gradients_are_not_trivially_zero(rng):
    # Guard against a vacuous comparison: every gradient has signal.
    m, x, y, st, r = run_both("rnn", "tanh", 2, 3, 3, 5, rng)
    m.forward_backward(x, y, st)
    for k, g in m.grads.items():
        assert np.abs(g).max() > 1e-6, k


def test_state_carries_between_chunks(rng):
    # Two chunks with the state carried equal one chunk of the joint length.
    V, H, L = 6, 4, 2
    m = make_model("rnn", "tanh", V, H, L, None)
    x = rng.integers(0, V, (2, 8))
    full, s_full = m.forward(x)
    a, s = m.forward(x[:, :3])
    b, s2 = m.forward(x[:, 3:], s)
    np.testing.assert_allclose(np.concatenate([a, b], axis=1), full, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s2, s_full, rtol=1e-12, atol=1e-12)
