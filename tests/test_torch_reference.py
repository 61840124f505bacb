"""Every cell against numbers PyTorch computed once (tests/data/torch_reference.npz,
made by tests/make_torch_reference.py): runs without torch."""

from pathlib import Path

import numpy as np
import pytest

import pycharrnn as pc
from pycharrnn.gradcheck import max_relative_error

DATA = np.load(Path(__file__).parent / "data" / "torch_reference.npz")
CASES = sorted({k.split("/")[0] for k in DATA.files if k.startswith("case")})
TOL = 1e-9


def test_reference_file_covers_every_cell():
    cells = {(str(DATA[c + "/config"][0]), str(DATA[c + "/config"][1])) for c in CASES}
    assert cells == {("rnn", "tanh"), ("rnn", "relu"), ("gru", "tanh"), ("lstm", "tanh")}


@pytest.mark.parametrize("case", CASES)
def test_matches_torch_reference(case):
    cell, nl, L, B, T, E = DATA[case + "/config"]
    L, E = int(L), int(E) or None
    params = {k[len(case) + 7:]: DATA[k] for k in DATA.files if k.startswith(case + "/param/")}
    V, H = params["decoder.weight"].shape
    m = pc.CharRNN(int(V), hidden_size=int(H), num_layers=L, cell=str(cell),
                   nonlinearity=str(nl), embedding_dim=E, dtype="float64")
    m.load_state_dict(params)
    st = DATA[case + "/state"]
    state = (st[0], st[1]) if cell == "lstm" else st[0]
    x, y = DATA[case + "/x"], DATA[case + "/y"]
    loss, final = m.forward_backward(x, y, state)
    assert abs(loss - float(DATA[case + "/loss"])) <= TOL * abs(float(DATA[case + "/loss"]))
    logits, _ = m.forward(x, state)
    assert max_relative_error(logits, DATA[case + "/logits"]) < TOL
    for k in params:
        assert max_relative_error(m.grads[k], DATA[case + "/grad/" + k]) < TOL, k
    ds = np.stack(m.state_grad) if cell == "lstm" else m.state_grad[None]
    fs = np.stack(final) if cell == "lstm" else final[None]
    assert max_relative_error(ds, DATA[case + "/dstate"]) < TOL
    assert max_relative_error(fs, DATA[case + "/final_state"]) < TOL
