"""Optimizers: parity with torch.optim (20 steps on one gradient sequence) and,
without torch, with the update rules written out in NumPy here."""

import math

import numpy as np
import pytest

import pycharrnn as pc
from pycharrnn import optim as po
from conftest import make_model

CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01)),
    ("AdaGrad", dict(lr=0.1)),
    ("AdaGrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.1,
                     eps=1e-6)),
    ("RMSProp", dict(lr=0.01)),
    ("RMSProp", dict(lr=0.01, alpha=0.95, eps=1e-6)),
    ("RMSProp", dict(lr=0.01, alpha=0.95, centered=True, momentum=0.5, weight_decay=0.01)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
]
CLIPS = [dict(), dict(clip_norm=0.5), dict(clip_value=0.2)]
TORCH_NAMES = {"SGD": "SGD", "AdaGrad": "Adagrad", "RMSProp": "RMSprop", "Adam": "Adam",
               "AdamW": "AdamW"}


def _grads(n, steps=20, seed=1):
    rng = np.random.default_rng(seed)
    # Include exact zeros and a large outlier so clipping has work to do.
    gs = [rng.standard_normal(n) * 0.3 for _ in range(steps)]
    gs[3][:5] = 0.0
    gs[7][0] = 40.0
    return gs


def _run_ours(name, kw, clip, dtype, gs):
    m = make_model("gru", V=6, E=3, dtype=dtype)
    opt = getattr(po, name)(m, **kw, **clip)
    for g in gs:
        m.flat_grads[:] = g
        opt.step()
    return m.flat_params.copy(), opt


@pytest.mark.torch
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize("clip", CLIPS, ids=["noclip", "clipnorm", "clipvalue"])
@pytest.mark.parametrize("name,kw", CONFIGS, ids=[f"{n}{i}" for i, (n, _) in enumerate(CONFIGS)])
def test_matches_torch_optim(name, kw, clip, dtype, tol):
    torch = pytest.importorskip("torch")
    m = make_model("gru", V=6, E=3, dtype=dtype)
    gs = _grads(m.num_params)
    t = torch.tensor(m.flat_params.copy(), requires_grad=True)
    topt = getattr(torch.optim, TORCH_NAMES[name])([t], **kw)
    for g in gs:
        t.grad = torch.tensor(g.astype(m.dtype))
        if "clip_norm" in clip:
            torch.nn.utils.clip_grad_norm_([t], clip["clip_norm"])
        if "clip_value" in clip:
            torch.nn.utils.clip_grad_value_([t], clip["clip_value"])
        topt.step()
    ours, _ = _run_ours(name, kw, clip, dtype, gs)
    want = t.detach().numpy()
    assert np.abs(ours - want).max() <= tol * np.abs(want).max()


def _numpy_reference(name, kw, p, gs):
    """The update rules as written in torch.optim's documentation."""
    p = p.astype(np.float64).copy()
    lr, wd = kw.get("lr"), kw.get("weight_decay", 0.0)
    st = {}
    for t, g in enumerate(gs, start=1):
        g = g.astype(np.float64)
        if name != "AdamW":
            g = g + wd * p
        if name == "SGD":
            mom, damp = kw.get("momentum", 0.0), kw.get("dampening", 0.0)
            if mom:
                st["b"] = g.copy() if t == 1 else mom * st["b"] + (1 - damp) * g
                g = g + mom * st["b"] if kw.get("nesterov") else st["b"]
            p = p - lr * g
        elif name == "AdaGrad":
            st.setdefault("s", np.full_like(p, kw.get("initial_accumulator_value", 0.0)))
            st["s"] = st["s"] + g * g
            clr = lr / (1 + (t - 1) * kw.get("lr_decay", 0.0))
            p = p - clr * g / (np.sqrt(st["s"]) + kw.get("eps", 1e-10))
        elif name == "RMSProp":
            a, eps, mom = kw.get("alpha", 0.99), kw.get("eps", 1e-8), kw.get("momentum", 0.0)
            st["v"] = a * st.get("v", 0.0) + (1 - a) * g * g
            if kw.get("centered"):
                st["ga"] = a * st.get("ga", 0.0) + (1 - a) * g
                avg = np.sqrt(st["v"] - st["ga"] ** 2) + eps
            else:
                avg = np.sqrt(st["v"]) + eps
            if mom:
                st["b"] = mom * st.get("b", 0.0) + g / avg
                p = p - lr * st["b"]
            else:
                p = p - lr * g / avg
        else:
            b1, b2 = kw.get("betas", (0.9, 0.999))
            if name == "AdamW":
                p = p * (1 - lr * kw.get("weight_decay", 0.01))
            st["m"] = b1 * st.get("m", 0.0) + (1 - b1) * g
            st["v"] = b2 * st.get("v", 0.0) + (1 - b2) * g * g
            v = st["v"]
            if kw.get("amsgrad"):
                st["vm"] = np.maximum(st.get("vm", 0.0), v)
                v = st["vm"]
            mhat, vhat = st["m"] / (1 - b1 ** t), v / (1 - b2 ** t)
            p = p - lr * mhat / (np.sqrt(vhat) + kw.get("eps", 1e-8))
    return p


@pytest.mark.parametrize("name,kw", CONFIGS, ids=[f"{n}{i}" for i, (n, _) in enumerate(CONFIGS)])
def test_matches_numpy_update_rules(name, kw):
    m = make_model("gru", V=6, E=3, dtype="float64")
    gs = _grads(m.num_params)
    want = _numpy_reference(name, kw, m.flat_params, gs)
    ours, _ = _run_ours(name, kw, {}, "float64", gs)
    assert np.abs(ours - want).max() <= 1e-12 * np.abs(want).max()


def test_clipping_semantics():
    m = make_model("gru", V=6, E=3, dtype="float64")
    n = m.num_params
    g = np.zeros(n)
    g[0], g[1] = 3.0, 4.0  # norm 5
    m.flat_grads[:] = g
    p0 = m.flat_params.copy()
    opt = po.SGD(m, lr=1.0, clip_norm=1.0)
    opt.step()
    assert math.isclose(opt.last_grad_norm, 5.0)
    step = p0 - m.flat_params
    np.testing.assert_allclose(step[:2], [3 / (5 + 1e-6), 4 / (5 + 1e-6)], rtol=1e-12)
    assert np.array_equal(m.flat_grads, g)  # gradients are never modified
    m.flat_params[:] = p0
    opt = po.SGD(m, lr=1.0, clip_value=2.0)
    opt.step()
    np.testing.assert_allclose((p0 - m.flat_params)[:2], [2.0, 2.0])


def test_state_dict_round_trip_continues_identically():
    gs = _grads(make_model("gru", V=6, E=3, dtype="float64").num_params, steps=10)
    full, _ = _run_ours("Adam", dict(lr=0.01, amsgrad=True), {}, "float64", gs)
    m = make_model("gru", V=6, E=3, dtype="float64")
    opt = po.Adam(m, lr=0.01, amsgrad=True)
    for g in gs[:4]:
        m.flat_grads[:] = g
        opt.step()
    sd = opt.state_dict()
    m2 = make_model("gru", V=6, E=3, dtype="float64")
    m2.load_state_dict(m.state_dict())
    opt2 = po.Adam(m2, lr=0.5, amsgrad=True)  # lr comes back from the state
    opt2.load_state_dict(sd)
    for g in gs[4:]:
        m2.flat_grads[:] = g
        opt2.step()
    assert np.array_equal(m2.flat_params, full)


def test_state_dict_mismatches_are_named():
    m = make_model("gru", V=6, E=3, dtype="float64")
    sd = po.Adam(m).state_dict()
    with pytest.raises(ValueError, match="Adam"):
        po.SGD(m).load_state_dict(sd)
    with pytest.raises(ValueError, match="amsgrad"):
        po.Adam(m, amsgrad=True).load_state_dict(sd)
    other = pc.CharRNN(6, hidden_size=7, cell="gru", embedding_dim=3, dtype="float64")
    with pytest.raises(ValueError, match="shape"):
        po.Adam(other).load_state_dict(sd)


@pytest.mark.parametrize("kw", [dict(lr=-1), dict(lr=float("nan")), dict(betas=(1.0, 0.9)),
                                dict(eps=-1e-8), dict(clip_norm=0), dict(clip_value=-1)])
def test_bad_hyperparameters(kw):
    with pytest.raises(ValueError):
        po.Adam(make_model("gru", V=6, E=3, dtype="float32"), **kw)


def test_nesterov_needs_momentum():
    with pytest.raises(ValueError, match="Nesterov"):
        po.SGD(make_model("gru", V=6, E=3, dtype="float32"), nesterov=True)
