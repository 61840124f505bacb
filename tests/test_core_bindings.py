"""The raw C++ module (pycharrnn._core) cannot be called wrong: every array
argument of every entry point (the model's calls, every optimizer update,
gemm, the thread setting) is checked before a kernel touches memory (dtype,
shape, contiguity, writeability, overlaps), hyper-parameters are
keyword-only, a bool slot refuses a number, and every function says what it
does. A rejected call writes nothing into the arrays it was given."""

import math
import threading
import time

import numpy as np
import pytest

import pycharrnn as pc
from pycharrnn import _core
from conftest import good_ids

N = 11
V, H, B, T = 7, 5, 2, 3
SENTINEL = 12345.0
# binding: (state buffers after params and grads, hyper-parameters, bool ones)
OPTIMIZERS = {
    "sgd_update": (["momentum_buffer"],
                   dict(lr=0.1, momentum=0.9, dampening=0.0, nesterov=True, first=True),
                   ["nesterov", "first"]),
    "adagrad_update": (["sum"], dict(clr=0.1, eps=1e-8, eps_inside=True), ["eps_inside"]),
    "rmsprop_update": (["square_avg", "grad_avg", "momentum_buffer"],
                       dict(lr=0.01, alpha=0.99, eps=1e-8, momentum=0.9, centered=True),
                       ["centered"]),
    "adam_update": (["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
                    dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, bias_correction1=0.1,
                         bias_correction2=0.001, decoupled=True, amsgrad=True),
                    ["decoupled", "amsgrad"]),
}


def _opt_arrays(name, dtype):
    """params (SENTINEL), grads and the binding's buffers (0.25), by C++ name."""
    rng = np.random.default_rng(0)
    a = {"params": np.full(N, SENTINEL, dtype), "grads": rng.standard_normal(N).astype(dtype)}
    a.update({b: np.full(N, 0.25, dtype) for b in OPTIMIZERS[name][0]})
    return a


def _update(name, a):
    bufs = [a[b] for b in OPTIMIZERS[name][0]]
    getattr(_core, name)(a["params"], a["grads"], *bufs, **OPTIMIZERS[name][1])


def _check_rejected(name, a, exc, match):
    keep = {k: v.copy() for k, v in a.items()}
    with pytest.raises(exc, match=match):
        _update(name, a)
    for k in ["params"] + OPTIMIZERS[name][0]:
        assert np.array_equal(a[k], keep[k]), f"{k} was written"


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_binding_refuses_positional_hyperparameters(name):
    a = _opt_arrays(name, np.float32)
    bufs = [a[b] for b in OPTIMIZERS[name][0]]
    with pytest.raises(TypeError):
        getattr(_core, name)(a["params"], a["grads"], *bufs, *OPTIMIZERS[name][1].values())
    assert np.all(a["params"] == SENTINEL)


@pytest.mark.parametrize("bad", [5.0, 1, np.float64(1.0), None, "yes"])
@pytest.mark.parametrize("name,flag", [(n, f) for n, v in sorted(OPTIMIZERS.items())
                                       for f in v[2]])
def test_bool_slots_refuse_numbers(name, flag, bad):
    a = _opt_arrays(name, np.float32)
    bufs = [a[b] for b in OPTIMIZERS[name][0]]
    with pytest.raises(TypeError):
        getattr(_core, name)(a["params"], a["grads"], *bufs,
                             **{**OPTIMIZERS[name][1], flag: bad})
    assert np.all(a["params"] == SENTINEL)


def test_model_and_gemm_flags_are_keyword_only_bools():
    m = _core.ModelF64(2, 5, 0, 3, 1, 0.0)
    P = np.zeros(m.num_params)
    x = np.zeros((1, 2), np.int32)
    s0, s1 = np.zeros((1, 1, 1, 3)), np.zeros((1, 1, 1, 3))
    with pytest.raises(TypeError):
        m.forward(P, x, s0, s1, None, False, 0)
    with pytest.raises(TypeError):
        m.loss(P, x, x, s0, s1, train=1)
    m.loss(P, x, x, s0, s1, train=False, seed=0)
    A = np.ones((2, 2))
    with pytest.raises(TypeError):
        _core.gemm(False, False, A, A, np.zeros((2, 2)))
    with pytest.raises(TypeError):
        _core.gemm(A, A, np.zeros((2, 2)), ta=0)


def test_every_function_has_a_docstring():
    funcs = {k: v for k, v in vars(_core).items() if callable(v) and not k.startswith("__")}
    for cls in (_core.ModelF32, _core.ModelF64):
        funcs.update({f"{cls.__name__}.{k}": v for k, v in vars(cls).items()
                      if not k.startswith("_") or k == "__init__"})
    assert len(funcs) > 20
    for name, f in funcs.items():
        doc = getattr(f, "__doc__", None) or ""
        if isinstance(f, type):
            assert doc.strip(), name
            continue
        if isinstance(f, property):
            doc = f.fget.__doc__ or ""
        # pybind11 puts the signature first; a description must follow it
        text = doc.split("\n\n", 1)[1] if "\n\n" in doc else ""
        if name.startswith("Model") and "Overloaded" in doc:
            continue
        assert text.strip() or (isinstance(f, property) and doc.strip()), name


# ============================================================ threads

@pytest.mark.parametrize("n,exc", [(0, ValueError), (-1, ValueError), (1.5, TypeError),
                                   (2.0, TypeError), (True, TypeError), ("2", TypeError)])
def test_set_num_threads_bad(n, exc):
    before = pc.get_num_threads()
    try:
        with pytest.raises(exc, match="threads"):
            pc.set_num_threads(n)
        assert pc.get_num_threads() == before
    finally:
        pc.set_num_threads(before)


def test_core_set_num_threads_zero():
    with pytest.raises(ValueError):
        _core.set_num_threads(0)


# =================================================== the raw C++ module _core

CORE = {np.float32: _core.ModelF32, np.float64: _core.ModelF64}
OTHER = {np.float32: np.float64, np.float64: np.float32}
CORE_DTYPES = [pytest.param(np.float32, id="f32"), pytest.param(np.float64, id="f64")]


class Core:
    """A small core model and valid arrays for every argument of its calls."""

    def __init__(self, dtype, L=2):
        self.dtype = dtype
        self.m = CORE[dtype](0, V, 0, H, L, 0.0)
        n = self.m.num_params
        rng = np.random.default_rng(0)
        self.params = (rng.standard_normal(n) * 0.3).astype(dtype)
        self.x = good_ids()
        self.y = good_ids(seed=1)
        ss = (self.m.state_slots, L, B, H)
        self.s0 = np.zeros(ss, dtype)
        self.s1 = np.full(ss, SENTINEL, dtype)
        self.ds = np.full(ss, SENTINEL, dtype)
        self.grads = np.full(n, SENTINEL, dtype)
        self.logits = np.full((B, T, V), SENTINEL, dtype)

    def args(self, method, **over):
        names = {
            "forward": ["params", "x", "s0", "s1", "logits"],
            "loss": ["params", "x", "y", "s0", "s1"],
            "forward_backward": ["params", "grads", "x", "y", "s0", "s1", "ds"],
        }[method]
        return [over.get(k, getattr(self, k)) for k in names]

    def call(self, method, **over):
        return getattr(self.m, method)(*self.args(method, **over), train=False, seed=0)

    def outputs(self, method):
        return {"forward": ["s1", "logits"], "loss": ["s1"],
                "forward_backward": ["grads", "s1", "ds"]}[method]

    def assert_untouched(self, method):
        for k in self.outputs(method):
            assert np.all(getattr(self, k) == SENTINEL), f"{k} was written"


# C++ argument names, as the messages spell them.
CORE_NAMES = {"params": "params", "x": "x", "y": "y", "s0": "state_in", "s1": "state_out",
              "ds": "dstate", "grads": "grads", "logits": "logits"}
METHOD_ARGS = [
    ("forward", a) for a in ["params", "s0", "s1", "logits"]
] + [
    ("loss", a) for a in ["params", "s0", "s1"]
] + [
    ("forward_backward", a) for a in ["params", "grads", "s0", "s1", "ds"]
]
METHOD_ARGS = [pytest.param(m, a, id=f"{m}-{a}") for m, a in METHOD_ARGS]
OUTPUT_ARGS = [p for p in METHOD_ARGS if p.values[1] in ("s1", "ds", "grads", "logits")]
ID_ARGS = [pytest.param(m, a, id=f"{m}-{a}") for m, a in
           [("forward", "x"), ("loss", "x"), ("loss", "y"),
            ("forward_backward", "x"), ("forward_backward", "y")]]


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("method", ["forward", "loss", "forward_backward"])
def test_core_valid_call_works(dtype, method):
    c = Core(dtype)
    c.call(method)
    for k in c.outputs(method):
        assert np.all(np.isfinite(getattr(c, k)))


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("method,arg", METHOD_ARGS)
def test_core_wrong_float_dtype(dtype, method, arg):
    c = Core(dtype)
    bad = getattr(c, arg).astype(OTHER[dtype])
    with pytest.raises(TypeError, match=rf"^{CORE_NAMES[arg]} must have dtype"):
        c.call(method, **{arg: bad})
    c.assert_untouched(method)


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("method,arg", METHOD_ARGS)
@pytest.mark.parametrize("bad_dtype", [np.int32, np.float16, np.complex64])
def test_core_non_float_arrays(dtype, method, arg, bad_dtype):
    c = Core(dtype)
    bad = getattr(c, arg).astype(bad_dtype)
    with pytest.raises(TypeError, match=CORE_NAMES[arg]):
        c.call(method, **{arg: bad})
    c.assert_untouched(method)


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("method,arg", METHOD_ARGS)
def test_core_non_contiguous(dtype, method, arg):
    c = Core(dtype)
    a = getattr(c, arg)
    # Same shape and dtype, every other element of a twice-as-long buffer.
    wide = np.repeat(a, 2, axis=-1) if a.ndim == 1 else \
        np.concatenate([a, a], axis=-1)
    bad = wide[..., ::2]
    assert bad.shape == a.shape and not bad.flags.c_contiguous
    with pytest.raises(ValueError, match=rf"^{CORE_NAMES[arg]} must be C-contiguous"):
        c.call(method, **{arg: bad})
    c.assert_untouched(method)


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("method,arg", OUTPUT_ARGS)
def test_core_non_contiguous_output_not_written(dtype, method, arg):
    c = Core(dtype)
    a = getattr(c, arg)
    buf = np.full(a.shape[:-1] + (2 * a.shape[-1],), SENTINEL, dtype)
    bad = buf[..., ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        c.call(method, **{arg: bad})
    assert np.all(buf == SENTINEL)
    c.assert_untouched(method)


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("method,arg", OUTPUT_ARGS)
def test_core_fortran_order_output(dtype, method, arg):
    c = Core(dtype)
    a = getattr(c, arg)
    if a.ndim < 2 or sum(d > 1 for d in a.shape) < 2:
        pytest.skip("1-D: Fortran order is C order")
    bad = np.asfortranarray(np.full(a.shape, SENTINEL, dtype))
    with pytest.raises(ValueError, match="C-contiguous"):
        c.call(method, **{arg: bad})
    assert np.all(bad == SENTINEL)
    c.assert_untouched(method)


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("method,arg", OUTPUT_ARGS)
def test_core_read_only_output(dtype, method, arg):
    c = Core(dtype)
    bad = getattr(c, arg).copy()
    bad.setflags(write=False)
    with pytest.raises(ValueError, match=rf"^{CORE_NAMES[arg]} must be writeable"):
        c.call(method, **{arg: bad})
    assert np.all(bad == SENTINEL)
    c.assert_untouched(method)


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("method", ["forward", "loss", "forward_backward"])
def test_core_read_only_inputs_are_fine(dtype, method):
    # The same results, bit for bit, as from writeable copies of the inputs.
    c, ref = Core(dtype), Core(dtype)
    for k in ("params", "x", "y", "s0"):
        getattr(c, k).setflags(write=False)
    assert c.call(method) == ref.call(method)
    for k in c.outputs(method):
        assert getattr(c, k).tobytes() == getattr(ref, k).tobytes(), k


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("method,arg", METHOD_ARGS)
def test_core_unaligned(dtype, method, arg):
    c = Core(dtype)
    a = getattr(c, arg)
    raw = bytearray(a.nbytes + 1)
    bad = np.frombuffer(raw, dtype=dtype, offset=1, count=a.size).reshape(a.shape)
    assert not bad.flags.aligned and bad.flags.writeable and bad.flags.c_contiguous
    with pytest.raises(ValueError, match=rf"^{CORE_NAMES[arg]} must be aligned"):
        c.call(method, **{arg: bad})
    c.assert_untouched(method)


def _shapes(a):
    out = [a.shape[:-1] + (a.shape[-1] + 1,), a.shape + (1,), (a.size,) if a.ndim > 1 else
           (1, a.size)]
    if a.ndim > 1:
        out.append((a.shape[0] + 1,) + a.shape[1:])
    return out


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("method,arg", METHOD_ARGS)
def test_core_wrong_shape(dtype, method, arg):
    c = Core(dtype)
    for shape in _shapes(getattr(c, arg)):
        bad = np.full(shape, SENTINEL, dtype)
        with pytest.raises(ValueError, match=rf"^{CORE_NAMES[arg]} must have shape"):
            c.call(method, **{arg: bad})
        assert np.all(bad == SENTINEL)
        c.assert_untouched(method)


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("method,arg", ID_ARGS)
@pytest.mark.parametrize("id_dtype", [np.int64, np.int16, np.uint32, np.float32, np.float64,
                                      np.bool_])
def test_core_ids_wrong_dtype(dtype, method, arg, id_dtype):
    c = Core(dtype)
    bad = getattr(c, arg).astype(id_dtype)
    with pytest.raises(TypeError, match=rf"^{arg} must have dtype int32"):
        c.call(method, **{arg: bad})
    c.assert_untouched(method)


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("method,arg", ID_ARGS)
def test_core_ids_big_endian(dtype, method, arg):
    c = Core(dtype)
    bad = getattr(c, arg).astype(">i4")
    with pytest.raises(TypeError, match=arg):
        c.call(method, **{arg: bad})
    c.assert_untouched(method)


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("method,arg", ID_ARGS)
@pytest.mark.parametrize("value", [-1, V, V + 100, -(2**31), 2**31 - 1])
def test_core_ids_out_of_range(dtype, method, arg, value):
    c = Core(dtype)
    bad = getattr(c, arg).copy()
    bad[B - 1, T - 1] = value
    with pytest.raises(ValueError, match=rf"^{arg}\[{B - 1}, {T - 1}\] = {value}"):
        c.call(method, **{arg: bad})
    c.assert_untouched(method)


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("method,arg", ID_ARGS)
@pytest.mark.parametrize("shape", [(B * T,), (B, T, 1), (0, T), (B, 0)])
def test_core_ids_bad_shape(dtype, method, arg, shape):
    c = Core(dtype)
    bad = np.zeros(shape, np.int32)
    with pytest.raises(ValueError, match=arg):
        c.call(method, **{arg: bad})
    c.assert_untouched(method)


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("method,arg", ID_ARGS)
def test_core_ids_non_contiguous(dtype, method, arg):
    c = Core(dtype)
    bad = np.repeat(getattr(c, arg), 2, axis=1)[:, ::2]
    with pytest.raises(ValueError, match=rf"^{arg} must be C-contiguous"):
        c.call(method, **{arg: bad})
    c.assert_untouched(method)


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("method", ["loss", "forward_backward"])
def test_core_x_and_y_shapes_differ(dtype, method):
    c = Core(dtype)
    with pytest.raises(ValueError, match="same shape"):
        c.call(method, y=good_ids((B, T + 1)))
    c.assert_untouched(method)


@pytest.mark.parametrize("dtype", CORE_DTYPES)
def test_core_grads_must_not_be_params(dtype):
    c = Core(dtype)
    before = c.params.copy()
    with pytest.raises(ValueError, match="grads"):
        c.call("forward_backward", grads=c.params)
    assert np.array_equal(c.params, before)


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("bad", [[1.0], "abc", np.float64(1.0)])
def test_core_non_array_arguments(dtype, bad):
    c = Core(dtype)
    with pytest.raises(TypeError):
        c.call("loss", s1=bad)
    with pytest.raises(TypeError):
        c.call("forward", params=bad)


def test_core_logits_none_is_allowed():
    c = Core(np.float64)
    c.call("forward", logits=None)
    assert np.all(np.isfinite(c.s1))


def test_core_logits_list_is_refused():
    c = Core(np.float64)
    logits = np.full((B, T, V), SENTINEL).tolist()
    with pytest.raises(TypeError, match="logits"):
        c.call("forward", logits=logits)


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("args", [
    (-1, V, 0, H, 1, 0.0), (4, V, 0, H, 1, 0.0), (0, 0, 0, H, 1, 0.0),
    (0, V, -1, H, 1, 0.0), (0, V, 0, 0, 1, 0.0), (0, V, 0, H, 0, 0.0),
    (0, V, 0, H, 1, 1.0), (0, V, 0, H, 1, -0.5), (0, V, 0, H, 1, math.nan),
])
def test_core_model_constructor(dtype, args):
    with pytest.raises(ValueError):
        CORE[dtype](*args)


# --------------------------------------------------- every optimizer update

OPT_NAMES = sorted(OPTIMIZERS)
# (binding, argument) for every array argument / every written one
OPT_ARRAYS = [(n, k) for n in OPT_NAMES for k in ["params", "grads"] + OPTIMIZERS[n][0]]
OPT_OUTPUTS = [(n, k) for n, k in OPT_ARRAYS if k != "grads"]


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("name", OPT_NAMES)
def test_update_valid(name, dtype):
    a = _opt_arrays(name, dtype)
    a["params"][...] = 1.0  # float32 steps of 1e-3 vanish at SENTINEL's magnitude
    _update(name, a)
    assert np.isfinite(a["params"]).all() and not np.any(a["params"] == 1.0)


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("name,arg", [p for p in OPT_ARRAYS if p[1] != "params"])
def test_update_mixed_dtypes(name, arg, dtype):
    a = _opt_arrays(name, dtype)
    a[arg] = a[arg].astype(OTHER[dtype])
    _check_rejected(name, a, TypeError, rf"^{arg} must have dtype")


@pytest.mark.parametrize("bad_dtype", [np.int32, np.int64, np.float16, np.complex128])
@pytest.mark.parametrize("name,arg", OPT_ARRAYS)
def test_update_non_float(name, arg, bad_dtype):
    a = _opt_arrays(name, np.float32)
    a[arg] = a[arg].astype(bad_dtype)
    with pytest.raises(TypeError):
        _update(name, a)


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("name,arg", OPT_ARRAYS)
def test_update_non_contiguous(name, arg, dtype):
    a = _opt_arrays(name, dtype)
    a[arg] = np.repeat(a[arg], 2)[::2]
    _check_rejected(name, a, ValueError, rf"^{arg} must be C-contiguous")


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("name,arg", OPT_OUTPUTS)
def test_update_read_only(name, arg, dtype):
    a = _opt_arrays(name, dtype)
    a[arg].setflags(write=False)
    _check_rejected(name, a, ValueError, rf"^{arg} must be writeable")


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("name", OPT_NAMES)
def test_update_read_only_grads_fine(name, dtype):
    # The same update, bit for bit, as from a writeable copy of the gradients.
    a = _opt_arrays(name, dtype)
    a["params"][...] = 1.0  # float32 steps of 1e-3 vanish at SENTINEL's magnitude
    ref = {k: v.copy() for k, v in a.items()}
    a["grads"].setflags(write=False)
    _update(name, a)
    _update(name, ref)
    for k in ["params"] + OPTIMIZERS[name][0]:
        assert a[k].tobytes() == ref[k].tobytes(), k
    assert not np.any(a["params"] == 1.0)


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("shape", [(N - 1,), (N + 1,), (1, N), (N, 1)])
@pytest.mark.parametrize("name,arg", [p for p in OPT_ARRAYS if p[1] != "params"])
def test_update_wrong_shape(name, arg, shape, dtype):
    a = _opt_arrays(name, dtype)
    a[arg] = np.full(shape, SENTINEL, dtype)
    _check_rejected(name, a, ValueError, rf"^{arg} must have shape")


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("name", OPT_NAMES)
def test_update_params_2d(name, dtype):
    a = {k: v.reshape(1, N) for k, v in _opt_arrays(name, dtype).items()}
    _check_rejected(name, a, ValueError, "params")


@pytest.mark.parametrize("name,buf", [("sgd_update", "momentum_buffer"),
                                      ("rmsprop_update", "grad_avg"),
                                      ("rmsprop_update", "momentum_buffer"),
                                      ("adam_update", "max_exp_avg_sq")])
def test_update_needs_the_buffer_its_options_use(name, buf):
    a = _opt_arrays(name, np.float64)
    a[buf] = None
    keep = a["params"].copy()
    with pytest.raises(ValueError, match=rf"^{buf} is required"):
        _update(name, a)
    assert np.array_equal(a["params"], keep)


# --------------------------------- a model's optimizer_step, against the updates above

# Each kind's hyper-parameters as Optimizer.spec() gives them (its
# defaults), and the buffers it holds: (kind, defaults, buffers).
STEP_KINDS = {
    "sgd": (0, dict(momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0),
            ["momentum_buffer"]),
    "adagrad": (1, dict(lr_decay=0.0, eps=1e-10, eps_inside=False, weight_decay=0.0), ["sum"]),
    "rmsprop": (2, dict(alpha=0.99, eps=1e-8, momentum=0.0, centered=False, weight_decay=0.0),
                ["square_avg", "grad_avg", "momentum_buffer"]),
    "adam": (3, dict(beta1=0.9, beta2=0.999, eps=1e-8, decoupled=False, amsgrad=False,
                     weight_decay=0.0), ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]),
}
STEP_CONFIGS = {
    "sgd": ("sgd", {}),
    "sgd-momentum": ("sgd", dict(momentum=0.9, dampening=0.1, weight_decay=1e-2)),
    "sgd-nesterov": ("sgd", dict(momentum=0.9, nesterov=True)),
    "adagrad": ("adagrad", dict(lr_decay=0.05, weight_decay=1e-2)),
    "adagrad-eps-inside": ("adagrad", dict(eps=1e-8, eps_inside=True)),
    "rmsprop": ("rmsprop", dict(alpha=0.95, weight_decay=1e-2)),
    "rmsprop-centered-momentum": ("rmsprop", dict(momentum=0.9, centered=True)),
    "adam": ("adam", dict(weight_decay=1e-2)),
    "adam-amsgrad": ("adam", dict(amsgrad=True, beta1=0.8)),
    "adamw": ("adam", dict(decoupled=True, weight_decay=1e-2)),
    "adamw-amsgrad": ("adam", dict(decoupled=True, amsgrad=True, weight_decay=0.1)),
}
STEP_CLIPS = {"none": {}, "clip_norm": dict(clip_norm=0.5), "clip_value": dict(clip_value=0.05),
              "both": dict(clip_norm=2.0, clip_value=0.1)}


def _step_spec(config, clip, dtype, n, step=0):
    """The optimizer dict of a fresh optimizer of this configuration, as
    Optimizer.spec() makes it (the buffers its options use; an
    AdaGrad sum starts at 0.1, an initial_accumulator_value)."""
    kind_name, hp = STEP_CONFIGS[config]
    kind, defaults, names = STEP_KINDS[kind_name]
    spec = {"kind": kind, "step": step, "clip_norm": 0.0, "clip_value": 0.0, **defaults, **hp,
            **STEP_CLIPS[clip]}
    used = {"momentum_buffer": spec.get("momentum", 0) > 0, "grad_avg": spec.get("centered"),
            "max_exp_avg_sq": spec.get("amsgrad")}
    spec["buffers"] = [np.full(n, 0.1 if b == "sum" else 0.0, dtype) if used.get(b, True)
                       else None for b in names] + [None] * (3 - len(names))
    return spec


def _step_by_kind(spec, p, g, lr, grad_norm):
    """One update through the module's per-kind function, exactly as
    pycharrnn.optim's Optimizer.step(grad_norm) calls it."""
    t = spec["step"] + 1  # the optimizer's step_count, counting this update
    scale = 1.0
    if spec["clip_norm"]:
        coef = spec["clip_norm"] / (grad_norm + 1e-6)
        if coef < 1.0:
            scale = coef
    common = dict(weight_decay=spec["weight_decay"], scale=scale, clip=spec["clip_value"])
    b0, b1, b2 = spec["buffers"]
    if spec["kind"] == 0:
        _core.sgd_update(p, g, b0, lr=lr, momentum=spec["momentum"],
                         dampening=spec["dampening"], nesterov=spec["nesterov"], first=t == 1,
                         **common)
    elif spec["kind"] == 1:
        _core.adagrad_update(p, g, b0, clr=lr / (1 + (t - 1) * spec["lr_decay"]),
                             eps=spec["eps"], eps_inside=spec["eps_inside"], **common)
    elif spec["kind"] == 2:
        _core.rmsprop_update(p, g, b0, b1, b2, lr=lr, alpha=spec["alpha"], eps=spec["eps"],
                             momentum=spec["momentum"], centered=spec["centered"], **common)
    else:
        beta1, beta2 = spec["beta1"], spec["beta2"]
        _core.adam_update(p, g, b0, b1, b2, lr=lr, beta1=beta1, beta2=beta2, eps=spec["eps"],
                          bias_correction1=1 - beta1 ** t, bias_correction2=1 - beta2 ** t,
                          decoupled=spec["decoupled"], amsgrad=spec["amsgrad"], **common)


def _step_model(dtype):
    m = CORE[dtype](2, V, 3, H, 1, 0.0)
    p = (np.random.default_rng(1).standard_normal(m.num_params) * 0.3).astype(dtype)
    return m, p


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("clip", sorted(STEP_CLIPS))
@pytest.mark.parametrize("config", sorted(STEP_CONFIGS))
def test_optimizer_step_gives_the_bits_of_the_per_kind_update(config, clip, dtype):
    m, p = _step_model(dtype)
    n, q = m.num_params, p.copy()
    spec, ref = _step_spec(config, clip, dtype, n), _step_spec(config, clip, dtype, n)
    rng = np.random.default_rng(2)
    # Five consecutive updates; the gradients' sizes put the norm on both
    # sides of clip_norm, and the learning rate changes as a schedule would.
    for step, (size, lr) in enumerate([(0.01, 0.1), (1.0, 0.05), (0.3, 0.05), (3.0, 0.02),
                                       (0.05, 0.01)]):
        g = (rng.standard_normal(n) * size).astype(dtype)
        norm = math.sqrt(_core.sum_squares(g))
        spec["step"] = ref["step"] = step
        m.optimizer_step(p, g, spec, lr, norm)
        _step_by_kind(ref, q, g, lr, norm)
        assert spec["step"] == step
        assert p.tobytes() == q.tobytes(), f"params after update {step + 1}"
        for i, (a, b) in enumerate(zip(spec["buffers"], ref["buffers"])):
            assert (a is None and b is None) or a.tobytes() == b.tobytes(), f"buffer {i}"
    assert not np.array_equal(p, _step_model(dtype)[1])


@pytest.mark.parametrize("cls,kw", [
    ("SGD", dict(lr=0.3, momentum=0.9, nesterov=True, weight_decay=1e-3, clip_norm=1.0)),
    ("AdaGrad", dict(lr=0.1, lr_decay=0.01, eps_inside_sqrt=True, clip_value=0.05)),
    ("RMSProp", dict(lr=2e-3, momentum=0.5, centered=True, clip_norm=0.5)),
    ("Adam", dict(lr=3e-3, amsgrad=True, weight_decay=1e-4, clip_norm=2.0, clip_value=0.5)),
    ("AdamW", dict(lr=3e-3, weight_decay=0.1)),
])
def test_optimizer_step_takes_the_optimizers_spec(cls, kw):
    # pycharrnn.optim's own step, against optimizer_step on a twin's spec.
    runs = []
    for _ in range(2):
        m = pc.CharRNN(V, hidden_size=H, cell="gru", embedding_dim=3, seed=4)
        runs.append((m, getattr(pc.optim, cls)(m, **kw)))
    (m1, o1), (m2, o2) = runs
    x = good_ids((B, T), seed=3)
    for _ in range(3):
        for m in (m1, m2):
            m.forward_backward(x, np.roll(x, 1, axis=1))
        norm = o1.grad_norm()
        o1.step(grad_norm=norm)
        m2.backend.core.optimizer_step(m2.flat_params, m2.flat_grads, o2.spec(), o2.lr, norm)
        o2.count_updates(1, norm)
        assert m1.flat_params.tobytes() == m2.flat_params.tobytes()
    for k, buf in o1.buffers.items():
        assert buf.tobytes() == o2.buffers[k].tobytes(), k


def _step_call(dtype=np.float64, config="adamw-amsgrad", clip="both", **over):
    """A valid optimizer_step call's arguments, with some replaced; returns
    (model, args, the arrays it may write, copies of them)."""
    m, p = _step_model(dtype)
    n = m.num_params
    args = dict(params=p, grads=np.full(n, 0.5, dtype),
                optimizer=_step_spec(config, clip, dtype, n, step=3), lr=1e-2, grad_norm=1.0)
    args.update(over)
    writes = [a for a in [args["params"], *args["optimizer"]["buffers"]]
              if isinstance(a, np.ndarray)]
    return m, args, writes, [a.copy() for a in writes]


def _step_refused(exc, match, change=(), **over):
    """optimizer_step refuses the call (the dict's entries in `change` set,
    or removed where "missing") and writes nothing."""
    m, args, writes, before = _step_call(**over)
    for k, v in dict(change).items():
        if v == "missing":
            del args["optimizer"][k]
        else:
            args["optimizer"][k] = v
    with pytest.raises(exc, match=match):
        m.optimizer_step(**args)
    for a, b in zip(writes, before):
        assert a.tobytes() == b.tobytes(), "a refused call wrote"


@pytest.mark.parametrize("dtype", CORE_DTYPES)
def test_optimizer_step_checks_its_arrays(dtype):
    m, p = _step_model(dtype)
    n, other = m.num_params, OTHER[dtype]
    spec = _step_spec("adamw-amsgrad", "both", dtype, n)

    def with_buf(i, buf):
        return {**spec, "buffers": [buf if j == i else b for j, b in enumerate(spec["buffers"])]}

    ro = np.zeros(n, dtype)
    ro.setflags(write=False)
    for exc, match, over in [
        (TypeError, "^params must have dtype", dict(params=p.astype(other))),
        (TypeError, "^grads must have dtype", dict(grads=np.ones(n, other))),
        (TypeError, "^buffer 1 must have dtype",
         dict(optimizer=with_buf(1, np.zeros(n, other)))),
        (ValueError, "^params must have shape", dict(params=np.zeros(n + 1, dtype))),
        (ValueError, "^grads must have shape", dict(grads=np.zeros((1, n), dtype))),
        (ValueError, "^buffer 2 must have shape",
         dict(optimizer=with_buf(2, np.zeros(n - 1, dtype)))),
        (ValueError, "^params must be C-contiguous", dict(params=np.zeros(2 * n, dtype)[::2])),
        (ValueError, "^buffer 0 must be writeable", dict(optimizer=with_buf(0, ro))),
        (ValueError, "^buffer 1 is required", dict(optimizer=with_buf(1, None))),
        (TypeError, "^buffer 0 must be a numpy array or None",
         dict(optimizer=with_buf(0, [0.0] * n))),
    ]:
        _step_refused(exc, match, dtype=dtype, **over)


def test_optimizer_step_refuses_shared_memory():
    n = _step_model(np.float64)[0].num_params
    spec = _step_spec("rmsprop-centered-momentum", "none", np.float64, n)
    p = np.zeros(n)
    buf = np.zeros(2 * n - 1)
    for match, over in [
        ("params and grads must not share memory", dict(params=p, grads=p)),
        ("params and buffer 0 must not share memory",
         dict(params=p, optimizer={**spec, "buffers": [p, *spec["buffers"][1:]]})),
        ("buffer 1 and buffer 2 must not share memory",
         dict(optimizer={**spec, "buffers": [spec["buffers"][0], buf[:n], buf[n - 1:]]})),
        ("buffer 0 and grads must not share memory",
         dict(grads=buf[:n], optimizer={**spec, "buffers": [buf[n - 1:], *spec["buffers"][1:]]})),
    ]:
        _step_refused(ValueError, match, **over)


@pytest.mark.parametrize("over,match", [
    (dict(lr=math.nan), "lr must be finite"), (dict(lr=-1e-3), "lr must be finite"),
    (dict(lr=math.inf), "lr must be finite"), (dict(grad_norm=math.nan), "grad_norm"),
    (dict(grad_norm=-1.0), "grad_norm"), (dict(grad_norm=math.inf), "grad_norm"),
])
def test_optimizer_step_checks_lr_and_grad_norm(over, match):
    _step_refused(ValueError, match, **over)


@pytest.mark.parametrize("change,exc,match", [
    ({"kind": 4}, ValueError, "kind must be 0..3"), ({"kind": -1}, ValueError, "kind must be"),
    ({"step": -1}, ValueError, "optimizer step must be in"),
    ({"step": 2**62 + 1}, ValueError, "optimizer step must be in"),
    ({"clip_norm": -1.0}, ValueError, "must be >= 0"),
    ({"weight_decay": math.nan}, ValueError, "must be >= 0"),
    ({"beta1": 1.0}, ValueError, "betas must be < 1"),
    ({"buffers": [None, None]}, ValueError, "a list of three"),
    ({"buffers": None}, TypeError, "not iterable"),
    ({"step": "missing"}, ValueError, "optimizer: no 'step'"),
    ({"buffers": "missing"}, ValueError, "optimizer: no 'buffers'"),
])
def test_optimizer_step_checks_the_dict(change, exc, match):
    _step_refused(exc, match, change)


def test_optimizer_step_releases_the_gil():
    m = _core.ModelF32(3, 50, 0, 600, 2, 0.0)  # 4.5M parameters: milliseconds an update
    n = m.num_params
    p, g = np.zeros(n, np.float32), np.full(n, 0.5, np.float32)
    spec = _step_spec("adamw-amsgrad", "none", np.float32, n)
    m.optimizer_step(p, g, spec, 1e-3, 1.0)  # the buffers' first touch
    t0 = time.perf_counter()
    m.optimizer_step(p, g, spec, 1e-3, 1.0)
    calls = max(2, int(0.3 / max(time.perf_counter() - t0, 1e-4)))
    done = threading.Event()

    def work():
        for _ in range(calls):
            m.optimizer_step(p, g, spec, 1e-3, 1.0)
        done.set()

    worker = threading.Thread(target=work)
    ticks = 0
    worker.start()
    while not done.is_set():
        ticks += 1  # runs only while the update does not hold the GIL
        time.sleep(0)
    worker.join()
    assert ticks > 3 * calls, (ticks, calls)  # held: under one a call


# ------------------------------------------------------------------- gemm

def _gemm_arrays(dtype, M=3, K=4, N_=5):
    rng = np.random.default_rng(0)
    return (rng.standard_normal((M, K)).astype(dtype),
            rng.standard_normal((K, N_)).astype(dtype),
            np.full((M, N_), SENTINEL, dtype))


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("reference", [False, True])
def test_gemm_valid(dtype, reference):
    A, Bm, C = _gemm_arrays(dtype)
    _core.gemm(A, Bm, C, beta=0.0, reference=reference)
    np.testing.assert_allclose(C, A.astype(np.float64) @ Bm, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("which", ["A", "B"])
def test_gemm_mixed_dtype(dtype, which):
    A, Bm, C = _gemm_arrays(dtype)
    if which == "A":
        A = A.astype(OTHER[dtype])
    else:
        Bm = Bm.astype(OTHER[dtype])
    with pytest.raises(TypeError, match=rf"^{which} must have dtype"):
        _core.gemm(A, Bm, C)
    assert np.all(C == SENTINEL)


@pytest.mark.parametrize("bad_dtype", [np.int32, np.float16])
def test_gemm_non_float(bad_dtype):
    A, Bm, C = _gemm_arrays(np.float32)
    with pytest.raises(TypeError):
        _core.gemm(A.astype(bad_dtype), Bm.astype(bad_dtype), C.astype(bad_dtype))


@pytest.mark.parametrize("dtype", CORE_DTYPES)
def test_gemm_c_non_contiguous(dtype):
    A, Bm, _ = _gemm_arrays(dtype)
    buf = np.full((3, 10), SENTINEL, dtype)
    with pytest.raises(ValueError, match=r"^C must be C-contiguous"):
        _core.gemm(A, Bm, buf[:, ::2])
    assert np.all(buf == SENTINEL)
    buf = np.full((6, 5), SENTINEL, dtype)
    with pytest.raises(ValueError, match=r"^C must be C-contiguous"):
        _core.gemm(A, Bm, buf[::2])
    assert np.all(buf == SENTINEL)


@pytest.mark.parametrize("dtype", CORE_DTYPES)
def test_gemm_inputs_non_contiguous(dtype):
    A, Bm, C = _gemm_arrays(dtype)
    with pytest.raises(ValueError, match=r"^A must be C-contiguous"):
        _core.gemm(np.repeat(A, 2, axis=1)[:, ::2], Bm, C)
    with pytest.raises(ValueError, match=r"^B must be C-contiguous"):
        _core.gemm(A, np.asfortranarray(Bm), C)
    assert np.all(C == SENTINEL)


@pytest.mark.parametrize("dtype", CORE_DTYPES)
def test_gemm_c_read_only(dtype):
    A, Bm, C = _gemm_arrays(dtype)
    C.setflags(write=False)
    with pytest.raises(ValueError, match=r"^C must be writeable"):
        _core.gemm(A, Bm, C)
    assert np.all(C == SENTINEL)


@pytest.mark.parametrize("dtype", CORE_DTYPES)
def test_gemm_wrong_shapes(dtype):
    A, Bm, C = _gemm_arrays(dtype)
    with pytest.raises(ValueError, match="inner"):
        _core.gemm(A, Bm[:3].copy(), C)
    with pytest.raises(ValueError, match="inner"):
        _core.gemm(A, Bm, C, ta=True)          # A^T is 4x3, B is 4x5
    with pytest.raises(ValueError, match=r"^C must have shape"):
        _core.gemm(A, Bm, np.full((5, 3), SENTINEL, dtype))
    with pytest.raises(ValueError, match="2-D"):
        _core.gemm(A.reshape(-1), Bm, C)
    with pytest.raises(ValueError, match="2-D"):
        _core.gemm(A, Bm, C.reshape(1, *C.shape))
    assert np.all(C == SENTINEL)


# ------------------------------------------------- overlapping memory, sizes
def _core_model(cell=3, V=5, E=0, H=4, L=2, dtype=np.float64):
    m = (_core.ModelF64 if dtype == np.float64 else _core.ModelF32)(cell, V, E, H, L, 0.0)
    rng = np.random.default_rng(0)
    P = rng.standard_normal(m.num_params).astype(dtype) * 0.3
    ss = (m.state_slots, L, 2, H)
    x = rng.integers(0, V, (2, 3)).astype(np.int32)
    return m, P, ss, x


def test_state_in_may_be_state_out():
    m, P, ss, x = _core_model()
    s = np.zeros(ss)
    ref = np.empty(ss)
    l1 = m.loss(P, x, x, np.zeros(ss), ref)
    l2 = m.loss(P, x, x, s, s)
    assert l1 == l2 and np.array_equal(s, ref) and np.abs(ref).sum() > 0


@pytest.mark.parametrize("case", ["grads=params", "grads~dstate", "dstate=state_out",
                                  "state_out~params", "state_in~state_out", "state_out~x"])
def test_forward_backward_refuses_overlapping_outputs(case):
    m, P, ss, x = _core_model()
    n, size = m.num_params, int(np.prod(ss))
    G, s0, s1, ds = np.empty(n), np.zeros(ss), np.empty(ss), np.empty(ss)
    if case == "grads=params":
        G = P
    elif case == "grads~dstate":
        buf = np.empty(n + size)
        G, ds = buf[:n], buf[n - 1:n - 1 + size].reshape(ss)
    elif case == "dstate=state_out":
        ds = s1
    elif case == "state_out~params":
        s1 = P[:size].reshape(ss)
    elif case == "state_in~state_out":
        buf = np.zeros(size + 1)
        s0, s1 = buf[:size].reshape(ss), buf[1:].reshape(ss)
    else:  # the ids seen through a float view of the same memory
        buf = np.zeros(size + 8)
        s1 = buf[:size].reshape(ss)
        x = buf[size - 1:size + 2].view(np.int32).reshape(2, 3)
        x[...] = 1
    before = P.copy()
    with pytest.raises(ValueError, match="must not share memory"):
        m.forward_backward(P, G, x, x, s0, s1, ds, train=False)
    assert np.array_equal(P, before)


def test_forward_logits_must_not_overlap_state_out():
    m, P, ss, x = _core_model(V=5)
    size = int(np.prod(ss))
    buf = np.zeros(2 * 3 * 5 + size)
    logits, s1 = buf[:30].reshape(2, 3, 5), buf[29:29 + size].reshape(ss)
    with pytest.raises(ValueError, match="logits and state_out must not share memory|"
                                         "state_out and logits must not share memory"):
        m.forward(P, x, np.zeros(ss), s1, logits)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_optimizer_and_gemm_refuse_overlaps(dtype):
    p = np.ones(8, dtype)
    buf = np.zeros(15, dtype)
    with pytest.raises(ValueError, match="params and grads must not share memory"):
        _core.sgd_update(p, p, None, lr=0.1, momentum=0.0, dampening=0.0, nesterov=False,
                         first=True)
    with pytest.raises(ValueError, match="exp_avg and exp_avg_sq must not share memory"):
        _core.adam_update(p, np.ones(8, dtype), buf[:8], buf[7:], None, lr=0.1, beta1=0.9,
                          beta2=0.99, eps=1e-8, bias_correction1=1.0, bias_correction2=1.0,
                          decoupled=False, amsgrad=False)
    A = np.ones((4, 4), dtype)
    with pytest.raises(ValueError, match="C and A must not share memory"):
        _core.gemm(A, np.ones((4, 4), dtype), A)
    assert np.array_equal(p, np.ones(8, dtype)) and np.array_equal(A, np.ones((4, 4), dtype))


@pytest.mark.parametrize("args,err,match", [
    ((3, 10, 0, 8, 1025), ValueError, "num_layers must be <= 1024"),
    ((3, 10, 0, 8, 2**62), ValueError, "num_layers"),
    ((3, 2**40, 0, 2**40, 1), MemoryError, "parameters needs"),
    ((0, 2**62, 2**62, 1, 1), MemoryError, "parameters needs"),
    ((2, 10, 0, 2**62, 3), MemoryError, "parameters needs"),
])
def test_huge_models_are_refused_before_building(args, err, match):
    with pytest.raises(err, match=match):
        _core.ModelF32(*args, 0.0)
    with pytest.raises((err, ValueError)):
        pc.CharRNN(args[1], hidden_size=args[3], num_layers=args[4], cell="lstm")


def test_thread_count_is_bounded(restore_threads):
    for n in (0, -1, 1025, 2**31 - 1):
        with pytest.raises(ValueError, match=r"\[1, 1024\]"):
            pc.set_num_threads(n)
        with pytest.raises(ValueError, match=r"\[1, 1024\]"):
            _core.set_num_threads(n)
    pc.set_num_threads(1024)
    assert pc.get_num_threads() == 1024
