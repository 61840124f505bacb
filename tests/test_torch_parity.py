"""Parity with PyTorch autograd on identical weights, inputs and initial state."""

import itertools

import numpy as np
import pytest

import pycharrnn as pc
from conftest import CELLS, cell_id, make_model, random_state
from pycharrnn.gradcheck import max_relative_error

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from torch_helpers import torch_forward_backward  # noqa: E402

TOL = {"float64": 1e-9, "float32": 1e-4}


def _pairs(a, b, lstm):
    return list(zip(a, b)) if lstm else [(a, b)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
@pytest.mark.parametrize("L,B,T,E", list(itertools.product([1, 3], [1, 4], [1, 17], [None, 8])))
def test_parity_with_torch(cell, L, B, T, E, dtype, rng):
    torch.manual_seed(0)
    V, H = 11, 16
    m = make_model(cell[0], cell[1], V, H, L, E, dtype=dtype, seed=5)
    x = rng.integers(0, V, (B, T))
    y = rng.integers(0, V, (B, T))
    st = random_state(rng, cell[0], L, B, H)
    if dtype == "float32":
        st = tuple(s.astype(np.float32) for s in st) if cell[0] == "lstm" else st.astype(np.float32)
    loss, final = m.forward_backward(x, y, st)
    logits, _ = m.forward(x, st)
    t = torch_forward_backward(m, x, y, st)
    tol = TOL[dtype]
    lstm = cell[0] == "lstm"
    assert abs(loss - t["loss"]) <= tol * abs(t["loss"])
    assert max_relative_error(logits, t["logits"]) < tol
    assert set(m.grads) == set(t["grads"])
    for k, g in t["grads"].items():
        assert max_relative_error(m.grads[k], g) < tol, k
    for a, b in _pairs(m.state_grad, t["dstate"], lstm):
        assert max_relative_error(a, b) < tol
    for a, b in _pairs(final, t["state"], lstm):
        assert max_relative_error(a, b) < tol


@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
@pytest.mark.parametrize("E", [None, 6])
def test_trained_model_exports_and_imports(cell, E):
    from pycharrnn.torch_compat import from_torch, to_torch

    text = "the quick brown fox jumps over the lazy dog. " * 20
    vocab = pc.Vocab.from_text(text)
    m = pc.CharRNN(vocab, hidden_size=24, num_layers=2, cell=cell[0], nonlinearity=cell[1],
                   embedding_dim=E, dtype="float64", seed=2)
    pc.Trainer(m, text, batch_size=4, seq_length=16).run(steps=20)
    x = vocab.encode(text[:60]).reshape(3, 20)
    ours, _ = m.forward(x)
    tm = to_torch(m)
    with torch.no_grad():
        theirs, _ = tm(torch.as_tensor(x, dtype=torch.long))
    assert max_relative_error(ours, theirs.numpy()) < 1e-12

    # The way back: train the torch module a little, import it, same logits.
    opt = torch.optim.SGD(tm.parameters(), lr=0.5)
    xt = torch.as_tensor(x, dtype=torch.long)
    for _ in range(5):
        opt.zero_grad()
        lo, _ = tm(xt)
        torch.nn.functional.cross_entropy(lo[:, :-1].reshape(-1, len(vocab)),
                                          xt[:, 1:].reshape(-1)).backward()
        opt.step()
    back = from_torch(tm, vocab)
    assert back.cell == cell[0] and back.embedding_dim == E and back.vocab == vocab
    with torch.no_grad():
        theirs, _ = tm(xt)
    ours, _ = back.forward(x)
    assert max_relative_error(ours, theirs.numpy()) < 1e-12
    # state_dict names are PyTorch's: load_state_dict works directly.
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})


def test_lstm_forget_bias_option():
    m = pc.CharRNN(5, hidden_size=4, num_layers=2, cell="lstm", forget_bias=1.0, seed=0)
    for layer in range(2):
        np.testing.assert_array_equal(m.params[f"rnn.bias_ih_l{layer}"][4:8], 1.0)
        np.testing.assert_array_equal(m.params[f"rnn.bias_hh_l{layer}"][4:8], 0.0)
    with pytest.raises(ValueError):
        pc.CharRNN(5, cell="gru", forget_bias=1.0)
