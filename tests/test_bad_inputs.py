"""Every entry point rejects bad input with the documented exception.

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
from pycharrnn import _core
from pycharrnn.train import Batches

V, H, B, T = 7, 5, 2, 3
SENTINEL = 12345.0

ALL_CELLS = ("rnn", "gru", "lstm")
AVAILABLE_CELLS = list(ALL_CELLS)


def make_model(cell="rnn", num_layers=1, embedding_dim=None, dtype="float64", vocab=V,
               **kw):
    return pc.CharRNN(vocab, hidden_size=H, num_layers=num_layers, cell=cell,
                      embedding_dim=embedding_dim, dtype=dtype, seed=0, **kw)


def good_ids(shape=(B, T), seed=0):
    return np.random.default_rng(seed).integers(0, V, size=shape).astype(np.int32)


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
    m = make_model(num_layers=2, embedding_dim=3)
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
    m = make_model(num_layers=2)
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
    m = make_model(num_layers=2, embedding_dim=embedding_dim)
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
    m = make_model(embedding_dim=None)
    other = make_model(embedding_dim=3)
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


# ========================================================= sampling

@pytest.fixture
def text_model():
    return pc.CharRNN(pc.Vocab.from_text("abcdefg"), hidden_size=H, cell="rnn", seed=0)


def test_sample_without_vocab():
    m = make_model()
    with pytest.raises(ValueError, match="Vocab"):
        m.sample(5)
    assert m.sample_ids(5, seed=0).shape == (5,)


@pytest.mark.parametrize("kwargs,exc,name", [
    ({"temperature": -1.0}, ValueError, "temperature"),
    ({"temperature": -1e-9}, ValueError, "temperature"),
    ({"temperature": math.nan}, ValueError, "temperature"),
    ({"temperature": math.inf}, ValueError, "temperature"),
    ({"temperature": "1"}, TypeError, "temperature"),
    ({"top_k": 0}, ValueError, "top_k"),
    ({"top_k": -2}, ValueError, "top_k"),
    ({"top_k": 1.5}, TypeError, "top_k"),
    ({"length": -1}, ValueError, "length"),
    ({"length": 2.0}, TypeError, "length"),
    ({"prime": 5}, TypeError, "prime"),
    ({"prime": ["a"]}, TypeError, "prime"),
])
def test_sample_bad_arguments(text_model, kwargs, exc, name):
    args = {"length": 5}
    args.update(kwargs)
    with pytest.raises(exc, match=name):
        text_model.sample(**args)


def test_sample_prime_with_unknown_character(text_model):
    with pytest.raises(ValueError, match="'z'"):
        text_model.sample(5, prime="abz")


# ================================================================ Trainer

@pytest.fixture
def vocab_model():
    return pc.CharRNN(pc.Vocab.from_text("abcd"), hidden_size=H, cell="rnn", seed=0)


def test_trainer_empty_text(vocab_model):
    with pytest.raises(ValueError, match="empty"):
        pc.Trainer(vocab_model, "", batch_size=1, seq_length=1)


@pytest.mark.parametrize("length,batch_size,seq_length", [
    (1, 1, 1), (6, 2, 3), (10, 2, 5), (3, 4, 1),
])
def test_trainer_text_too_short(vocab_model, length, batch_size, seq_length):
    text = ("abcd" * 10)[:length]
    with pytest.raises(ValueError, match="batch_size"):
        pc.Trainer(vocab_model, text, batch_size=batch_size, seq_length=seq_length,
                   val_fraction=0)


def test_trainer_validation_too_small(vocab_model):
    with pytest.raises(ValueError, match="validation"):
        pc.Trainer(vocab_model, "abcdabcdab", batch_size=1, seq_length=2, val_fraction=0.1)


@pytest.mark.parametrize("frac", [-0.1, 1.0, 2, "0.1", True])
def test_trainer_bad_val_fraction(vocab_model, frac):
    with pytest.raises(ValueError, match="val_fraction"):
        pc.Trainer(vocab_model, "abcd" * 50, batch_size=1, seq_length=2, val_fraction=frac)


def test_trainer_text_just_long_enough(vocab_model):
    t = pc.Trainer(vocab_model, "abcdabc", batch_size=2, seq_length=3,   # 2*3+1 chars
                   val_fraction=0)
    m = t.step()
    assert math.isfinite(m["loss"])


def test_trainer_text_with_unknown_character(vocab_model):
    with pytest.raises(ValueError, match="'z'"):
        pc.Trainer(vocab_model, "abcdz" * 10, batch_size=2, seq_length=3)


def test_trainer_text_needs_a_vocab():
    with pytest.raises(ValueError, match="Vocab"):
        pc.Trainer(make_model(), "abcabcabc", batch_size=1, seq_length=2)


@pytest.mark.parametrize("kwargs,exc,name", [
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"seq_length": 0}, ValueError, "seq_length"),
    ({"batch_size": 2.0}, TypeError, "batch_size"),
])
def test_trainer_bad_sizes(vocab_model, kwargs, exc, name):
    args = {"batch_size": 2, "seq_length": 3}
    args.update(kwargs)
    with pytest.raises(exc, match=name):
        pc.Trainer(vocab_model, "abcd" * 10, **args)


@pytest.mark.parametrize("ids", [
    pytest.param(np.array([0.5, 1.7, 2.2, 3.9] * 5), id="floats"),
    pytest.param(np.array([2**32 + 1] * 20, dtype=np.int64), id="int64-wraps"),
])
def test_batches_refuses_lossy_ids(ids):
    with pytest.raises((TypeError, ValueError)):
        Batches(ids, 2, 3)


# ================================================================= Vocab

def test_vocab_encode_unknown_character():
    v = pc.Vocab.from_text("hello")
    for text, ch in [("help", "p"), ("a", "a"), ("hello\u00e9", "\u00e9"),
                     ("\U0001F600", "\U0001F600"), ("\ud800", "\ud800")]:
        with pytest.raises(ValueError, match="not in the vocabulary") as e:
            v.encode(text)
        assert repr(ch) in str(e.value)


@pytest.mark.parametrize("ids,exc", [
    ([-1], ValueError), ([4], ValueError), ([0, 1, 100], ValueError),
    (np.array([2**40], np.int64), ValueError), (np.array([2**64 - 1], np.uint64), ValueError),
    ([0.0, 1.0], TypeError), ([True], TypeError), (np.array([1.5]), TypeError),
])
def test_vocab_decode_bad_ids(ids, exc):
    v = pc.Vocab.from_text("abcd")
    with pytest.raises(exc):
        v.decode(ids)


def test_vocab_from_empty_text():
    with pytest.raises(ValueError, match="empty"):
        pc.Vocab.from_text("")


@pytest.mark.parametrize("text", [None, b"abc", ["a", "b"], 5])
def test_vocab_from_non_str(text):
    with pytest.raises(TypeError, match="str"):
        pc.Vocab.from_text(text)


@pytest.mark.parametrize("text", [None, b"abc", 5])
def test_vocab_encode_non_str(text):
    with pytest.raises(TypeError, match="str"):
        pc.Vocab.from_text("abc").encode(text)


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
    c = Core(dtype)
    for k in ("params", "x", "y", "s0"):
        getattr(c, k).setflags(write=False)
    c.call(method)


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


# ------------------------------------------------------------ adagrad_update

N = 11


def _adagrad_arrays(dtype):
    rng = np.random.default_rng(0)
    return {"params": np.full(N, SENTINEL, dtype),
            "grads": rng.standard_normal(N).astype(dtype),
            "sum": np.full(N, SENTINEL, dtype)}


def _adagrad(a):
    _core.adagrad_update(a["params"], a["grads"], a["sum"], clr=0.1, eps=1e-8, eps_inside=True)


@pytest.mark.parametrize("dtype", CORE_DTYPES)
def test_adagrad_valid(dtype):
    a = _adagrad_arrays(dtype)
    _adagrad(a)
    assert not np.all(a["params"] == SENTINEL)


def _check_adagrad_rejected(a, exc, match):
    keep = {k: v.copy() for k, v in a.items()}
    with pytest.raises(exc, match=match):
        _adagrad(a)
    for k in ("params", "sum"):
        assert np.array_equal(a[k], keep[k]), f"{k} was written"


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("arg", ["grads", "sum"])
def test_adagrad_mixed_dtypes(dtype, arg):
    a = _adagrad_arrays(dtype)
    a[arg] = a[arg].astype(OTHER[dtype])
    _check_adagrad_rejected(a, TypeError, rf"^{arg} must have dtype")


@pytest.mark.parametrize("bad_dtype", [np.int32, np.int64, np.float16, np.complex128])
@pytest.mark.parametrize("arg", ["params", "grads", "sum"])
def test_adagrad_non_float(arg, bad_dtype):
    a = _adagrad_arrays(np.float32)
    a[arg] = a[arg].astype(bad_dtype)
    with pytest.raises(TypeError):
        _adagrad(a)


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("arg", ["params", "grads", "sum"])
def test_adagrad_non_contiguous(dtype, arg):
    a = _adagrad_arrays(dtype)
    a[arg] = np.repeat(a[arg], 2)[::2]
    _check_adagrad_rejected(a, ValueError, rf"^{arg} must be C-contiguous")


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("arg", ["params", "sum"])
def test_adagrad_read_only(dtype, arg):
    a = _adagrad_arrays(dtype)
    a[arg].setflags(write=False)
    _check_adagrad_rejected(a, ValueError, rf"^{arg} must be writeable")


@pytest.mark.parametrize("dtype", CORE_DTYPES)
def test_adagrad_read_only_grads_fine(dtype):
    a = _adagrad_arrays(dtype)
    a["grads"].setflags(write=False)
    _adagrad(a)


@pytest.mark.parametrize("dtype", CORE_DTYPES)
@pytest.mark.parametrize("arg,shape", [("grads", (N - 1,)), ("sum", (N + 1,)),
                                       ("grads", (1, N)), ("sum", (N, 1))])
def test_adagrad_wrong_shape(dtype, arg, shape):
    a = _adagrad_arrays(dtype)
    a[arg] = np.full(shape, SENTINEL, dtype)
    _check_adagrad_rejected(a, ValueError, rf"^{arg} must have shape")


@pytest.mark.parametrize("dtype", CORE_DTYPES)
def test_adagrad_params_2d(dtype):
    a = _adagrad_arrays(dtype)
    a = {k: v.reshape(1, N) for k, v in a.items()}
    _check_adagrad_rejected(a, ValueError, "params")


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


def test_sampling_from_a_nan_model_raises():
    m = pc.CharRNN(pc.Vocab("abc"), hidden_size=4, seed=0)
    m.flat_params[3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        m.sample(5, prime="a")
    with pytest.raises(ValueError, match="NaN or infinite"):
        m.sample(5, prime="a", temperature=0)


def test_temperature_so_low_that_logits_overflow_is_argmax():
    m = pc.CharRNN(pc.Vocab("abcdef"), hidden_size=8, seed=0)
    greedy = m.sample(30, prime="a", temperature=0)
    assert m.sample(30, prime="a", temperature=1e-310, seed=1) == greedy
