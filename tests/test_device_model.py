"""The device model (csrc/cuda/device_model.hpp) against the CPU's model.

DeviceModelF32 / F64 exist in a CUDA build. Executor "host" runs the device
model's code on the CPU (every functor it launches, its order of operations,
its products through the same column-major mapping that cuBLAS gets), so
these tests check that code on any machine with a CUDA build; executor
"cuda" runs it on the GPU (marker cuda; skipped without one). Float64 agrees
with the CPU to 1e-12, float32 to 1e-5 (relative to the largest element),
for every cell, 1-3 layers, one-hot and embedding input, each dropout kind,
every optimizer and clip, the K-step loop, trace and gradient flow; the
sampling loop and beam search give the CPU's ids.
"""

from __future__ import annotations

import numpy as np
import pytest

import pycharrnn as pc
from pycharrnn import _core, optim
from test_train_loop import OPTIMIZERS as TRAIN_LOOP_OPTIMIZERS

pytestmark = pytest.mark.skipif(not hasattr(_core, "DeviceModelF64"),
                                reason="needs a CUDA build (PYCHARRNN_CUDA=ON)")

INFO = pc.build_info()
GPU = bool(INFO.get("cuda")) and bool(INFO.get("cuda_devices"))
EXECUTORS = ["host", pytest.param("cuda", marks=[
    pytest.mark.cuda, pytest.mark.skipif(not GPU, reason="needs a visible GPU")])]
DTYPES = [("float64", 1e-12), ("float32", 1e-5)]
CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("gru", "tanh"), ("lstm", "tanh")]
V = 11


def close(got, want, tol, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    err = float(np.max(np.abs(got - want))) / scale if want.size else 0.0
    assert err <= tol, f"{what}: relative error {err:.3g} > {tol:g}"


def pair(executor, cell="lstm", nl="tanh", E=None, H=9, L=2, dtype="float64", seed=0, **reg):
    """A CPU CharRNN and a device model holding the same parameters."""
    m = pc.CharRNN(V, hidden_size=H, num_layers=L, cell=cell, nonlinearity=nl,
                   embedding_dim=E, dtype=dtype, seed=seed, **reg)
    # Parameters away from the initialisation's small range, so that
    # saturation and the ReLU's kink are reached.
    rng = np.random.default_rng(seed + 100)
    m.backend.params[:] = rng.uniform(-0.6, 0.6, m.backend.num_params)
    cls = _core.DeviceModelF64 if dtype == "float64" else _core.DeviceModelF32
    code = pc.backend.CELL_CODES[(cell, nl)]
    d = cls(code, V, E or 0, H, L, reg.pop("dropout", 0.0), executor=executor, **reg)
    assert d.num_params == m.backend.num_params and d.layout() == m.backend.core.layout()
    d.set_params(m.backend.params)
    return m, d


def batch(B, T, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, V, (B, T)).astype(np.int32)
    y = rng.integers(0, V, (B, T)).astype(np.int32)
    return x, y


def state(m, B, seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.5, 0.5, (m.backend.state_slots, m.num_layers, B, m.hidden_size)) \
        .astype(m.backend.dtype)


def compare_step(m, d, tol, B=3, T=6, train=False, seed=0, rows=(0, 0)):
    x, y = batch(B, T, seed)
    s0 = state(m, B, seed)
    core, P = m.backend.core, m.backend.params
    shape = s0.shape
    want = {k: np.zeros(shape, s0.dtype) for k in ("s1", "ds")}
    got = {k: np.zeros(shape, s0.dtype) for k in ("s1", "ds")}
    gw = np.zeros_like(P)
    lw = core.forward_backward(P, gw, x, y, s0, want["s1"], want["ds"], train=train, seed=seed,
                               first_row=rows[0], total_rows=rows[1])
    lg = d.forward_backward(x, y, s0, got["s1"], got["ds"], train=train, seed=seed,
                            first_row=rows[0], total_rows=rows[1])
    gg = np.zeros_like(P)
    d.get_grads(gg)
    close(lg, lw, tol, "loss")
    close(got["s1"], want["s1"], tol, "final state")
    close(got["ds"], want["ds"], tol, "d loss / d state")
    for name, shp, off in m.backend.layout:
        n = int(np.prod(shp))
        close(gg[off:off + n], gw[off:off + n], tol, f"gradient of {name}")
    # Forward with logits and the loss's per-row sums.
    lo_w, lo_g = (np.zeros((B, T, V), s0.dtype) for _ in range(2))
    core.forward(P, x, s0, want["s1"], lo_w)
    d.forward(x, s0, got["s1"], lo_g)
    close(lo_g, lo_w, tol, "logits")
    sw, sg = np.zeros(B), np.zeros(B)
    close(d.loss(x, y, s0, got["s1"], stream_loss=sg),
          core.loss(P, x, y, s0, want["s1"], stream_loss=sw), tol, "loss")
    close(sg, sw, tol, "per-row loss")


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("dtype,tol", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("cell,nl", CELLS, ids=["tanh", "relu", "gru", "lstm"])
@pytest.mark.parametrize("L,E", [(1, None), (2, 5), (3, None)], ids=["1-onehot", "2-emb", "3"])
def test_forward_and_backward_match_the_cpu(executor, dtype, tol, cell, nl, L, E):
    m, d = pair(executor, cell, nl, E=E, L=L, dtype=dtype, seed=L)
    compare_step(m, d, tol, seed=L)
    # A second shape on the same model (the workspace is planned again).
    compare_step(m, d, tol, B=1, T=2, seed=7)


REGULARISERS = {
    "between": dict(dropout=0.4),
    "input": dict(input_dropout=0.3),
    "output": dict(output_dropout=0.3),
    "weight": dict(weight_drop=0.5),
    "embedding": dict(embedding_dropout=0.3),
    "locked": dict(dropout=0.3, input_dropout=0.2, output_dropout=0.3, locked_dropout=True),
}


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("dtype,tol", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("kind", sorted(REGULARISERS))
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_every_dropout_kind_draws_the_cpus_masks(executor, dtype, tol, kind, cell):
    m, d = pair(executor, cell, E=6, L=2, dtype=dtype, seed=3, **REGULARISERS[kind])
    compare_step(m, d, tol, train=True, seed=11)
    # Rows 2..4 of a batch of 8 (a data-parallel process's part).
    compare_step(m, d, tol, train=True, seed=12, rows=(2, 8))


# test_train_loop's optimizers (every kind, clip and option), and RMSProp
# without momentum or centring.
OPTIMIZERS = {**TRAIN_LOOP_OPTIMIZERS,
              "rmsprop-plain": lambda m: optim.RMSProp(m, lr=2e-3, weight_decay=0.01)}

BUFFERS = {optim.SGD: ["momentum_buffer"], optim.AdaGrad: ["sum"],
           optim.RMSProp: ["square_avg", "grad_avg", "momentum_buffer"],
           optim.Adam: ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
           optim.AdamW: ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]}


def device_buffers(d, o):
    out = {}
    for k, name in enumerate(BUFFERS[type(o)]):
        if name in o.buffers:
            assert d.has_optimizer_buffer(k), name
            out[name] = np.zeros_like(o.buffers[name])
            d.get_optimizer_buffer(k, out[name])
    return out


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("dtype,tol", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_updates_as_the_cpu(executor, dtype, tol, name):
    m, d = pair(executor, "gru", E=4, L=1, dtype=dtype, seed=5)
    o = OPTIMIZERS[name](m)
    for k, buf_name in enumerate(BUFFERS[type(o)]):  # AdaGrad's initial accumulator
        if buf_name in o.buffers:
            d.set_optimizer_buffer(k, o.buffers[buf_name])
    core, P = m.backend.core, m.backend.params
    grads = m.backend.grads  # what the CPU's optimizer_step reads
    for step in range(4):
        x, y = batch(2, 5, step)
        s0 = state(m, 2, step)
        s1, ds = np.zeros_like(s0), np.zeros_like(s0)
        core.forward_backward(P, grads, x, y, s0, s1, ds, train=False)
        d.forward_backward(x, y, s0, s1, ds, train=False)
        norm_w = float(np.sqrt(m.backend.sum_squares(grads)))
        norm_g = float(np.sqrt(d.grad_sum_squares()))
        close(norm_g, norm_w, tol, "gradient norm")
        spec = o.spec()
        lr = 0.5 * o.lr * (1 + step)
        m.backend.optimizer_step(spec, lr, norm_w)
        d.optimizer_step(spec, lr, norm_w)
        o.step_count += 1
        got = np.zeros_like(P)
        d.get_params(got)
        close(got, P, tol * 10, f"parameters after update {step + 1}")
        d.set_params(P)  # each update from the same parameters: errors do not compound
        for buf_name, buf in device_buffers(d, o).items():
            close(buf, o.buffers[buf_name], tol * 10, f"{buf_name} after update {step + 1}")


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("dtype,tol", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_k_steps_in_one_call_match_the_cpus_loop(executor, dtype, tol, cell):
    m, d = pair(executor, cell, E=None, L=2, dtype=dtype, seed=9, dropout=0.25)
    o = optim.Adam(m, lr=2e-3, clip_norm=1.0)
    K, B, T = 5, 3, 7
    rng = np.random.default_rng(4)
    xs = rng.integers(0, V, (K, B, T)).astype(np.int32)
    ys = rng.integers(0, V, (K, B, T)).astype(np.int32)
    seeds = np.arange(100, 100 + K, dtype=np.uint64)
    lrs = np.linspace(1e-3, 3e-3, K)
    s_w = state(m, B, 1)
    s_g = s_w.copy()
    lw, nw, lg, ng = (np.zeros(K) for _ in range(4))
    spec = o.spec()
    done_w = m.backend.train_steps(xs, ys, s_w, seeds, lrs, lw, nw, spec)
    done_g = tuple(d.train_steps(xs, ys, s_g, seeds, lrs, lg, ng, spec))
    assert done_g == done_w == (K, 0)
    close(lg, lw, tol, "losses")
    close(ng, nw, tol * 10, "gradient norms")
    close(s_g, s_w, tol * 10, "carried state")
    got = np.zeros_like(m.backend.params)
    d.get_params(got)
    close(got, m.backend.params, tol * 100, f"parameters after {K} steps")


@pytest.mark.parametrize("executor", EXECUTORS)
def test_a_non_finite_loss_stops_the_loop_before_its_update(executor):
    m, d = pair(executor, "rnn", L=1, dtype="float64", seed=2)
    P = m.backend.params.copy()
    P[:] = np.nan
    d.set_params(P)
    o = optim.SGD(m, lr=0.1)
    K, B, T = 3, 2, 4
    xs = np.zeros((K, B, T), np.int32)
    s = state(m, B, 0)
    s_before = s.copy()
    losses, norms = np.zeros(K), np.zeros(K)
    done, status = d.train_steps(xs, xs, s, None, np.full(K, 0.1), losses, norms, o.spec())
    assert (done, status) == (0, 1) and np.isnan(losses[0])
    assert np.array_equal(s, s_before)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_a_call_too_large_for_the_memory_is_a_memory_error_and_the_model_goes_on(executor):
    """About 1 TB of logits (B=512 rows of 1024 steps, 500,000 symbols): the
    allocation is refused (MemoryError), and the model still computes what
    the CPU does, at its earlier shape and at a new one."""
    big_v = 500_000
    d = _core.DeviceModelF32(0, big_v, 0, 4, 1, executor=executor)
    m = pc.CharRNN(big_v, hidden_size=4, cell="rnn", dtype="float32", seed=1)
    d.set_params(m.backend.params)
    x = np.zeros((2, 3), np.int32)
    s0 = np.zeros((1, 1, 2, 4), np.float32)
    s1 = np.zeros_like(s0)
    before = d.loss(x, x, s0, s1)
    huge = np.zeros((512, 1024), np.int32)
    with pytest.raises(MemoryError):
        d.loss(huge, huge, np.zeros((1, 1, 512, 4), np.float32),
               np.zeros((1, 1, 512, 4), np.float32))
    assert d.loss(x, x, s0, s1) == before
    close(before, m.loss(x, x)[0], 1e-5, "loss after the refusal")
    y = np.ones((1, 5), np.int32)
    close(d.loss(y, y, s0[:, :, :1].copy(), s1[:, :, :1].copy()), m.loss(y, y)[0], 1e-5,
          "loss at a new shape")


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match="executor"):
        _core.DeviceModelF64(0, V, 0, 4, 1, executor="gpu")
    d = _core.DeviceModelF64(3, V, 0, 4, 1, executor="host")
    with pytest.raises(ValueError, match="x"):
        d.forward(np.full((1, 3), V, np.int32), np.zeros((2, 1, 1, 4)), np.zeros((2, 1, 1, 4)),
                  None)
    with pytest.raises(ValueError, match="params"):
        d.set_params(np.zeros(3))
    with pytest.raises(ValueError, match="optimizer buffer"):
        d.get_optimizer_buffer(3, np.zeros(d.num_params))


@pytest.mark.skipif(GPU, reason="for a CUDA build on a machine without a GPU")
def test_without_a_gpu_the_cuda_executor_says_why():
    with pytest.raises(RuntimeError, match="CUDA|cuBLAS"):
        _core.DeviceModelF32(3, V, 0, 4, 1, executor="cuda")


# ------------------------------------------------------- loops and looks inside
# The sampling loop (draws, stop matching), beam search, trace and gradient
# flow on the device against the CPU's: the same ids, to the id.

SAMPLE_OPTIONS = [dict(), dict(temperature=0.7, top_k=3), dict(temperature=1.3, top_p=0.6),
                  dict(temperature=0.0), dict(temperature=0.9, top_k=4, top_p=0.8),
                  dict(temperature=1e-300)]


def sample_with(model_sample, m, B, n, s0, lo0, stop=None, **kw):
    """One call of a sampling loop from copies of (s0, lo0): every array it
    changes, and the steps it reports."""
    st, lo = s0.copy(), lo0.copy()
    out = np.full((B, n), 99, np.int32)
    live = np.ones(B, np.uint8)
    window = None if stop is None else np.full((B, len(stop)), -1, np.int32)
    steps = model_sample(st, lo, out, stop=stop, window=window, live=live, **kw)
    return dict(steps=steps, state=st, logits=lo, out=out, live=live, window=window)


def both_samples(m, d, B, n, seed, stop=None, **kw):
    s0 = state(m, B, seed)
    lo0 = np.random.default_rng(seed).normal(0, 2, (B, V)).astype(s0.dtype)
    P = m.backend.params
    want = sample_with(lambda *a, **k: m.backend.core.sample(P, *a, **k), m, B, n, s0, lo0,
                       stop=stop, seed=seed, **kw)
    got = sample_with(d.sample, m, B, n, s0, lo0, stop=stop, seed=seed, **kw)
    return got, want


def assert_same_sample(got, want, tol):
    assert got["steps"] == want["steps"]
    np.testing.assert_array_equal(got["out"], want["out"])
    np.testing.assert_array_equal(got["live"], want["live"])
    if want["window"] is not None:
        np.testing.assert_array_equal(got["window"], want["window"])
    close(got["state"], want["state"], tol, "state after sampling")
    close(got["logits"], want["logits"], tol, "logits after sampling")


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("options", SAMPLE_OPTIONS, ids=str)
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_sampling_on_the_device_draws_the_cpus_ids(executor, dtype, tol, options, cell):
    m, d = pair(executor, cell, E=5, L=2, dtype=dtype, seed=6)
    got, want = both_samples(m, d, 3, 30, seed=11, **options)
    assert_same_sample(got, want, tol)
    assert (got["out"] >= 0).all() and got["steps"] == 30


@pytest.mark.parametrize("executor", EXECUTORS)
def test_sampling_stops_where_the_cpu_stops(executor):
    m, d = pair(executor, "gru", E=None, L=1, dtype="float64", seed=7)
    free, _ = both_samples(m, d, 4, 40, seed=3, temperature=1.5)
    for stop in ([int(free["out"][0, 4])], [int(free["out"][1, 2]), int(free["out"][1, 3])]):
        stop = np.array(stop, np.int32)
        got, want = both_samples(m, d, 4, 40, seed=3, temperature=1.5, stop=stop)
        assert_same_sample(got, want, 1e-12)
        assert not got["live"][0 if len(stop) == 1 else 1]  # that row did stop
    # Every row stopped: the loop ends early and says how far it went.
    got, want = both_samples(m, d, 1, 40, seed=3, temperature=1.5,
                             stop=np.array([free["out"][0, 4]], np.int32))
    assert_same_sample(got, want, 1e-12)
    assert got["steps"] <= 5 and (got["out"][0, got["steps"]:] == 99).all()


@pytest.mark.parametrize("executor", EXECUTORS)
def test_a_sample_in_pieces_is_the_sample_in_one_call(executor):
    m, d = pair(executor, "lstm", E=4, L=3, dtype="float64", seed=8)
    whole, want = both_samples(m, d, 2, 24, seed=5, uniform_first=True, feed_last=False)
    assert_same_sample(whole, want, 1e-12)
    s0 = state(m, 2, 5)
    lo = np.random.default_rng(5).normal(0, 2, (2, V))
    st, live = s0.copy(), np.ones(2, np.uint8)
    parts = []
    for k, n in enumerate((10, 14)):
        out = np.zeros((2, n), np.int32)
        d.sample(st, lo, out, seed=5, position=10 * k, uniform_first=True, live=live,
                 feed_last=k == 0)
        parts.append(out)
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), whole["out"])
    close(st, whole["state"], 1e-12, "state after the pieces")


@pytest.mark.parametrize("executor", EXECUTORS)
def test_non_finite_logits_are_refused_on_the_device(executor):
    m, d = pair(executor, "rnn", E=None, L=1, dtype="float32", seed=1)
    s0 = state(m, 2, 1)
    lo = np.zeros((2, V), np.float32)
    lo[1, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        d.sample(s0, lo, np.zeros((2, 5), np.int32), live=np.ones(2, np.uint8))
    with pytest.raises(ValueError, match="NaN or infinite"):
        d.sample(s0, lo, np.zeros((2, 5), np.int32), temperature=0.0,
                 live=np.ones(2, np.uint8))
    with pytest.raises(ValueError, match="top_p"):
        d.sample(s0, lo, np.zeros((2, 5), np.int32), top_p=0.0, live=np.ones(2, np.uint8))


BEAM_OPTIONS = [dict(), dict(length_penalty=0.7), dict(stop=[3]),
                dict(no_repeat_ngram_size=2, context=[1, 2, 3]),
                dict(repetition_penalty=1.6, penalty_ngram_size=2, context=[4, 4, 5])]


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("options", BEAM_OPTIONS, ids=str)
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_beam_search_on_the_device_finds_the_cpus_text(executor, dtype, tol, options, cell):
    m, d = pair(executor, cell, E=None if cell == "gru" else 4, L=2, dtype=dtype, seed=12)
    kw = {k: (np.array(v, np.int32) if isinstance(v, list) else v) for k, v in options.items()}
    s0 = state(m, 1, 2)
    lo = np.random.default_rng(2).normal(0, 1, V).astype(s0.dtype)
    ids_w, score_w, logp_w = m.backend.core.beam_search(m.backend.params, lo, s0, 25, 4, **kw)
    ids_g, score_g, logp_g = d.beam_search(lo, s0, 25, 4, **kw)
    np.testing.assert_array_equal(ids_g, ids_w)
    close(score_g, score_w, tol, "score")
    close(logp_g, logp_w, tol, "log-probability")


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("cell,nl", CELLS)
def test_trace_on_the_device_matches_the_cpu(executor, dtype, tol, cell, nl):
    m, d = pair(executor, cell, nl, E=None if cell == "rnn" else 5, L=2, dtype=dtype, seed=13)
    x, _ = batch(3, 7, 13)
    s0 = state(m, 3, 13)
    G, L, H = {"rnn": 1, "gru": 3, "lstm": 4}[cell], 2, 9

    def arrays():
        return dict(s1=np.zeros_like(s0), hidden=np.zeros((L, 3, 7, H), s0.dtype),
                    cell=np.zeros((L, 3, 7, H), s0.dtype) if cell == "lstm" else None,
                    gates=np.zeros((L, 3, 7, G * H), s0.dtype) if G > 1 else None,
                    logits=np.zeros((3, 7, V), s0.dtype))

    want, got = arrays(), arrays()
    m.backend.core.trace(m.backend.params, x, s0, *want.values())
    d.trace(x, s0, *got.values())
    for k, v in want.items():
        if v is not None:
            close(got[k], v, tol, k)


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_gradient_flow_on_the_device_matches_the_cpu(executor, dtype, tol, cell):
    m, d = pair(executor, cell, E=None if cell == "gru" else 4, L=3, dtype=dtype, seed=14)
    x, y = batch(2, 8, 14)
    s0 = state(m, 2, 14)
    # The device's own gradients first, to see that gradient_flow leaves them.
    d.forward_backward(x, y, s0, np.zeros_like(s0), np.zeros_like(s0))
    before = np.zeros(d.num_params, s0.dtype)
    d.get_grads(before)
    nw, ng = np.zeros((3, 8)), np.zeros((3, 8))
    lw = m.backend.core.gradient_flow(m.backend.params, m.backend.zeros(), x, y, s0, nw)
    lg = d.gradient_flow(x, y, s0, ng)
    close(lg, lw, tol, "last step's loss")
    close(ng, nw, tol, "|| d loss / d h_t ||")
    assert nw[-1, 0] > 0 and nw[0, -1] > 0
    after = np.zeros_like(before)
    d.get_grads(after)
    np.testing.assert_array_equal(after, before)


# ------------------------------------------------------------------ the library
# A model made with device="cuda" runs through pycharrnn.backend_cuda; with
# the host executor that path (the Trainer, checkpoints, optimizers, moves
# between devices) is checked here without a GPU.

TEXT = ("It was the best of times, it was the worst of times, it was the age of "
        "wisdom, it was the age of foolishness.\n") * 12


@pytest.fixture(params=EXECUTORS)
def on_device(request, monkeypatch):
    """device="cuda" gives a model on the host executor, or on the GPU."""
    from pycharrnn import backend, backend_cuda

    if request.param == "host":
        monkeypatch.setattr(backend_cuda.CUDABackend, "executor", "host")
        monkeypatch.setattr(backend, "device_unavailable", lambda device: None)
    return request.param


def run(device, steps, dtype="float64", steps_per_call=1, model=None, opt=None, **kw):
    vocab = pc.Vocab.from_text(TEXT)
    m = model or pc.CharRNN(vocab, hidden_size=16, num_layers=2, cell="gru", embedding_dim=6,
                            dropout=0.2, dtype=dtype, seed=4, device=device)
    o = opt or optim.Adam(m, lr=3e-3, clip_norm=1.0)
    tr = pc.Trainer(m, TEXT, batch_size=3, seq_length=9, optimizer=o, val_fraction=0.1,
                    eval_every=10, steps_per_call=steps_per_call, **kw)
    tr.run(steps=steps)
    return tr


@pytest.mark.parametrize("steps_per_call", [1, 4])
def test_a_run_on_the_device_follows_the_cpus(on_device, steps_per_call):
    cpu = run("cpu", 25, steps_per_call=steps_per_call)
    dev = run("cuda", 25, steps_per_call=steps_per_call)
    assert dev.model.device == "cuda" and cpu.model.device == "cpu"
    close(dev.model.flat_params, cpu.model.flat_params, 1e-11, "parameters after 25 steps")
    for name, buf in cpu.optimizer.state_dict()["buffers"].items():
        close(dev.optimizer.state_dict()["buffers"][name], buf, 1e-11, name)
    a, b = cpu.history, dev.history
    assert len(a) == len(b) > 0
    close([r["loss"] for r in b], [r["loss"] for r in a], 1e-11, "logged losses")


def test_device_parameters_are_read_only_copies(on_device):
    m = pc.CharRNN(12, hidden_size=8, seed=0, device="cuda")
    with pytest.raises(ValueError, match="read-only"):
        m.params["decoder.bias"][0] = 1.0
    sd = m.state_dict()
    sd["decoder.bias"][:] = 0.25
    m.load_state_dict(sd)
    assert np.all(m.params["decoder.bias"] == 0.25)


def test_moving_between_devices_keeps_the_model_and_its_optimizer(on_device):
    def three_runs(moves):
        m = pc.CharRNN(pc.Vocab.from_text(TEXT), hidden_size=16, num_layers=2, cell="gru",
                       embedding_dim=6, dropout=0.2, dtype="float64", seed=4)
        o = optim.Adam(m, lr=3e-3, clip_norm=1.0)
        tr = pc.Trainer(m, TEXT, batch_size=3, seq_length=9, optimizer=o, val_fraction=0.1,
                        eval_every=10)
        for steps, device in zip((10, 20, 30), moves):
            assert m.to(device) is m and m.device == device
            tr.run(steps=steps)
        return m, o

    ref, ref_opt = three_runs(["cpu"] * 3)
    m, o = three_runs(["cpu", "cuda", "cpu"])
    close(m.flat_params, ref.flat_params, 1e-11, "parameters after the three runs")
    close(o.buffers["exp_avg"], ref_opt.buffers["exp_avg"], 1e-11, "exp_avg")


def test_a_device_checkpoint_loads_on_the_cpu_bit_for_bit(on_device, tmp_path):
    tr = run("cuda", 12)
    path = tmp_path / "m.pcr"
    tr.model.save(path)
    back = pc.load(path)
    assert back.device == "cpu"
    assert np.array_equal(back.flat_params, tr.model.flat_params)


def test_sampling_a_device_model_gives_the_cpus_text(on_device):
    tr = run("cuda", 12)
    cpu = pc.CharRNN(tr.model.vocab, hidden_size=16, num_layers=2, cell="gru",
                     embedding_dim=6, dropout=0.2, dtype="float64", seed=4)
    cpu.load_state_dict(tr.model.state_dict())
    for m in (cpu, tr.model):
        m.eval()
    args = dict(length=60, prime="It was", temperature=0.8, seed=5)
    assert tr.model.sample(**args) == cpu.sample(**args)
    assert str(tr.model.beam_search("It", 20)) == str(cpu.beam_search("It", 20))
    args = dict(length=40, prime="It", temperature=1.0, seed=2, stop="s")
    assert tr.model.sample(**args) == cpu.sample(**args)


def test_the_looks_inside_a_device_model_are_the_cpus(on_device):
    from pycharrnn import diagnostics

    tr = run("cuda", 8)
    cpu = pc.CharRNN(tr.model.vocab, hidden_size=16, num_layers=2, cell="gru",
                     embedding_dim=6, dropout=0.2, dtype="float64", seed=4)
    cpu.load_state_dict(tr.model.state_dict())
    ids = tr.model.vocab.encode("It was the best")
    a, b = tr.model.trace_arrays(ids), cpu.trace_arrays(ids)
    for k in ("hidden", "gates", "logits"):
        close(a[k], b[k], 1e-12, k)
    close(diagnostics.gradient_flow(tr.model, TEXT[:80], T=20),
          diagnostics.gradient_flow(cpu, TEXT[:80], T=20), 1e-12, "gradient flow")
