"""Looking inside (pycharrnn.diagnostics): traces against the NumPy
reference, the gradient flow against central differences, the features
and scores of units, and per-parameter gradient norms in metrics.jsonl."""

from __future__ import annotations

import math

import numpy as np
import pytest

import pycharrnn as pc
from pycharrnn import diagnostics as dg
from pycharrnn.metrics import MetricsLog, read_metrics
from pycharrnn.reference import _model_for

from conftest import CELLS, cell_id

TEXT = 'He said "hello (there)" and left.\nShe said "no".\nThey (all) went home.\n'


def _model(cell, nonlinearity, E=None, L=2, H=6, seed=0):
    m = pc.CharRNN(pc.Vocab.from_text(TEXT), hidden_size=H, num_layers=L, cell=cell,
                   nonlinearity=nonlinearity, embedding_dim=E, dtype="float64", seed=seed)
    rng = np.random.default_rng(seed)
    m.flat_params[:] = rng.uniform(-0.8, 0.8, m.num_params)  # livelier than the default init
    return m


def _reference_run(net, ids, hook=None):
    """The reference's forward written out step by step: per layer and step
    h, c and the gates; ``hook(l, t, h)`` may change layer l's output at
    step t in place before anything reads it. Returns (hs [L,T,H], cs,
    gates [L,T,G*H], logits [T,V])."""
    p, L, H = net.p, net.L, net.H
    h = [np.zeros((1, H)) for _ in range(L)]
    c = [np.zeros((1, H)) for _ in range(L)]
    hs, cs, gs, logits = [], [], [], []
    for t, i in enumerate(ids):
        inp = p["embedding.weight"][[i]] if net.E else None
        row_h, row_c, row_g = [], [], []
        for k in range(L):
            if k == 0 and not net.E:
                gi = p["rnn.weight_ih_l0"][:, i][None] + p["rnn.bias_ih_l0"]
            else:
                gi = inp @ p[f"rnn.weight_ih_l{k}"].T + p[f"rnn.bias_ih_l{k}"]
            gh = h[k] @ p[f"rnn.weight_hh_l{k}"].T + p[f"rnn.bias_hh_l{k}"]
            h2, c2, cache = net._cell(gi, gh, h[k], c[k])
            h2 = h2.copy()
            if hook is not None:
                hook(k, t, h2)
            h[k], c[k] = h2, c2
            gates = {"rnn": (), "gru": cache[:3], "lstm": cache[:4]}[net.cell]
            row_h.append(h2[0])
            row_c.append(c2[0] if c2 is not None else np.zeros(H))
            row_g.append(np.concatenate([g[0] for g in gates]) if gates else np.zeros(0))
            inp = h2
        hs.append(row_h)
        cs.append(row_c)
        gs.append(row_g)
        logits.append((inp @ p["decoder.weight"].T + p["decoder.bias"])[0])
    tr = lambda a: np.array(a).transpose(1, 0, 2)  # noqa: E731 - [T, L, X] -> [L, T, X]
    return tr(hs), tr(cs), tr(gs), np.array(logits)


def _ce(logits, target):
    z = logits - logits.max()
    return float(np.log(np.exp(z).sum()) - z[target])


@pytest.mark.parametrize("E", [None, 4], ids=["onehot", "emb"])
@pytest.mark.parametrize("cell,nl", CELLS, ids=cell_id)
def test_trace_matches_the_reference(cell, nl, E):
    m = _model(cell, nl, E)
    net = _model_for(m.state_dict(), cell, nl)
    ids = m.vocab.encode(TEXT)
    hs, cs, gs, logits = _reference_run(net, ids)
    tr = m.trace(TEXT, top=4)
    np.testing.assert_allclose(tr.hidden, hs, rtol=1e-12, atol=1e-12)
    if cell == "lstm":
        np.testing.assert_allclose(tr.cell, cs, rtol=0, atol=1e-12)
    else:
        assert tr.cell is None
    names = dg.GATES[cell]
    assert list(tr.gates) == list(names)
    H = m.hidden_size
    for i, n in enumerate(names):
        np.testing.assert_allclose(tr.gates[n], gs[:, :, i * H:(i + 1) * H], rtol=1e-12, atol=1e-12)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    order = np.argsort(-p, axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(tr.top_ids, order)
    np.testing.assert_allclose(tr.top_probs, np.take_along_axis(p, order, 1), atol=1e-12)
    assert (np.diff(tr.top_probs, axis=1) <= 0).all()
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(tr.next_logprob, logp[np.arange(len(ids) - 1), ids[1:]],
                               rtol=1e-12, atol=1e-12)
    loss, _ = m.loss(ids[None, :-1], ids[None, 1:])
    assert abs(tr.loss - loss) <= 1e-12 * max(1.0, abs(loss))  # relative: relu explodes
    assert tr.top_chars(0) == [m.vocab.decode(np.array([i])) for i in order[0]]


@pytest.mark.parametrize("cell,nl", CELLS, ids=cell_id)
def test_gradient_flow_against_central_differences(cell, nl):
    """|| dL_T / dh_t || of every layer and step, by central differences on
    each unit of h_t in the reference loop (the perturbation reaches the
    layer above at step t and the layer itself at t + 1)."""
    m = _model(cell, nl, E=3, L=2, H=4, seed=1)
    net = _model_for(m.state_dict(), cell, nl)
    ids = m.vocab.encode(TEXT)[:9]
    T = ids.size - 1
    flow = dg.gradient_flow(m, ids)
    assert flow.shape == (2, T)
    eps = 1e-6
    want = np.zeros((2, T))
    for layer in range(2):
        for t in range(T):
            grad = np.zeros(m.hidden_size)
            for j in range(m.hidden_size):
                f = []
                for sign in (1, -1):
                    def hook(k, s, h, sign=sign, j=j, layer=layer, t=t):
                        if (k, s) == (layer, t):
                            h[0, j] += sign * eps
                    _, _, _, logits = _reference_run(net, ids[:T], hook)
                    f.append(_ce(logits[-1], ids[T]))
                grad[j] = (f[0] - f[1]) / (2 * eps)
            want[layer, t] = np.linalg.norm(grad)
    np.testing.assert_allclose(flow, want, rtol=1e-6, atol=1e-10)
    assert flow[:, -1].min() > 0
    # A prefix: the same picture for the first T' steps.
    short = dg.gradient_flow(m, ids, T=5)
    assert short.shape == (2, 5)
    # The model's gradients are left alone.
    m.flat_grads[:] = 7.0
    dg.gradient_flow(m, TEXT)
    assert (m.flat_grads == 7.0).all()


def test_gradient_flow_vanishes_in_a_vanilla_rnn():
    """The lecture's picture: with small recurrent weights a tanh RNN's
    dL_T / dh_t falls off geometrically with T - t; the LSTM with its
    forget gate biased open keeps more of it."""
    text = TEXT * 3
    rnn = pc.CharRNN(pc.Vocab.from_text(text), hidden_size=32, cell="rnn", seed=0,
                     dtype="float64")
    flow = dg.gradient_flow(rnn, text, T=60)[0]
    assert flow[0] < 1e-6 * flow[-1]
    ratios = flow[1:] / flow[:-1]
    assert np.median(ratios) > 1.2  # growing towards t = T: vanishing backwards


def test_unit_scores_find_a_unit_that_tracks_quotes():
    feats = dg.text_features('a "b c" (d)\nef')
    np.testing.assert_array_equal(feats["inside quotes"], [0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
                                                           0, 0])
    np.testing.assert_array_equal(feats["position in line"],
                                  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 1])
    np.testing.assert_array_equal(feats["inside parentheses"][8:12], [1, 1, 1, 0])
    np.testing.assert_array_equal(feats["start of a word"][:6], [1, 0, 0, 1, 0, 1])
    m = _model("gru", "tanh", L=1, H=5)
    tr = m.trace(TEXT)
    q = dg.text_features(TEXT)["inside quotes"]
    tr.hidden[0, :, 2] = 0.5 * q - 0.1  # a unit that is on inside quotes
    tr.hidden[0, :, 3] = 0.0  # a dead unit
    s = dg.unit_scores(tr, layer=0)
    assert set(s) == set(dg.FEATURES)
    assert s["inside quotes"][2] == pytest.approx(1.0)
    assert s["inside quotes"][3] == 0.0
    assert np.abs(s["inside quotes"]).max() == pytest.approx(1.0)


def test_bad_inputs():
    m = _model("lstm", "tanh", L=1)
    with pytest.raises(ValueError, match="needs T \\+ 1 = 11 characters"):
        dg.gradient_flow(m, "He said", T=10)
    with pytest.raises(ValueError, match="empty"):
        m.trace("")
    with pytest.raises(ValueError, match="top must be >= 1"):
        m.trace("He", top=0)
    ids_only = pc.CharRNN(5, hidden_size=4)
    with pytest.raises(ValueError, match="needs a model built with a Vocab"):
        ids_only.trace("abc")
    assert ids_only.trace([1, 2, 3]).hidden.shape == (1, 3, 4)


def test_per_parameter_gradient_norms_in_metrics(tmp_path):
    text = TEXT * 20
    m = pc.CharRNN(pc.Vocab.from_text(text), hidden_size=16, num_layers=2, cell="gru", seed=0)
    tr = pc.Trainer(m, text, batch_size=4, seq_length=10, grad_norms_every=7)
    with MetricsLog(tmp_path) as log:
        tr.callbacks.append(log)
        tr.run(steps=30)
    steps, _ = read_metrics(tmp_path)
    with_norms = [s for s in steps if "grad_norms" in s]
    assert [s["step"] for s in with_norms] == [7, 14, 21, 28]
    for s in with_norms:
        assert set(s["grad_norms"]) == set(m.state_dict())
        total = math.sqrt(sum(v * v for v in s["grad_norms"].values()))
        assert total == pytest.approx(s["grad_norm"], rel=1e-6)  # the same gradient
    # Steps made one by one give the same norms.
    m2 = pc.CharRNN(pc.Vocab.from_text(text), hidden_size=16, num_layers=2, cell="gru", seed=0)
    tr2 = pc.Trainer(m2, text, batch_size=4, seq_length=10, grad_norms_every=7,
                     steps_per_call=1)
    got = [tr2.step().get("grad_norms") for _ in range(14)]
    assert got[6] == with_norms[0]["grad_norms"] and got[13] == with_norms[1]["grad_norms"]
    assert pc.Trainer(m, text, batch_size=4, seq_length=10,
                      grad_norms_every=None).grad_norms_every is None
