"""float32 results stay within 1e-4 (relative) of float64 on the same weights."""

import numpy as np
import pytest

from conftest import CELLS, cell_id, make_model, random_state
from pycharrnn.gradcheck import max_relative_error


@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
@pytest.mark.parametrize("E", [None, 16])
def test_float32_close_to_float64(cell, E, rng):
    V, H, L, B, T = 30, 64, 2, 4, 20
    m64 = make_model(cell[0], cell[1], V, H, L, E, "float64", seed=3)
    m32 = make_model(cell[0], cell[1], V, H, L, E, "float32", seed=3)
    m32.load_state_dict(m64.state_dict())
    x = rng.integers(0, V, (B, T))
    y = rng.integers(0, V, (B, T))
    st = random_state(rng, cell[0], L, B, H)
    st32 = tuple(s.astype(np.float32) for s in st) if cell[0] == "lstm" else st.astype(np.float32)
    l64, s64 = m64.forward_backward(x, y, st)
    l32, s32 = m32.forward_backward(x, y, st32)
    assert abs(l32 - l64) <= 1e-4 * abs(l64)
    for k in m64.grads:
        assert max_relative_error(m32.grads[k], m64.grads[k]) < 1e-4, k
    lo64, _ = m64.forward(x, st)
    lo32, _ = m32.forward(x, st32)
    assert max_relative_error(lo32, lo64) < 1e-4
