"""Fuzz the C++ boundary (``pycharrnn._core``) with hypothesis.

Run as a script in a child process, so that a crash (segfault, abort) is seen
by the parent instead of taking it down (tests/test_fuzz.py does this)::

    python tests/fuzz_core.py --examples 10000 --seed 0 --log fuzz.log

Each case calls one entry point with arguments drawn at random: valid ones,
and ones broken in one way (dtype, shape, number of dimensions, empty,
non-contiguous, Fortran order, misaligned, read-only, broadcast, a list, None,
a scalar), overlapping outputs, token ids out of range, NaN and infinities,
and sizes from zero to 2**63. Only TypeError, ValueError and MemoryError may
come out; a successful call on finite inputs must give finite results. Before
each call its description is appended to the log, so that a crash names the
call that caused it. The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter

import numpy as np
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import pycharrnn as pc
from pycharrnn import _core
from pycharrnn.checkpoint import CheckpointError

ALLOWED = (TypeError, ValueError, MemoryError)
I64 = 2**63 - 1
OTHER_DTYPES = [np.float16, np.float32, np.float64, np.int32, np.int64, np.uint8,
                np.complex64, np.bool_]
BREAKS = ["dtype", "shape", "ndim", "empty", "noncontig", "fortran", "misaligned",
          "readonly", "broadcast", "list", "none", "scalar"]


class Fuzz:
    """Shared state of one run: counters and the log."""

    def __init__(self, log_path: str):
        self.log = open(log_path, "a", buffering=1, encoding="utf-8")
        self.cases: Counter = Counter()
        self.outcomes: Counter = Counter()

    def call(self, target: str, desc: str, fn, check=None, allowed=ALLOWED):
        """Log, call, and classify; a non-documented exception or a
        non-finite result from finite inputs fails the case."""
        self.cases[target] += 1
        self.log.write(f"{target} #{self.cases[target]}: {desc}\n")
        try:
            out = fn()
        except allowed as e:
            self.outcomes[f"{target}:{type(e).__name__}"] += 1
            return None
        self.outcomes[f"{target}:ok"] += 1
        if check is not None:
            check(out)
        return out


class R:
    """Cheap random choices from one hypothesis-drawn seed (drawing every
    detail through hypothesis costs ~0.25 ms a draw)."""

    def __init__(self, data):
        self.rng = np.random.default_rng(data.draw(st.integers(0, 2**64 - 1), label="seed"))

    def pick(self, items):
        return items[int(self.rng.integers(0, len(items)))]

    def int(self, lo, hi):
        return int(self.rng.integers(lo, hi + 1))

    def coin(self, p):
        return bool(self.rng.random() < p)


# ------------------------------------------------------------------ arrays
def fill(rng, dtype, shape, scale, specials):
    """Values for an array: normal floats (with NaN/Inf/huge values when
    ``specials``), or small integers."""
    n = int(np.prod(shape, dtype=np.int64))
    if np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.complexfloating):
        a = (rng.standard_normal(n) * scale).astype(dtype)
        if specials and n:
            k = rng.integers(1, min(n, 4) + 1)
            pos = rng.integers(0, n, size=k)
            a[pos] = rng.choice([np.nan, np.inf, -np.inf, 1e30], size=k).astype(a.dtype)
        return a.reshape(shape)
    if dtype == np.bool_:
        return (rng.integers(0, 2, n) > 0).reshape(shape)
    return rng.integers(0, 3, n).astype(dtype).reshape(shape)


def arg(r: R, dtype, shape, values=None, p_ok=0.93):
    """(array-or-object, how): mostly a valid array, else broken one way."""
    rng = r.rng
    how = "ok" if r.coin(p_ok) else r.pick(BREAKS)
    shape = tuple(int(s) for s in shape)

    def make(dt, shp):
        if values is not None and dt == dtype and shp == shape:
            return np.array(values, dtype=dt).reshape(shp)
        return np.ascontiguousarray(fill(rng, dt, shp, 0.5, False))

    if how == "ok":
        return make(dtype, shape), how
    if how == "dtype":
        other = r.pick([d for d in OTHER_DTYPES if d != dtype])
        return make(other, shape), f"dtype={np.dtype(other).name}"
    if how == "shape":
        if not shape:
            return make(dtype, (1,)), how
        i = r.int(0, len(shape) - 1)
        s = list(shape)
        s[i] = max(0, s[i] + r.pick([-1, 1, 2]))
        return make(dtype, tuple(s)), f"shape={tuple(s)}"
    if how == "ndim":
        s = shape[:-1] if r.coin(0.5) and shape else shape + (1,)
        return make(dtype, s), f"shape={s}"
    if how == "empty":
        s = shape[:-1] + (0,) if shape else (0,)
        return make(dtype, s), f"shape={s}"
    if how == "noncontig":
        if not shape:
            return make(dtype, ()), how
        big = make(dtype, shape[:-1] + (shape[-1] * 2,))
        return big[..., ::2], how
    if how == "fortran":
        return np.asfortranarray(make(dtype, shape)), how
    if how == "misaligned":
        itemsize = np.dtype(dtype).itemsize
        n = int(np.prod(shape, dtype=np.int64))
        raw = np.zeros(n * itemsize + itemsize, np.uint8)
        a = raw[1:1 + n * itemsize].view(dtype).reshape(shape)
        a[...] = make(dtype, shape)
        return a, how
    if how == "readonly":
        a = make(dtype, shape)
        a.setflags(write=False)
        return a, how
    if how == "broadcast":
        return np.broadcast_to(np.zeros((), dtype), shape), how
    if how == "list":
        return make(dtype, shape).tolist(), how
    if how == "none":
        return None, how
    return 3.0, how


def ids_values(r: R, B, T, V):
    """Token ids [B, T]: valid, or with one id out of range."""
    a = r.rng.integers(0, V, size=(B, T)).astype(np.int64)
    if B * T and r.coin(0.1):
        a.reshape(-1)[r.int(0, B * T - 1)] = r.pick([-1, V, V + 1, 2**31 - 1, -2**31])
    return a


def finite_all(*arrays):
    return all(a is None or not isinstance(a, np.ndarray) or
               a.dtype.kind not in "fc" or np.isfinite(a).all() for a in arrays)


# ------------------------------------------------------------------ targets
def target_model(fz: Fuzz, data):
    draw = data.draw
    r = R(data)
    rng = r.rng
    cell = draw(st.integers(0, 3), label="cell")
    method = draw(st.sampled_from(["forward", "loss", "forward_backward", "trace",
                                   "gradient_flow"]), label="method")
    alias = draw(st.sampled_from(["none"] * 6 + ["s1=s0", "s1=params", "ds=s1", "g=params",
                                                 "g~ds", "logits~s1"]), label="alias")
    V, E = r.int(1, 24), r.pick([0, 0, 1, 5])
    H, L = r.int(1, 9), r.int(1, 3)
    dropout = r.pick([0.0, 0.0, 0.3])
    # The other regularisers: off half the time, else each at random (the
    # embedding's two only with an embedding).
    reg = {}
    if r.coin(0.5):
        reg = {"output_dropout": r.pick([0.0, 0.4]), "weight_drop": r.pick([0.0, 0.5]),
               "locked_dropout": r.coin(0.5)}
        if E:
            reg.update(input_dropout=r.pick([0.0, 0.2]), embedding_dropout=r.pick([0.0, 0.3]))
    f64 = r.coin(0.5)
    dt = np.float64 if f64 else np.float32
    m = (_core.ModelF64 if f64 else _core.ModelF32)(cell, V, E, H, L, dropout, **reg)
    n = m.num_params
    B, T = r.int(1, 4), r.int(1, 6)
    ss = (m.state_slots, L, B, H)
    specials = r.coin(0.15)
    params = np.ascontiguousarray(fill(rng, dt, (n,), 0.5, specials))
    p_how = "ok"
    if r.coin(0.05):
        params, p_how = arg(r, dt, (n,), p_ok=0)
    x, x_how = arg(r, np.int32, (B, T), ids_values(r, B, T, V))
    y, y_how = arg(r, np.int32, (B, T), ids_values(r, B, T, V))
    s0, s0_how = arg(r, dt, ss)
    s1, s1_how = arg(r, dt, ss)
    ds, ds_how = arg(r, dt, ss)
    grads, g_how = arg(r, dt, (n,))
    logits, l_how = arg(r, dt, (B, T, V))
    if method == "forward" and r.coin(0.5):
        logits, l_how = None, "none"
    # Overlaps: outputs carved from one buffer with inputs or each other.
    size_s = int(np.prod(ss))
    if alias == "s1=s0":
        s1 = s0
    elif alias == "s1=params" and isinstance(params, np.ndarray) and params.ndim == 1 \
            and params.size >= size_s:
        s1 = params[:size_s].reshape(ss)
    elif alias == "ds=s1":
        ds = s1
    elif alias == "g=params":
        grads = params
    elif alias == "g~ds":
        buf = np.zeros(n + size_s, dt)
        grads = buf[:n]
        ds = buf[n - 1:n - 1 + size_s].reshape(ss)
    elif alias == "logits~s1":
        buf = np.zeros(B * T * V + size_s, dt)
        logits = buf[:B * T * V].reshape(B, T, V)
        s1 = buf[B * T * V - 1:B * T * V - 1 + size_s].reshape(ss)
    train = r.coin(0.5)
    sd = int(rng.integers(0, 2**64, dtype=np.uint64))
    desc = (f"{method} cell={cell} V={V} E={E} H={H} L={L} dropout={dropout} {reg} "
            f"f64={f64} B={B} T={T} params={p_how}{'+specials' if specials else ''} "
            f"x={x_how} y={y_how} s0={s0_how} s1={s1_how} ds={ds_how} g={g_how} "
            f"logits={l_how} alias={alias} train={train}")
    finite_in = not specials and finite_all(params, s0)

    def check(out):
        if method != "forward" and finite_in:
            assert np.isfinite(out), f"non-finite loss {out} from finite inputs: {desc}"
        if finite_in and isinstance(s1, np.ndarray):
            assert np.isfinite(s1).all(), f"non-finite state from finite inputs: {desc}"

    kw = dict(train=train, seed=sd)
    if method == "forward":
        fz.call("model", desc, lambda: m.forward(params, x, s0, s1, logits, **kw), check)
    elif method == "loss":
        fz.call("model", desc, lambda: m.loss(params, x, y, s0, s1, **kw), check)
    elif method == "trace":
        G = {2: 3, 3: 4}.get(cell, 1)
        hidden, h_how = arg(r, dt, (L, B, T, H))
        # cell: an array for an LSTM only; gates unless G == 1 (sometimes the other way)
        want_c, want_g = (cell == 3) != r.coin(0.05), (G > 1) != r.coin(0.05)
        cst = arg(r, dt, (L, B, T, H))[0] if want_c else None
        gates = arg(r, dt, (L, B, T, G * H))[0] if want_g else None
        lg = logits if isinstance(logits, np.ndarray) else np.zeros((B, T, V), dt)

        def check_trace(out):
            if finite_in:
                assert np.isfinite(hidden).all(), f"non-finite hidden from finite inputs: {desc}"

        fz.call("model", desc + f" hidden={h_how} cell_out={want_c} gates={want_g}",
                lambda: m.trace(params, x, s0, s1, hidden, cst, gates, lg), check_trace)
    elif method == "gradient_flow":
        norms, n_how = arg(r, np.float64, (L, T))
        fz.call("model", desc + f" norms={n_how}",
                lambda: m.gradient_flow(params, grads, x, y, s0, norms), check)
    else:
        if draw(st.booleans(), label="rows"):  # a data-parallel rank's share, or nonsense
            kw["first_row"] = draw(st.integers(-3, 12), label="first_row")
            kw["total_rows"] = draw(st.one_of(st.integers(-3, 24), st.integers(-I64 - 1, I64)),
                                    label="total_rows")
        fz.call("model", desc,
                lambda: m.forward_backward(params, grads, x, y, s0, s1, ds, **kw), check)


def target_construct(fz: Fuzz, data):
    draw = data.draw
    size = st.one_of(st.integers(-1, 12), st.integers(-1, 12), st.integers(-1, 12),
                     st.integers(-I64 - 1, I64),
                     st.sampled_from([2**31, 2**32 + 1, 2**40, 2**62, I64, I64 + 1, -I64 - 2]))
    cell = draw(st.one_of(st.integers(-2, 5), st.sampled_from([2**40, 1.5, "gru", None])))
    V, E, H, L = draw(size), draw(size), draw(size), draw(size)
    dropout = draw(st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                             st.sampled_from([0.0, 0.5, 1.0, -0.0])))
    f64 = draw(st.booleans())
    extra = {}
    if draw(st.booleans()):
        name = draw(st.sampled_from(["input_dropout", "output_dropout", "weight_drop",
                                     "embedding_dropout", "locked_dropout"]))
        extra[name] = draw(st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                                     st.sampled_from([0.0, 0.5, 1.0, True, 1, None])))
    desc = (f"Model{'F64' if f64 else 'F32'}({cell!r}, {V}, {E}, {H}, {L}, {dropout!r}"
            f"{''.join(f', {k}={v!r}' for k, v in extra.items())})")

    def make():
        m = (_core.ModelF64 if f64 else _core.ModelF32)(cell, V, E, H, L, dropout, **extra)
        # What exists must describe itself consistently.
        total = sum(int(np.prod(s, dtype=object)) for _, s, _ in m.layout())
        assert total == m.num_params, desc
        return m

    fz.call("construct", desc, make)


def target_optim(fz: Fuzz, data):
    draw = data.draw
    r = R(data)
    kind = draw(st.sampled_from(["sgd", "adagrad", "rmsprop", "adam"]), label="kind")
    alias = draw(st.sampled_from(["none"] * 5 + ["g=p", "b0=p", "b0~b1"]), label="alias")
    n = r.int(0, 70)
    dt = r.pick([np.float32, np.float64])
    hps = [0.0, 0.9, 1e-8, 0.5, -0.1, 2.0, np.nan, np.inf, -np.inf, 1e300]

    def hp():
        return r.pick(hps) if r.coin(0.3) else float(r.rng.uniform(0, 1))

    p, p_how = arg(r, dt, (n,))
    g, g_how = arg(r, dt, (n,))
    bufs = [arg(r, dt, (n,)) for _ in range(3)]
    if alias == "g=p":
        g = p
    elif alias == "b0=p":
        bufs[0] = (p, "=p")
    elif alias == "b0~b1" and n >= 2:
        buf = np.zeros(2 * n - 1, dt)
        bufs[0], bufs[1] = (buf[:n], "~"), (buf[n - 1:], "~")
    b = [x for x, _ in bufs]
    opt = [None if r.coin(0.5) else x for x in b]
    scale, clip, wd = hp(), hp(), hp()
    lr, h1, h2, eps, bc1, bc2 = hp(), hp(), hp(), hp(), hp(), hp()
    flags = [r.coin(0.5) for _ in range(3)]
    desc = (f"{kind} n={n} {np.dtype(dt).name} p={p_how} g={g_how} "
            f"bufs={[h for _, h in bufs]} alias={alias} opt={[o is None for o in opt]} "
            f"lr={lr} h=({h1}, {h2}, {eps}) scale={scale} clip={clip} wd={wd} flags={flags}")
    if kind == "sgd":
        fn = lambda: _core.sgd_update(p, g, opt[0], lr=lr, momentum=h1, dampening=h2,  # noqa
                                      nesterov=flags[0], first=flags[1], weight_decay=wd,
                                      scale=scale, clip=clip)
    elif kind == "adagrad":
        fn = lambda: _core.adagrad_update(p, g, b[0], clr=lr, eps=eps,  # noqa
                                          eps_inside=flags[0], weight_decay=wd, scale=scale,
                                          clip=clip)
    elif kind == "rmsprop":
        fn = lambda: _core.rmsprop_update(p, g, b[0], opt[1], opt[2], lr=lr, alpha=h1,  # noqa
                                          eps=eps, momentum=h2, centered=flags[0],
                                          weight_decay=wd, scale=scale, clip=clip)
    else:
        fn = lambda: _core.adam_update(p, g, b[0], b[1], opt[2], lr=lr, beta1=h1,  # noqa
                                       beta2=h2, eps=eps, bias_correction1=bc1,
                                       bias_correction2=bc2, decoupled=flags[0],
                                       amsgrad=flags[1], weight_decay=wd, scale=scale,
                                       clip=clip)
    fz.call("optim", desc, fn)


def target_gemm(fz: Fuzz, data):
    r = R(data)
    M, N, K = (r.pick([0, 1, 2, 3, 5, 8, 13, 17, 31, 40]) for _ in range(3))
    ta, tb = data.draw(st.booleans(), label="ta"), data.draw(st.booleans(), label="tb")
    dt = r.pick([np.float32, np.float64])
    A, a_how = arg(r, dt, (K, M) if ta else (M, K))
    Bm, b_how = arg(r, dt, (N, K) if tb else (K, N))
    C, c_how = arg(r, dt, (M, N))
    if r.coin(0.05):
        C, c_how = A, "=A"
    beta = r.pick([0.0, 1.0, -0.5, np.nan])
    reference = r.coin(0.5)
    desc = (f"gemm ta={ta} tb={tb} M={M} N={N} K={K} {np.dtype(dt).name} A={a_how} "
            f"B={b_how} C={c_how} beta={beta} reference={reference}")
    fz.call("gemm", desc,
            lambda: _core.gemm(A, Bm, C, ta=ta, tb=tb, beta=beta, reference=reference))


def target_misc(fz: Fuzz, data):
    draw = data.draw
    r = R(data)
    what = draw(st.sampled_from(["sum_squares", "threads", "isa"]), label="what")
    if what == "sum_squares":
        dt = r.pick([np.float32, np.float64])
        a, how = arg(r, dt, (r.int(0, 300),), p_ok=0.5)
        fz.call("misc", f"sum_squares {how}", lambda: _core.sum_squares(a))
    elif what == "threads":
        n = draw(st.one_of(st.integers(-2, 4), st.sampled_from([1025, 2**31 - 1, -2**31,
                                                                2**40, 2.0, "2", None])))
        before = _core.get_num_threads()

        def go():
            try:
                _core.set_num_threads(n)
            finally:
                assert 1 <= _core.get_num_threads() <= 1024
                _core.set_num_threads(before)

        fz.call("misc", f"set_num_threads({n!r})", go)
    else:
        name = draw(st.one_of(st.text(max_size=12),
                              st.sampled_from(["base", "avx2", "avx512", "AVX2", "", "\x00avx2"])))
        before = _core.isa()

        def go():
            try:
                _core.set_isa(name)
            finally:
                _core.set_isa(before)

        fz.call("misc", f"set_isa({name!r})", go)


def target_checkpoint(fz: Fuzz, data, ref, blob: bytes, tmpdir: str):
    """pycharrnn.load on a valid small checkpoint with bytes changed, cut
    or appended: a CheckpointError (or, where the bytes still decode to a
    valid file, a model with finite parameters)."""
    draw = data.draw
    b = bytearray(blob)
    how = draw(st.sampled_from(["flip", "truncate", "append", "zero"]))
    if how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(b) - 1))
            b[i] = draw(st.integers(0, 255))
    elif how == "truncate":
        b = b[:draw(st.integers(0, len(b) - 1))]
    elif how == "append":
        b += bytes(draw(st.binary(min_size=1, max_size=64)))
    else:
        i = draw(st.integers(0, len(b) - 1))
        b[i:i + 64] = bytes(len(b[i:i + 64]))
    path = os.path.join(tmpdir, "fuzz.npz")
    with open(path, "wb") as f:
        f.write(b)

    def check(m):
        # The zip's CRC-32s guard the data: whatever loads is the model saved.
        assert m.config() == ref.config(), m.config()
        assert m.vocab.chars == ref.vocab.chars
        assert np.array_equal(m.flat_params, ref.flat_params), "a silently changed model loaded"

    fz.call("checkpoint", f"load {how} ({len(b)} bytes)", lambda: pc.load(path), check,
            allowed=(CheckpointError,))


_API_MODELS: dict = {}


def target_api(fz: Fuzz, data):
    """The public CharRNN methods above the boundary, given arbitrary ids,
    states and sampling arguments."""
    draw = data.draw
    r = R(data)
    cell = draw(st.sampled_from(["rnn", "gru", "lstm"]), label="cell")
    method = draw(st.sampled_from(["forward", "loss", "forward_backward", "sample_ids",
                                   "sample"]), label="method")
    key = (cell, r.pick(["float32", "float64"]))
    if key not in _API_MODELS:
        _API_MODELS[key] = pc.CharRNN(pc.Vocab("ab\n\u00e9"), hidden_size=5, num_layers=2,
                                      cell=key[0], embedding_dim=3, dtype=key[1], seed=3)
    m = _API_MODELS[key]
    B, T = r.int(1, 3), r.int(1, 4)
    ids, ids_how = arg(r, np.int32, (B, T), ids_values(r, B, T, 4), p_ok=0.7)
    if r.coin(0.1):
        ids = r.pick([[0, 1, 2], [[0, 1], [2]], "ab", 1.5, [1.0, 2.0], [True, False],
                      np.array([2**40]), np.array([-1], np.int8), np.uint64(3), b"ab"])
        ids_how = repr(ids)
    state = None
    if r.coin(0.4):
        h, h_how = arg(r, m.dtype, (2, B, 5), p_ok=0.7)
        state = (h, arg(r, m.dtype, (2, B, 5), p_ok=0.7)[0]) if cell == "lstm" else h
        ids_how += f" state={h_how}"
    length = r.pick([0, 1, 5, -1, 2.5, None, 10**12, "3"])
    temp = r.pick([1.0, 0.0, 1e-300, -1.0, np.nan, np.inf, 0.7, "1"])
    top_k = r.pick([None, None, 1, 2, 0, -1, 100, 1.5])
    top_p = r.pick([None, None, 0.5, 1.0, 0.0, 1.5, np.nan])
    prime = r.pick(["", "ab", "z", "\u00e9\n", None, 3, "a" * 20])
    desc = (f"{method} {key} B={B} T={T} ids={ids_how} length={length!r} temp={temp!r} "
            f"top_k={top_k!r} top_p={top_p!r} prime={prime!r}")
    y = np.roll(np.asarray(ids), 1) if isinstance(ids, np.ndarray) and ids.dtype.kind in "iu" \
        else ids

    def go():
        if method == "forward":
            return m.forward(ids, state)
        if method == "loss":
            return m.loss(ids, y, state)
        if method == "forward_backward":
            return m.forward_backward(ids, y, state)
        if method == "sample_ids":
            if length == 10**12:
                return None  # a valid request too long to run here
            return m.sample_ids(length, prime=ids if r.coin(0.5) else None,
                                temperature=temp, top_k=top_k, top_p=top_p, seed=1)
        if length == 10**12:
            return None
        return m.sample(length, prime=prime, temperature=temp, top_k=top_k, top_p=top_p,
                        seed=1)

    fz.call("api", desc, go)


def opt_dict(r: R, dt, n: int) -> dict:
    """An optimizer dict for train_steps and optimizer_step: mostly valid,
    with buffers sometimes broken or missing and options out of range."""
    kind = r.pick([0, 1, 2, 3] * 4 + [-1, 4])
    bufs = [arg(r, dt, (n,))[0] if r.coin(0.9) else None for _ in range(3)]
    opt = {"kind": kind, "step": r.pick([0, 1, 5]),
           "clip_norm": r.pick([0.0, 1.0] * 4 + [-1.0]),
           "clip_value": r.pick([0.0, 5.0]), "momentum": r.pick([0.0, 0.9]),
           "centered": r.coin(0.3), "amsgrad": r.coin(0.3), "beta1": r.pick([0.9] * 8 + [1.0]),
           "beta2": 0.999, "eps": 1e-8, "alpha": 0.99, "buffers": bufs}
    if r.coin(0.05):
        opt = r.pick([{}, {"kind": 3}, {"kind": 0, "step": 0, "buffers": [None]}])
    return opt


def opt_desc(opt: dict) -> str:
    bufs = opt.get("buffers") or []
    return (f"opt={ {k: v for k, v in opt.items() if k != 'buffers'} } "
            f"buffers={[None if b is None else getattr(b, 'shape', b) for b in bufs]}")


def target_loops(fz: Fuzz, data):
    """The whole loops in C++: the sampling loop, beam search, K training
    steps and one optimizer update, with broken arrays, bad options and
    non-finite weights."""
    r = R(data)
    rng = r.rng
    method = data.draw(st.sampled_from(["sample", "beam", "train", "optimizer_step"]),
                       label="method")
    cell, V, E, H, L = r.int(0, 3), r.int(1, 12), r.pick([0, 3]), r.int(1, 7), r.int(1, 3)
    f64 = r.coin(0.5)
    dt = np.float64 if f64 else np.float32
    m = (_core.ModelF64 if f64 else _core.ModelF32)(cell, V, E, H, L)
    n = m.num_params
    specials = r.coin(0.1)
    params = np.ascontiguousarray(fill(rng, dt, (n,), 0.5, specials))
    B = r.int(1, 5)
    ss = (m.state_slots, L, B, H)
    head = f"{method} cell={cell} V={V} E={E} H={H} L={L} f64={f64} B={B} specials={specials}"
    stop = r.pick([None] * 6 + [np.array([0], np.int32), np.array([0, V - 1], np.int32)] * 2
                  + [np.array([V], np.int32), np.zeros(0, np.int32), [0]])
    if method == "sample":
        count = r.int(0, 20)
        state, s_how = arg(r, dt, ss)
        logits, l_how = arg(r, dt, (B, V))
        out, o_how = arg(r, np.int32, (B, count))
        live, lv_how = arg(r, np.uint8, (B,))
        m_stop = len(stop) if isinstance(stop, np.ndarray) else 1
        window, w_how = arg(r, np.int32, (B, m_stop)) if stop is not None else (None, "none")
        kw = dict(temperature=r.pick([1.0, 0.0, 0.5, 1e-300] * 4 + [-1.0, np.nan, np.inf]),
                  top_k=r.pick([0, 1, V, 2**40] * 4 + [-1]),
                  top_p=r.pick([1.0, 0.5, 1e-9] * 4 + [0.0, np.nan, 1.5]),
                  seed=int(rng.integers(0, 2**63)), position=r.pick([0, 5, 2**64 - 1]),
                  uniform_first=r.coin(0.3), stop=stop, window=window, live=live,
                  feed_last=r.coin(0.5))
        desc = (f"{head} n={count} state={s_how} logits={l_how} out={o_how} live={lv_how} "
                f"window={w_how} stop={stop!r} " +
                " ".join(f"{k}={v!r}" for k, v in kw.items() if k not in ("live", "window")))
        fz.call("loops", desc, lambda: m.sample(params, state, logits, out, **kw))
    elif method == "beam":
        logits, l_how = arg(r, dt, (V,))
        state, s_how = arg(r, dt, (m.state_slots, L, 1, H))
        length, width = r.pick([0, 1, 5] * 4 + [-1]), r.pick([1, 3, 40] * 4 + [0, -2])
        penalty = r.pick([0.0, 1.0, -2.0] * 4 + [np.nan])
        desc = (f"{head} logits={l_how} state={s_how} length={length} width={width} "
                f"penalty={penalty} stop={stop!r}")
        fz.call("loops", desc, lambda: m.beam_search(params, logits, state, length, width,
                                                     length_penalty=penalty, stop=stop))
    elif method == "train":
        K, T = r.int(1, 3), r.int(1, 4)
        grads, g_how = arg(r, dt, (n,))
        xs, x_how = arg(r, np.int32, (K, B, T), ids_values(r, K * B, T, V).reshape(K, B, T))
        ys, y_how = arg(r, np.int32, (K, B, T), ids_values(r, K * B, T, V).reshape(K, B, T))
        state, s_how = arg(r, dt, ss)
        seeds = r.pick([None, None, np.arange(K, dtype=np.uint64), np.arange(K),
                        np.arange(K + 1, dtype=np.uint64)])
        lrs, lr_how = arg(r, np.float64, (K,),
                          np.full(K, r.pick([1e-3, 0.5, 1e30] * 4 + [np.nan, -1.0])))
        losses, lo_how = arg(r, np.float64, (K,))
        norms, no_how = arg(r, np.float64, (K,))
        opt = opt_dict(r, dt, n)
        desc = (f"{head} K={K} T={T} grads={g_how} xs={x_how} ys={y_how} state={s_how} "
                f"seeds={seeds!r} lrs={lr_how} losses={lo_how} norms={no_how} {opt_desc(opt)}")
        fz.call("loops", desc, lambda: m.train_steps(params, grads, xs, ys, state, seeds, lrs,
                                                     losses, norms, opt))
    else:
        grads, g_how = arg(r, dt, (n,))
        opt = opt_dict(r, dt, n)
        alias = r.pick(["none"] * 6 + ["g=params", "b0=params", "b0=grads"])
        if alias == "g=params":
            grads = params
        elif alias.startswith("b0=") and isinstance(opt.get("buffers"), list):
            opt["buffers"][0] = params if alias == "b0=params" else grads
        lr = r.pick([1e-3, 0.5, 1e30] * 4 + [np.nan, -1.0, np.inf])
        grad_norm = r.pick([1.0, 0.0, 1e-3, 1e30] * 4 + [np.nan, -1.0, np.inf])
        desc = (f"{head} grads={g_how} alias={alias} lr={lr} grad_norm={grad_norm} "
                f"{opt_desc(opt)}")
        fz.call("loops", desc, lambda: m.optimizer_step(params, grads, opt, lr, grad_norm))


# ------------------------------------------------------------------ driver
def _checkpoint(tmpdir: str):
    """A small model and the bytes of its saved file."""
    m = pc.CharRNN(pc.Vocab("abc\n"), hidden_size=4, num_layers=2, cell="lstm",
                   embedding_dim=3, seed=1)
    path = os.path.join(tmpdir, "valid.npz")
    m.save(path)
    with open(path, "rb") as f:
        return m, f.read()


SHARES = {"model": 0.44, "construct": 0.06, "optim": 0.12, "gemm": 0.08, "misc": 0.05,
          "checkpoint": 0.05, "api": 0.1, "loops": 0.1}


def _fuzz_one(fz: Fuzz, fn, n: int, seed_value: int) -> None:
    @seed(seed_value)
    @settings(max_examples=n, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(st.data())
    def case(data):
        fn(fz, data)

    case()


def run(examples: int, seed_value: int, log_path: str) -> dict:
    fz = Fuzz(log_path)
    tmpdir = tempfile.mkdtemp(prefix="pycharrnn-fuzz-")
    ref, blob = _checkpoint(tmpdir)
    funcs = {
        "model": target_model, "construct": target_construct, "optim": target_optim,
        "gemm": target_gemm, "misc": target_misc, "api": target_api, "loops": target_loops,
        "checkpoint": lambda fz_, d: target_checkpoint(fz_, d, ref, blob, tmpdir),
    }
    for name, share in SHARES.items():
        _fuzz_one(fz, funcs[name], max(1, int(round(examples * share))), seed_value)
    pc.set_num_threads(pc.get_num_threads())
    return {"cases": dict(fz.cases), "total": sum(fz.cases.values()),
            "outcomes": dict(sorted(fz.outcomes.items())), "seed": seed_value}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log", default=os.devnull)
    a = ap.parse_args(argv)
    summary = run(a.examples, a.seed, a.log)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
