"""Every instruction set's kernels (base, AVX2, AVX-512: those this CPU runs)
against the references: the packed GEMM, the whole model in float64 and
float32, the optimizers, and the vectorized exp/tanh/sigmoid."""

import numpy as np
import pytest

import pycharrnn as pc
from pycharrnn import reference as ref
from conftest import CELLS, cell_id, make_model, random_state
from pycharrnn import _core
from pycharrnn.gradcheck import max_relative_error

ISAS = _core.isa_available()


@pytest.fixture(params=ISAS)
def isa(request):
    before = _core.isa()
    _core.set_isa(request.param)
    yield request.param
    _core.set_isa(before)


def test_isa_listing():
    assert "base" in ISAS and _core.isa() in ISAS
    assert pc.build_info()["simd"] == _core.isa()
    with pytest.raises(ValueError):
        _core.set_isa("no-such-isa")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M,N,K", [(3, 70, 33), (13, 37, 300), (150, 70, 520), (33, 4100, 9)])
def test_gemm(isa, dtype, M, N, K, rng):
    for ta in (False, True):
        for tb in (False, True):
            A = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
            B = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
            C = rng.standard_normal((M, N)).astype(dtype)
            R = C.copy()
            _core.gemm(A, B, C, ta=ta, tb=tb, beta=0.5)
            _core.gemm(A, B, R, ta=ta, tb=tb, beta=0.5, reference=True)
            tol = 1e-13 if dtype == np.float64 else 1e-5
            assert np.abs(C - R).max() <= tol * (np.abs(R).max() + K)


@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
@pytest.mark.parametrize("B", [2, 9])  # matrix-vector and packed recurrent paths
def test_model_float64_matches_numpy_reference(isa, cell, B, rng):
    V, H, L, T, E = 7, 6, 2, 5, 3
    params = ref.init_params(rng, V, H, L, cell[0], E)
    m = make_model(cell[0], cell[1], V, H, L, E)
    m.load_state_dict(params)
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    st = random_state(rng, cell[0], L, B, H)
    r = ref.forward_backward(params, x, y, st, cell[0], cell[1])
    loss, _ = m.forward_backward(x, y, st)
    assert abs(loss - r["loss"]) <= 1e-10 * abs(r["loss"])
    for k, g in r["grads"].items():
        assert max_relative_error(m.grads[k], g) < 1e-10, k


@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
@pytest.mark.parametrize("B", [1, 3, 13])  # fused time loop (B <= MR) and the step loop
def test_time_loop_at_two_threads_matches_numpy_reference(isa, cell, B, rng, restore_threads):
    # H = 130 is several unit chunks (the fused loop splits whole chunks of
    # NR units between threads) plus a partial one, and enough work per step
    # that the loop goes parallel even at B = 1.
    V, H, L, T, E = 7, 130, 2, 6, None
    params = ref.init_params(rng, V, H, L, cell[0], E)
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    st = random_state(rng, cell[0], L, B, H)
    r = ref.forward_backward(params, x, y, st, cell[0], cell[1])
    pc.set_num_threads(2)
    m = make_model(cell[0], cell[1], V, H, L, E)
    m.load_state_dict(params)
    loss, state = m.forward_backward(x, y, st)
    assert abs(loss - r["loss"]) <= 1e-10 * abs(r["loss"])
    for k, g in r["grads"].items():
        assert max_relative_error(m.grads[k], g) < 1e-10, k
    got = m.state_grad if cell[0] == "lstm" else (m.state_grad,)
    want = r["dstate"] if cell[0] == "lstm" else (r["dstate"],)
    for a, b in zip(got, want):
        assert max_relative_error(a, b) < 1e-10
    # float32: the same bits at 1, 2 and 3 threads.
    m32 = make_model(cell[0], cell[1], V, H, L, E, "float32")
    m32.load_state_dict(params)
    runs = []
    for n in (1, 2, 3):
        pc.set_num_threads(n)
        loss32, state32 = m32.forward_backward(x, y, st)
        runs.append((loss32, m32.flat_grads.copy(), np.asarray(state32).copy()))
    for loss32, g32, s32 in runs[1:]:
        assert loss32 == runs[0][0]
        assert np.array_equal(g32, runs[0][1]) and np.array_equal(s32, runs[0][2])


@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
def test_model_float32_close_to_float64(isa, cell, rng):
    V, H, L, B, T = 40, 96, 2, 8, 30
    m64 = make_model(cell[0], cell[1], V, H, L, 16, "float64", seed=3)
    m32 = make_model(cell[0], cell[1], V, H, L, 16, "float32", seed=3)
    m64.flat_params[:] *= 3  # drive the gates into saturation as well
    m32.load_state_dict(m64.state_dict())
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    l64, _ = m64.forward_backward(x, y)
    l32, _ = m32.forward_backward(x, y)
    assert abs(l32 - l64) <= 1e-4 * abs(l64)
    for k in m64.grads:
        assert max_relative_error(m32.grads[k], m64.grads[k]) < 1e-4, k


def test_vectorized_activations_are_accurate(isa):
    # One-hot input selects a column of W_ih, so with W_hh = 0 and one step
    # the hidden state is act(W_ih[:, id] + b): the activation of chosen
    # values, compared with float64 math.
    H = 4096
    z = np.concatenate([np.linspace(-20, 20, H - 6), [0.0, 1e-30, -1e-7, 88.0, -90.0, 0.29]])
    for cell in ("rnn", "lstm"):
        m = pc.CharRNN(2, hidden_size=H, cell=cell, dtype="float32")
        sd = {k: np.zeros_like(v) for k, v in m.state_dict().items()}
        G = 4 if cell == "lstm" else 1
        w = np.zeros((G * H, 2), np.float32)
        w[:, 1] = np.tile(z, G)
        sd["rnn.weight_ih_l0"] = w
        m.load_state_dict(sd)
        _, h = m.forward(np.array([[1]]))
        h = h[0] if cell == "lstm" else h
        z32 = z.astype(np.float32).astype(np.float64)
        if cell == "rnn":
            want = np.tanh(z32)
        else:  # c = i*g, h = o*tanh(c), all gates from the same z
            sig = 1 / (1 + np.exp(-z32))
            want = sig * np.tanh(sig * np.tanh(z32))
        got = h[0, 0].astype(np.float64)
        err = np.abs(got - want) / np.maximum(np.abs(want), 1e-30)
        assert err[np.abs(want) > 1e-30].max() < 2e-6, (cell, z[np.argmax(err)])
