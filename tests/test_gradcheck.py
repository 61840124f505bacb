"""Central differences in float64 against the C++ gradients, every parameter and h0."""

import itertools

import numpy as np
import pytest

import pycharrnn as pc
from conftest import CELLS, cell_id, make_model, random_state
from pycharrnn.gradcheck import max_relative_error


@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
@pytest.mark.parametrize("L,E,B,T", list(itertools.product([1, 3], [None, 3], [1, 3], [1, 5])))
def test_gradcheck(cell, L, E, B, T, rng):
    V, H = 5, 4
    m = make_model(cell[0], cell[1], V, H, L, E, seed=7)
    # Larger weights than the default init, so every path carries signal.
    m.flat_params[:] = rng.uniform(-0.8, 0.8, m.num_params)
    x = rng.integers(0, V, (B, T))
    y = rng.integers(0, V, (B, T))
    st = random_state(rng, cell[0], L, B, H)
    errs = pc.gradcheck(m, x, y, st)
    names = set(m.state_dict()) | {"h0"} | ({"c0"} if cell[0] == "lstm" else set())
    assert set(errs) == names
    worst = max(errs, key=errs.get)
    assert errs[worst] < 1e-6, (worst, errs[worst])


def test_gradcheck_detects_a_wrong_gradient():
    # The checker must be able to fail: a perturbed analytic gradient is caught.
    a = np.array([1.0, -2.0, 3.0])
    assert max_relative_error(a, a) == 0.0
    assert max_relative_error(a, a * (1 + 1e-3)) > 1e-4


def test_gradcheck_of_float32_model_uses_float64_twin(rng):
    m = make_model("rnn", "tanh", 5, 4, 1, None, dtype="float32")
    x = rng.integers(0, 5, (2, 4))
    errs = pc.gradcheck(m, x, x)
    assert max(errs.values()) < 1e-6
