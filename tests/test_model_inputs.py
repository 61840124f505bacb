"""Bad input to the model and the id checks every entry point shares
(pycharrnn.model, pycharrnn.checks): ids, states, state dicts, the constructor.

TypeError for a wrong type or dtype, ValueError for anything else (range,
shape, contiguity, writeability, emptiness); the message names the argument.
A rejected call never crashes, never silently casts floats (or bools) to
token ids, never writes into a silent copy, and writes nothing at all into
the arrays it was given.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import pycharrnn as pc
from conftest import good_ids, make_model


V, H, B, T = 7, 5, 2, 3  # conftest.make_model's defaults: V=7, H=5
SENTINEL = 12345.0
ALL_CELLS = ("rnn", "gru", "lstm")
AVAILABLE_CELLS = list(ALL_CELLS)


# ============================================================ token ids (public)

# Each entry point taking ids, called with ``bad`` as the named argument and
# valid ids of the same shape elsewhere (so the error must be about ``bad``).
def _partner(bad):
    """Valid ids shaped like ``bad`` where that is a valid shape."""
    shape = np.shape(bad)
    return good_ids(shape) if len(shape) == 2 and min(shape) > 0 else good_ids()


def _forward(m, bad):
    m.forward(bad)


def _loss_x(m, bad):
    m.loss(bad, _partner(bad))


def _loss_y(m, bad):
    m.loss(_partner(bad), bad)


def _fb_x(m, bad):
    m.forward_backward(bad, _partner(bad))


def _fb_y(m, bad):
    m.forward_backward(_partner(bad), bad)


def _sample_prime(m, bad):
    m.sample_ids(3, prime=np.asarray(bad).reshape(-1))


def _trainer_data(m, bad):
    pc.Trainer(m, np.asarray(bad).reshape(-1), batch_size=1, seq_length=1)


ID_ENTRY_POINTS = [
    pytest.param(_forward, "x", id="forward"),
    pytest.param(_loss_x, "x", id="loss-x"),
    pytest.param(_loss_y, "y", id="loss-y"),
    pytest.param(_fb_x, "x", id="forward_backward-x"),
    pytest.param(_fb_y, "y", id="forward_backward-y"),
]
ID_ENTRY_POINTS_ALL = ID_ENTRY_POINTS + [
    pytest.param(_sample_prime, "prime", id="sample_ids-prime"),
    pytest.param(_trainer_data, "data", id="Trainer-data"),
]


def _with(value, dtype):
    a = good_ids().astype(dtype)
    a[1, 2] = value
    return a


OUT_OF_RANGE = [
    pytest.param(_with(-1, np.int32), id="negative"),
    pytest.param(_with(-(2**31), np.int64), id="int32-min"),
    pytest.param(_with(V, np.int32), id="equal-V"),
    pytest.param(_with(V + 1, np.int64), id="V+1"),
    pytest.param(_with(2**31, np.int64), id="2**31"),
    # 2**32 + 1 wraps to the valid id 1 in int32: must not be taken as 1.
    pytest.param(_with(2**32 + 1, np.int64), id="wraps-to-1-in-int32"),
    pytest.param(_with(2**63 - 1, np.int64), id="int64-max"),
    pytest.param(_with(2**64 - 1, np.uint64), id="uint64-max"),
    pytest.param(_with(2**32 + 3, np.uint64), id="uint64-wraps"),
]


@pytest.mark.parametrize("call,name", ID_ENTRY_POINTS_ALL)
@pytest.mark.parametrize("bad", OUT_OF_RANGE)
def test_ids_out_of_range(call, name, bad):
    m = make_model()
    m.flat_grads[...] = SENTINEL
    before = m.flat_params.copy()
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        call(m, bad)
    assert np.array_equal(m.flat_params, before)
    assert np.all(m.flat_grads == SENTINEL)


NOT_INTEGER = [
    pytest.param(np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]), id="float64-integral"),
    pytest.param(np.array([[0.5, 1.0, 2.0], [3.0, 4.0, 5.0]]), id="float64-fraction"),
    pytest.param(np.array([[0, 1, 2], [3, 4, 5]], dtype=np.float32), id="float32"),
    pytest.param(np.array([[0, 1, 2], [3, 4, 5]], dtype=np.float16), id="float16"),
    pytest.param([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], id="list-of-floats"),
    pytest.param(np.array([[True, False, True], [False, True, False]]), id="bool-array"),
    pytest.param([[True, False, True], [False, True, False]], id="list-of-bools"),
    pytest.param(np.array([[0, 1, 2], [3, 4, 5]], dtype=np.complex128), id="complex"),
    pytest.param([["a", "b", "c"], ["d", "e", "f"]], id="strings"),
    pytest.param(np.array([[0, 1, 2], [3, 4, 5]], dtype=object), id="object"),
]


@pytest.mark.parametrize("call,name", ID_ENTRY_POINTS_ALL)
@pytest.mark.parametrize("bad", NOT_INTEGER)
def test_ids_not_integer(call, name, bad):
    m = make_model()
    m.flat_grads[...] = SENTINEL
    with pytest.raises(TypeError, match=rf"^{name}\b"):
        call(m, bad)
    assert np.all(m.flat_grads == SENTINEL)


BAD_SHAPE = [
    pytest.param(np.zeros((), np.int32), id="0-d"),
    pytest.param(np.zeros((2, 3, 1), np.int32), id="3-d"),
    pytest.param(np.zeros((1, 2, 3, 1), np.int64), id="4-d"),
]
EMPTY = [
    pytest.param(np.zeros((0,), np.int32), id="empty-1d"),
    pytest.param(np.zeros((0, 3), np.int32), id="empty-batch"),
    pytest.param(np.zeros((2, 0), np.int64), id="empty-time"),
    pytest.param(np.zeros((0, 0), np.int32), id="empty-both"),
]


@pytest.mark.parametrize("call,name", ID_ENTRY_POINTS)
@pytest.mark.parametrize("bad", BAD_SHAPE + EMPTY)
def test_ids_bad_shape_or_empty(call, name, bad):
    m = make_model()
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        call(m, bad)


@pytest.mark.parametrize("call,name", ID_ENTRY_POINTS)
def test_empty_python_list_is_refused(call, name):
    # np.asarray([]) is float64, so a TypeError is acceptable here; the point
    # is a clean Python exception, not a crash or an empty result.
    m = make_model()
    with pytest.raises((ValueError, TypeError), match=rf"^{name}\b"):
        call(m, [])


def test_python_int_too_big_for_int64_is_refused():
    m = make_model()
    with pytest.raises((ValueError, TypeError), match=r"^x\b"):
        m.forward([[0, 2**70]])


@pytest.mark.parametrize("x_shape,y_shape", [
    ((2, 3), (2, 4)),
    ((2, 3), (3, 3)),
    ((2, 3), (1, 3)),
    ((3,), (2, 3)),
    ((2, 3), (6,)),
])
@pytest.mark.parametrize("method", ["loss", "forward_backward"])
def test_x_and_y_shapes_differ(method, x_shape, y_shape):
    m = make_model()
    m.flat_grads[...] = SENTINEL
    with pytest.raises(ValueError, match="same shape"):
        getattr(m, method)(good_ids(x_shape), good_ids(y_shape))
    assert np.all(m.flat_grads == SENTINEL)


def test_non_contiguous_int64_ids_are_converted_losslessly():
    m = make_model(L=2, E=3)
    rng = np.random.default_rng(1)
    big = rng.integers(0, V, size=(3, 12)).astype(np.int64)
    x = big[:, ::2]                       # non-contiguous int64 view
    y = big[:, 1::2]
    assert not x.flags.c_contiguous and x.dtype == np.int64
    xc, yc = np.ascontiguousarray(x, np.int32), np.ascontiguousarray(y, np.int32)
    logits, state = m.forward(x)
    logits_c, state_c = m.forward(xc)
    assert np.array_equal(logits, logits_c)
    assert np.array_equal(state, state_c)
    assert m.loss(x, y)[0] == m.loss(xc, yc)[0]
    loss, _ = m.forward_backward(x, y)
    g = m.flat_grads.copy()
    loss_c, _ = m.forward_backward(xc, yc)
    assert loss == loss_c
    assert np.array_equal(g, m.flat_grads)
    # The caller's arrays are untouched.
    assert x.dtype == np.int64 and np.array_equal(x, big[:, ::2])


@pytest.mark.parametrize("make", [
    pytest.param(np.asfortranarray, id="fortran"),
    pytest.param(lambda a: a.astype(np.uint8), id="uint8"),
    pytest.param(lambda a: a.astype(np.int16)[:, ::-1], id="int16-negative-stride"),
    pytest.param(lambda a: a.astype(np.uint64)[::-1, ::3], id="uint64-strided"),
    pytest.param(lambda a: a.tolist(), id="list"),
])
def test_other_lossless_integer_inputs_match_int32(make):
    m = make_model()
    x = make(good_ids((3, 8), seed=5))
    expected = np.ascontiguousarray(x, dtype=np.int32)
    assert np.array_equal(m.forward(x)[0], m.forward(expected)[0])


# =================================================================== state

def _state_shape(L=1, batch=B):
    return (L, batch, H)


def _wrap(cell, a, b=None):
    if cell == "lstm":
        return (a, a.copy() if b is None else b)
    return a


STATE_CALLS = {
    "forward": lambda m, s: m.forward(good_ids(), s),
    "loss": lambda m, s: m.loss(good_ids(), good_ids(seed=1), s),
    "forward_backward": lambda m, s: m.forward_backward(good_ids(), good_ids(seed=1), s),
}


@pytest.mark.parametrize("cell", AVAILABLE_CELLS)
@pytest.mark.parametrize("method", list(STATE_CALLS))
@pytest.mark.parametrize("shape", [
    pytest.param((2, B, H), id="wrong-layer-count"),
    pytest.param((1, B + 1, H), id="wrong-batch"),
    pytest.param((1, 1, H), id="batch-1-for-batch-2"),
    pytest.param((1, B, H + 1), id="wrong-hidden"),
    pytest.param((B, H), id="2-d"),
    pytest.param((1, 1, B, H), id="4-d"),
])
def test_state_wrong_shape(cell, method, shape):
    m = make_model(cell)
    m.flat_grads[...] = SENTINEL
    with pytest.raises(ValueError, match="state"):
        STATE_CALLS[method](m, _wrap(cell, np.zeros(shape)))
    assert np.all(m.flat_grads == SENTINEL)


@pytest.mark.parametrize("cell", AVAILABLE_CELLS)
@pytest.mark.parametrize("method", list(STATE_CALLS))
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_, np.complex128, object])
def test_state_not_float(cell, method, dtype):
    m = make_model(cell)
    with pytest.raises(TypeError, match="state"):
        STATE_CALLS[method](m, _wrap(cell, np.zeros(_state_shape(), dtype=dtype)))


def test_state_of_two_layer_model_needs_two_layers():
    m = make_model(L=2)
    with pytest.raises(ValueError, match="state"):
        m.forward(good_ids(), np.zeros((1, B, H)))
    m.forward(good_ids(), np.zeros((2, B, H)))


@pytest.mark.parametrize("state", [
    pytest.param(np.zeros((1, B, H)), id="bare-array"),
    pytest.param(np.zeros((2, 1, B, H)), id="stacked-array"),
    pytest.param((np.zeros((1, B, H)),), id="1-tuple"),
    pytest.param((np.zeros((1, B, H)),) * 3, id="3-tuple"),
])
def test_lstm_state_must_be_a_pair(state):
    m = make_model("lstm")
    with pytest.raises(TypeError, match="pair"):
        m.forward(good_ids(), state)


def test_lstm_state_pair_with_one_bad_part():
    m = make_model("lstm")
    ok = np.zeros((1, B, H))
    with pytest.raises(ValueError, match="state"):
        m.forward(good_ids(), (ok, np.zeros((1, B, H + 1))))
    with pytest.raises(TypeError, match="state"):
        m.forward(good_ids(), (ok, np.zeros((1, B, H), np.int32)))


@pytest.mark.parametrize("cell", AVAILABLE_CELLS)
def test_caller_state_is_never_written(cell):
    m = make_model(cell)
    rng = np.random.default_rng(3)
    s = _wrap(cell, rng.standard_normal((1, B, H)), rng.standard_normal((1, B, H)))
    copies = [np.array(p) for p in (s if cell == "lstm" else (s,))]
    m.forward(good_ids(), s)
    m.loss(good_ids(), good_ids(seed=1), s)
    m.forward_backward(good_ids(), good_ids(seed=1), s)
    for part, copy in zip(s if cell == "lstm" else (s,), copies):
        assert np.array_equal(part, copy)


def test_initial_state_bad_batch():
    m = make_model()
    with pytest.raises(ValueError, match="batch_size"):
        m.initial_state(0)
    with pytest.raises(TypeError, match="batch_size"):
        m.initial_state(2.0)


# ========================================================== load_state_dict

def _shifted_state_dict(m):
    return {k: v + 1.0 for k, v in m.state_dict().items()}


@pytest.mark.parametrize("embedding_dim", [None, 3])
def test_load_state_dict_missing_key(embedding_dim):
    m = make_model(L=2, E=embedding_dim)
    before = m.flat_params.copy()
    d = _shifted_state_dict(m)
    del d["rnn.weight_hh_l1"]
    with pytest.raises(ValueError, match="rnn.weight_hh_l1"):
        m.load_state_dict(d)
    assert np.array_equal(m.flat_params, before)


def test_load_state_dict_unexpected_key():
    m = make_model()
    before = m.flat_params.copy()
    d = _shifted_state_dict(m)
    d["rnn.weight_ih_l1"] = np.zeros((H, H))
    with pytest.raises(ValueError, match="rnn.weight_ih_l1"):
        m.load_state_dict(d)
    assert np.array_equal(m.flat_params, before)


def test_load_state_dict_embedding_into_one_hot_model():
    m = make_model(E=None)
    other = make_model(E=3)
    before = m.flat_params.copy()
    with pytest.raises(ValueError, match="embedding.weight"):
        m.load_state_dict(other.state_dict())
    assert np.array_equal(m.flat_params, before)


@pytest.mark.parametrize("name,shape", [
    ("decoder.bias", (V + 1,)),            # the last parameter: all others valid
    ("decoder.weight", (H, V)),            # transposed
    ("rnn.weight_ih_l0", (H, V, 1)),
    ("rnn.bias_hh_l0", ()),                # a scalar would broadcast
    ("rnn.bias_ih_l0", (1, H)),            # same size, other shape
])
def test_load_state_dict_wrong_shape_changes_nothing(name, shape):
    m = make_model()
    before = m.flat_params.copy()
    d = _shifted_state_dict(m)
    d[name] = np.zeros(shape)
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        m.load_state_dict(d)
    assert np.array_equal(m.flat_params, before)


@pytest.mark.parametrize("value", [
    np.array(["a"] * 5),
    np.zeros(5, dtype=object),
    np.zeros(5, dtype=np.complex64),
])
def test_load_state_dict_non_numeric_changes_nothing(value):
    m = make_model()
    before = m.flat_params.copy()
    d = _shifted_state_dict(m)
    d["rnn.bias_hh_l0"] = value
    with pytest.raises(TypeError, match="rnn.bias_hh_l0"):
        m.load_state_dict(d)
    assert np.array_equal(m.flat_params, before)


@pytest.mark.parametrize("state", [None, [("decoder.bias", np.zeros(V))], "abc"])
def test_load_state_dict_not_a_dict(state):
    m = make_model()
    with pytest.raises(TypeError, match="dict"):
        m.load_state_dict(state)


def test_load_state_dict_valid_after_failures():
    m = make_model()
    d = _shifted_state_dict(m)
    m.load_state_dict(d)
    for k, v in m.state_dict().items():
        assert np.array_equal(v, d[k])


# ============================================================= constructor

@pytest.mark.parametrize("kwargs,exc,name", [
    ({"hidden_size": 0}, ValueError, "hidden_size"),
    ({"hidden_size": -3}, ValueError, "hidden_size"),
    ({"hidden_size": 4.0}, TypeError, "hidden_size"),
    ({"hidden_size": 4.5}, TypeError, "hidden_size"),
    ({"hidden_size": "4"}, TypeError, "hidden_size"),
    ({"hidden_size": True}, TypeError, "hidden_size"),
    ({"hidden_size": None}, TypeError, "hidden_size"),
    ({"num_layers": 0}, ValueError, "num_layers"),
    ({"num_layers": 1.0}, TypeError, "num_layers"),
    ({"cell": "transformer"}, ValueError, "cell"),
    ({"cell": "RNN"}, ValueError, "cell"),
    ({"cell": ""}, ValueError, "cell"),
    ({"cell": None}, ValueError, "cell"),
    ({"nonlinearity": "sigmoid"}, ValueError, "nonlinearity"),
    ({"nonlinearity": "TANH"}, ValueError, "nonlinearity"),
    ({"nonlinearity": None}, ValueError, "nonlinearity"),
    ({"dropout": 1.0}, ValueError, "dropout"),
    ({"dropout": -0.1}, ValueError, "dropout"),
    ({"dropout": 1.5}, ValueError, "dropout"),
    ({"dropout": math.nan}, ValueError, "dropout"),
    ({"dropout": math.inf}, ValueError, "dropout"),
    ({"dropout": "0.1"}, TypeError, "dropout"),
    ({"dropout": None}, TypeError, "dropout"),
    ({"dtype": "float16"}, ValueError, "dtype"),
    ({"dtype": "int32"}, ValueError, "dtype"),
    ({"dtype": "float"}, ValueError, "dtype"),
    ({"dtype": None}, ValueError, "dtype"),
    ({"embedding_dim": 0}, ValueError, "embedding_dim"),
    ({"embedding_dim": -1}, ValueError, "embedding_dim"),
    ({"embedding_dim": 2.0}, TypeError, "embedding_dim"),
    ({"seed": -1}, ValueError, "seed"),
    ({"seed": 1.5}, TypeError, "seed"),
])
def test_constructor_errors(kwargs, exc, name):
    args = dict(hidden_size=H, cell="rnn")
    args.update(kwargs)
    with pytest.raises(exc, match=name):
        pc.CharRNN(V, **args)


@pytest.mark.parametrize("vocab,exc", [
    (0, ValueError), (-1, ValueError), (3.0, TypeError), (True, TypeError),
    ("abc", TypeError), (None, TypeError),
])
def test_constructor_bad_vocab(vocab, exc):
    with pytest.raises(exc, match="vocab"):
        pc.CharRNN(vocab, hidden_size=H, cell="rnn")


def test_constructor_accepts_numpy_ints():
    m = pc.CharRNN(np.int64(V), hidden_size=np.int32(H), num_layers=np.int16(2), cell="rnn",
                   embedding_dim=np.uint8(3))
    assert (m.vocab_size, m.hidden_size, m.num_layers, m.embedding_dim) == (V, H, 2, 3)
    assert all(type(v) is int for v in (m.vocab_size, m.hidden_size, m.num_layers))



@pytest.mark.parametrize("cell", [c for c in AVAILABLE_CELLS if c != "rnn"])
def test_nonlinearity_only_for_rnn(cell):
    with pytest.raises(ValueError, match="nonlinearity"):
        pc.CharRNN(V, hidden_size=H, cell=cell, nonlinearity="relu")
