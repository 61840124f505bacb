"""The CUDA backend's kernels (a build with -C cmake.define.PYCHARRNN_CUDA=ON).

On a GPU (tests marked ``cuda``): each kernel against an independent
computation (the NumPy reference's cell, numpy's log-sum-exp, the CPU's Adam)
in float64 (1e-12) and float32 (1e-5). They skip where no GPU is visible.
Everywhere: ``build_info()["cuda"]`` tells the truth, and a CUDA build on a
machine without a usable GPU says why instead of crashing.
"""

from __future__ import annotations

import numpy as np
import pytest

import pycharrnn as pc
from pycharrnn import _core
from pycharrnn.reference import NumpyCharRNN

INFO = pc.build_info()
BUILT = bool(INFO["cuda"])
GPU = BUILT and bool(INFO.get("cuda_devices"))
on_gpu = pytest.mark.skipif(not GPU, reason="needs a CUDA build and a visible GPU")
KINDS = {0: ("rnn", "tanh"), 1: ("rnn", "relu"), 2: ("gru", "tanh"), 3: ("lstm", "tanh")}
DTYPES = [(np.float64, 1e-12), (np.float32, 1e-5)]


def _fn(name: str, dtype) -> object:
    return getattr(_core, f"{name}_{'f64' if dtype == np.float64 else 'f32'}")


def test_build_info_tells_the_truth():
    assert isinstance(INFO["cuda"], bool)
    names = [n for n in dir(_core) if n.startswith("cuda_")]
    if not BUILT:
        assert names == [] and "cuda_devices" not in INFO
    else:
        assert sorted(names) == sorted([f"{f}_{t}" for f in ("cuda_adam", "cuda_cell_step",
                                                            "cuda_softmax_xent")
                                        for t in ("f32", "f64")] +
                                       ["cuda_cublas", "cuda_memory", "cuda_set_cublas_path"])
        assert isinstance(INFO["cuda_devices"], list) and INFO["cuda_runtime"] > 0
        if not INFO["cuda_devices"]:
            assert INFO.get("cuda_error")


@pytest.mark.skipif(not BUILT or GPU, reason="for a CUDA build on a machine without a GPU")
def test_without_a_gpu_the_kernels_say_why():
    with pytest.raises(RuntimeError, match="CUDA"):
        _core.cuda_softmax_xent_f32(np.zeros((2, 3), np.float32), np.zeros(2, np.int32), True)


def _cell_inputs(kind, B, H, dtype, rng):
    G = {2: 3, 3: 4}.get(kind, 1)
    r = lambda *s: rng.uniform(-1.5, 1.5, s).astype(dtype)  # noqa: E731
    return G, r(B, G * H), r(B, G * H), r(B, H), r(B, H)


@pytest.mark.cuda
@on_gpu
@pytest.mark.parametrize("dtype,tol", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_cell_step_against_the_reference(kind, dtype, tol):
    rng = np.random.default_rng(kind)
    B, H = 5, 37
    G, xp, hp, hprev, cprev = _cell_inputs(kind, B, H, dtype, rng)
    cell, nl = KINDS[kind]
    net = NumpyCharRNN(cell, 3, H, 1, nonlinearity=nl)
    h_ref, c_ref, cache = net._cell(xp.astype(np.float64), hp.astype(np.float64),
                                    hprev.astype(np.float64), cprev.astype(np.float64))
    gates, h = xp.copy(), np.zeros((B, H), dtype)
    c = np.zeros((B, H), dtype) if cell == "lstm" else None
    aux = np.zeros((B, H), dtype) if cell == "gru" else None
    step = _fn("cuda_cell_step", dtype)
    step(kind, gates, hp, None, hprev, h, cprev if cell == "lstm" else None, c, aux, None, None,
         False)
    np.testing.assert_allclose(h, h_ref, rtol=tol, atol=tol)
    if cell == "lstm":
        np.testing.assert_allclose(c, c_ref, rtol=tol, atol=tol)
    # Backward from a random dh (and dc): against the reference's _cell_back.
    dh = rng.uniform(-1, 1, (B, H)).astype(dtype)
    dc = rng.uniform(-1, 1, (B, H)).astype(dtype) if cell == "lstm" else None
    dgi, dgh, dprev, dcprev = net._cell_back(dh.astype(np.float64),
                                            None if dc is None else dc.astype(np.float64), cache)
    dhp = np.zeros((B, G * H), dtype) if cell == "gru" else None
    dh_dev, dc_dev = dh.copy(), None if dc is None else dc.copy()
    step(kind, gates, None, dhp, hprev, None, cprev if cell == "lstm" else None, c, aux, dh_dev,
         dc_dev, True)
    np.testing.assert_allclose(gates, dgi, rtol=tol, atol=tol)
    if cell == "gru":
        np.testing.assert_allclose(dhp, dgh, rtol=tol, atol=tol)
        np.testing.assert_allclose(dh_dev, dprev, rtol=tol, atol=tol)
    if cell == "lstm":
        np.testing.assert_allclose(dc_dev, dcprev, rtol=tol, atol=tol)


@pytest.mark.cuda
@on_gpu
@pytest.mark.parametrize("dtype,tol", DTYPES, ids=["f64", "f32"])
def test_softmax_cross_entropy(dtype, tol):
    rng = np.random.default_rng(1)
    N, V = 37, 97
    z = (rng.standard_normal((N, V)) * 4).astype(dtype)
    y = rng.integers(0, V, N).astype(np.int32)
    z64 = z.astype(np.float64)
    m = z64.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(z64 - m).sum(axis=1, keepdims=True)))[:, 0]
    grad = np.exp(z64 - lse[:, None])
    grad[np.arange(N), y] -= 1
    grad /= N
    rows = _fn("cuda_softmax_xent", dtype)(z, y, True)
    np.testing.assert_allclose(rows, lse - z64[np.arange(N), y], rtol=tol, atol=tol)
    np.testing.assert_allclose(z, grad, rtol=tol, atol=tol)


@pytest.mark.cuda
@on_gpu
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("dtype,tol", DTYPES, ids=["f64", "f32"])
def test_adam_against_the_cpu(dtype, tol, amsgrad):
    model = pc.CharRNN(11, hidden_size=9, dtype="float64" if dtype == np.float64 else "float32",
                       seed=0)
    opt = pc.optim.Adam(model, lr=1e-2, betas=(0.8, 0.95), eps=1e-6, amsgrad=amsgrad,
                        clip_value=0.3)
    rng = np.random.default_rng(2)
    p, m, v = model.flat_params.copy(), None, None
    vmax = np.zeros_like(p) if amsgrad else None
    m, v = np.zeros_like(p), np.zeros_like(p)
    for step in (1, 2, 3):
        g = rng.standard_normal(p.size).astype(dtype)
        model.flat_grads[:] = g
        opt.step()
        _fn("cuda_adam", dtype)(p, g, m, v, vmax, 1e-2, 0.8, 0.95, 1e-6, 1.0, 0.3, step)
        np.testing.assert_allclose(p, model.flat_params, rtol=tol, atol=tol)
