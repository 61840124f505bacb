"""Dropout and the other regularisers: seeded, the same masks in forward and
backward (central differences under a fixed seed), where each mask sits
(torch autograd with the masks derived independently, tests/masks.py),
p = 0 is exact, evaluation never drops."""

import numpy as np
import pytest

import pycharrnn as pc
from conftest import CELLS, cell_id, make_model
from masks import dropout_masks
from pycharrnn.gradcheck import max_relative_error

# Each regulariser alone, locked and not, and all at once (3 layers, E = 4).
REGULARIZED = {
    "between": dict(dropout=0.4),
    "input": dict(input_dropout=0.3),
    "output": dict(output_dropout=0.3),
    "weight": dict(weight_drop=0.3),
    "embedding": dict(embedding_dropout=0.3),
    "locked": dict(dropout=0.3, input_dropout=0.3, output_dropout=0.3, locked_dropout=True),
    "all": dict(dropout=0.2, input_dropout=0.2, output_dropout=0.3, weight_drop=0.4,
                embedding_dropout=0.25, locked_dropout=True),
    "all-element": dict(dropout=0.2, input_dropout=0.2, output_dropout=0.3, weight_drop=0.4,
                        embedding_dropout=0.25),
}


def _packed(m, B, rng):
    s = rng.standard_normal((2 if m.cell == "lstm" else 1, m.num_layers, B, m.hidden_size))
    return s * 0.5


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
    core = m.backend.core
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


def _fd_check(m, rng, B=3, T=5, probes=120):
    """Central differences of the training loss under one seed against the
    C++ gradients of that call. The loss is a function of the weights only
    when the seed fixes the masks, and the two agree only if the backward
    pass reuses the forward pass's masks. Returns the gradients, batch,
    packed initial state and seed."""
    m.flat_params[:] = rng.uniform(-0.8, 0.8, m.num_params)
    core, P = m.backend.core, m.flat_params
    x = rng.integers(0, m.vocab_size, (B, T)).astype(np.int32)
    y = rng.integers(0, m.vocab_size, (B, T)).astype(np.int32)
    s0 = _packed(m, B, rng)
    s1, ds = np.empty_like(s0), np.empty_like(s0)
    G = np.empty_like(P)
    seed = 424242
    loss = core.forward_backward(P, G, x, y, s0, s1, ds, train=True, seed=seed)
    assert loss == core.loss(P, x, y, s0, s1, train=True, seed=seed)
    assert loss != core.loss(P, x, y, s0, s1, train=False, seed=0)  # a regulariser is active
    # and seeded (a few seeds: 7 embedding rows can draw the same mask twice)
    assert any(loss != core.loss(P, x, y, s0, s1, train=True, seed=seed + k) for k in (1, 2, 3))
    eps = 1e-5
    probe = rng.choice(P.size, min(probes, P.size), replace=False)
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
    return G, x, y, s0, seed


@pytest.mark.parametrize("kind", sorted(REGULARIZED))
@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
def test_regularised_gradients_match_central_differences(cell, kind, rng):
    m = make_model(*cell, V=7, H=6, L=3, E=4, seed=11, **REGULARIZED[kind])
    _fd_check(m, rng)


@pytest.mark.parametrize("kind", ["output", "weight"])
def test_regularisers_without_embedding(kind, rng):
    # One-hot input: output dropout and weight drop work; input and
    # embedding dropout are refused (nothing to drop but whole characters).
    m = make_model("gru", V=7, H=6, L=2, E=None, seed=3, **REGULARIZED[kind])
    _fd_check(m, rng)


@pytest.mark.parametrize("kind", sorted(REGULARIZED))
@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
def test_regularised_call_matches_torch_with_the_same_masks(cell, kind, rng):
    torch_helpers = pytest.importorskip("torch_helpers")
    pytest.importorskip("torch")
    m = make_model(*cell, V=7, H=6, L=3, E=4, seed=11, **REGULARIZED[kind])
    G, x, y, s0, seed = _fd_check(m, rng, probes=8)
    state = m.unpack_state(s0)
    ref = torch_helpers.torch_masked_forward_backward(
        m, x, y, state, dropout_masks(m, seed, *x.shape))
    core_loss = m.backend.core.loss(m.flat_params, x, y, s0, np.empty_like(s0), train=True, seed=seed)
    assert abs(core_loss - ref["loss"]) < 1e-12 * max(1.0, abs(ref["loss"]))
    grads = m.backend.views(G)
    for name, g in ref["grads"].items():
        assert max_relative_error(grads[name], g) < 1e-10, name


def test_locked_dropout_is_one_mask_per_sequence():
    # Output dropout seen through an identity decoder: logits = the dropped
    # top outputs. Locked: each row's zeros are at the same units at every
    # step, and differ between rows; element-wise: they move from step to step.
    H, B, T, p = 64, 4, 6, 0.3
    for locked in (True, False):
        m = pc.CharRNN(H, hidden_size=H, cell="rnn", embedding_dim=3, output_dropout=p,
                       locked_dropout=locked, dtype="float64", seed=1)
        m.params["decoder.weight"][...] = np.eye(H)
        m.params["decoder.bias"][...] = 0
        x = np.arange(B * T, dtype=np.int32).reshape(B, T) % H
        s0 = np.zeros((1, 1, B, H))
        lg = np.empty((B, T, H))
        m.backend.core.forward(m.flat_params, x, s0, np.empty_like(s0), lg, train=True, seed=9)
        dropped = lg == 0
        assert 0.2 < dropped.mean() < 0.4
        same_over_time = (dropped == dropped[:, :1]).all()
        assert same_over_time == locked
        assert not (dropped[0] == dropped[1]).all()  # one mask per sequence, not per batch
        kept = lg[~dropped]
        ev = np.empty_like(lg)
        m.backend.core.forward(m.flat_params, x, s0, np.empty_like(s0), ev)
        np.testing.assert_allclose(kept, ev[~dropped] / (1 - p), rtol=1e-12)


def test_weight_drop_is_one_mask_per_call_and_off_in_evaluation(rng):
    m = make_model("lstm", V=7, H=6, L=2, E=4, seed=5, weight_drop=0.5)
    x = rng.integers(0, 7, (2, 9))
    losses = [m.forward_backward(x, x)[0] for _ in range(3)]
    assert len(set(losses)) == 3  # a new mask every call
    m.eval()
    assert m.loss(x, x)[0] == m.forward_backward(x, x)[0]  # evaluation: none


def test_regularisers_at_zero_change_nothing(rng):
    kw = {k: 0.0 for k in ("dropout", "input_dropout", "output_dropout", "weight_drop",
                           "embedding_dropout")}
    a = make_model("gru", V=7, H=6, L=2, E=4, seed=11)
    b = make_model("gru", V=7, H=6, L=2, E=4, seed=11, locked_dropout=True, **kw)
    x = rng.integers(0, 7, (2, 9))
    assert a.forward_backward(x, x)[0] == b.forward_backward(x, x)[0]
    assert np.array_equal(a.flat_grads, b.flat_grads)


@pytest.mark.parametrize("kw, err, match", [
    ({"input_dropout": 0.1}, ValueError, "input_dropout needs an embedding"),
    ({"embedding_dropout": 0.1}, ValueError, "embedding_dropout needs an embedding"),
    ({"output_dropout": 1.0}, ValueError, "output_dropout"),
    ({"weight_drop": -0.1}, ValueError, "weight_drop"),
    ({"weight_drop": "0.1"}, TypeError, "weight_drop"),
    ({"locked_dropout": 1}, TypeError, "locked_dropout"),
])
def test_bad_regulariser_arguments(kw, err, match):
    with pytest.raises(err, match=match):
        make_model("gru", V=7, H=6, **kw)


@pytest.mark.parametrize("kind", ["all", "all-element"])
def test_masks_do_not_depend_on_the_thread_count(kind, rng, restore_threads):
    # Big enough for the parallel paths (B > the fused loop's rows).
    m = make_model("gru", V=30, H=48, L=2, E=16, dtype="float32", seed=2, **REGULARIZED[kind])
    x = rng.integers(0, 30, (40, 33)).astype(np.int32)
    out = []
    for n in (1, 2, 3):
        pc.set_num_threads(n)
        s0 = np.zeros((1, 2, 40, 48), np.float32)
        G = np.empty_like(m.flat_params)
        loss = m.backend.core.forward_backward(m.flat_params, G, x, x, s0, np.empty_like(s0),
                                        np.empty_like(s0), train=True, seed=77)
        out.append((loss, G))
    for loss, G in out[1:]:
        assert loss == out[0][0]
        assert np.array_equal(G, out[0][1])


def test_checkpoint_keeps_the_regularisers(tmp_path):
    m = make_model("lstm", V=7, H=6, L=2, E=4, seed=1, **REGULARIZED["all"])
    m.save(tmp_path / "m.npz")
    back = pc.load(tmp_path / "m.npz")
    assert back.config() == m.config()
    assert "weight_drop=0.4" in repr(back)
