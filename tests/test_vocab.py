"""Vocab: sorted distinct code points, exact encode/decode for any Python str
(lone surrogates included), JSON round trip, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import pycharrnn as pc
from pycharrnn import Vocab

# Any code point, the surrogates D800-DFFF included (st.characters() leaves
# category Cs out unless asked for it explicitly).
any_char = st.one_of(
    st.characters(codec=None),
    st.characters(categories=["Cs"]),
    st.sampled_from(["\x00", "\r", "\n", "\U0010FFFF", "\u0301", "\U0001F600"]),
)
any_text = st.text(alphabet=any_char)

SURROGATE_EXAMPLES = [
    "\ud800",
    "\udc00",
    "\udfff",
    "\ud800\udc00",                  # two lone surrogates, not the pair U+10000
    "\udc00\ud800",
    "a\ud83d\ude00b\U0001F600",      # the UTF-16 halves of U+1F600 and U+1F600 itself
    "\ud800\ud800\udc00\U00010000",
]

PROP = settings(max_examples=300, deadline=None, database=None)


def check_round_trip(text: str) -> None:
    v = Vocab.from_text(text)
    distinct = sorted(set(text))
    assert v.chars == tuple(distinct)
    assert len(v) == len(distinct)
    ids = v.encode(text)
    assert ids.dtype == np.int32
    assert ids.ndim == 1 and ids.shape == (len(text),)
    assert ids.flags.c_contiguous
    assert ids.min() >= 0 and ids.max() < len(v)
    assert [v.chars[i] for i in ids] == list(text)
    out = v.decode(ids)
    assert type(out) is str
    assert out == text
    assert v.decode(ids.tolist()) == text
    assert v.decode(ids.astype(np.int64)) == text


@PROP
@given(st.text(alphabet=any_char, min_size=1))
@example("\ud800")
@example("\ud800\udc00")
@example("\udc00\ud800")
@example("a\ud83d\ude00b\U0001F600")
@example("\x00\r\n")
def test_round_trip_any_text(text):
    check_round_trip(text)


@pytest.mark.parametrize("text", SURROGATE_EXAMPLES)
def test_lone_surrogates_round_trip(text):
    check_round_trip(text)
    v = Vocab.from_text(text)
    assert len(v) == len(set(text))
    assert all(len(c) == 1 for c in v.chars)


def test_surrogate_halves_are_not_merged():
    v = Vocab.from_text("\ud83d\ude00\U0001F600")
    assert v.chars == ("\ud83d", "\ude00", "\U0001F600")
    assert v.encode("\U0001F600").tolist() == [2]
    assert v.encode("\ud83d\ude00").tolist() == [0, 1]
    assert v.decode([0, 1]) == "\ud83d\ude00"
    assert len(v.decode([0, 1])) == 2


@PROP
@given(st.text(alphabet=any_char, min_size=1), st.text(alphabet=any_char))
def test_encode_with_a_superset_vocab(base, extra):
    v = Vocab.from_text(base + extra)
    ids = v.encode(base)
    assert v.decode(ids) == base
    # ids follow code-point order.
    assert [ord(v.chars[i]) for i in np.unique(ids)] == sorted(map(ord, set(base)))


def test_from_text_sorted_distinct_code_points():
    v = Vocab.from_text("hello, world!")
    assert v.chars == (" ", "!", ",", "d", "e", "h", "l", "o", "r", "w")
    assert len(v) == 10
    v = Vocab.from_text("\u00e9e\u0301\U0001F600\x00\uffff")
    assert v.chars == ("\x00", "e", "\u00e9", "\u0301", "\uffff", "\U0001F600")
    assert [ord(c) for c in v.chars] == sorted(ord(c) for c in v.chars)


def test_from_text_deterministic():
    a = Vocab.from_text("the quick brown fox")
    b = Vocab.from_text("xof nworb kciuq eht")
    assert a == b and a.chars == b.chars
    assert hash(a) == hash(b)
    assert np.array_equal(a.encode("fox"), b.encode("fox"))


def test_len_and_contains():
    v = Vocab.from_text("abcabc\ud800")
    assert len(v) == 4
    assert "a" in v and "\ud800" in v
    assert "z" not in v and "ab" not in v and 97 not in v


def test_explicit_order_is_kept():
    v = Vocab(["z", "a", "\ud800", "m"])
    assert v.chars == ("z", "a", "\ud800", "m")
    assert v.encode("azm\ud800").tolist() == [1, 0, 3, 2]
    assert v.decode([0, 1, 2, 3]) == "za\ud800m"


@pytest.mark.parametrize("chars", [[], ["ab"], [""], ["a", "a"]])
def test_constructor_rejects_bad_entries(chars):
    with pytest.raises(ValueError):
        Vocab(chars)


@pytest.mark.parametrize("chars", [[1], [None], ["a", b"b"]])
def test_constructor_rejects_non_str_entries(chars):
    with pytest.raises((ValueError, TypeError)):
        Vocab(chars)


def test_encode_empty_and_decode_empty():
    v = Vocab.from_text("abc")
    ids = v.encode("")
    assert ids.dtype == np.int32 and ids.shape == (0,)
    assert v.decode(ids) == ""
    assert v.decode([]) == ""
    assert v.decode(np.zeros((0,), np.int64)) == ""


def test_encode_returns_fresh_int32_contiguous():
    v = Vocab.from_text("abcdef")
    a = v.encode("fedcba")
    assert a.dtype == np.int32 and a.flags.c_contiguous and a.flags.writeable
    assert a.tolist() == [5, 4, 3, 2, 1, 0]
    a[0] = 0                                   # the caller owns it
    assert v.encode("fedcba").tolist() == [5, 4, 3, 2, 1, 0]


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.int32, np.int64, np.uint64])
def test_decode_any_integer_dtype(dtype):
    v = Vocab.from_text("abcdef")
    assert v.decode(np.array([5, 0, 2], dtype=dtype)) == "fac"


def test_decode_2d_is_row_major():
    v = Vocab.from_text("abcdef")
    assert v.decode(np.array([[0, 1], [2, 3]])) == "abcd"


def test_encode_unknown_character_names_it():
    v = Vocab.from_text("abcdef")
    for text, ch, pos in [("abz", "z", 2), ("\x00", "\x00", 0), ("ab\U0001F600", "\U0001F600", 2),
                          ("cb\ud800a", "\ud800", 2), ("A", "A", 0)]:
        with pytest.raises(ValueError) as e:
            v.encode(text)
        msg = str(e.value)
        assert repr(ch) in msg, msg
        assert f"U+{ord(ch):04X}" in msg, msg
        assert f"position {pos}" in msg, msg


@pytest.mark.parametrize("ids,exc", [
    ([-1], ValueError), ([6], ValueError), ([0, 100], ValueError),
    (np.array([2**40]), ValueError), (np.array([2**63], np.uint64), ValueError),
    ([1.0], TypeError), ([True, False], TypeError), (np.array(["a"]), TypeError),
])
def test_decode_bad_ids(ids, exc):
    v = Vocab.from_text("abcdef")
    with pytest.raises(exc):
        v.decode(ids)


def test_from_text_empty():
    with pytest.raises(ValueError):
        Vocab.from_text("")


# ------------------------------------------------------------------- JSON

@PROP
@given(st.lists(any_char, min_size=1, unique=True))
def test_json_round_trip_any_order(chars):
    v = Vocab(chars)
    s = v.to_json()
    assert isinstance(s, str)
    json.loads(s)                               # valid JSON
    s.encode("utf-8")                           # and valid UTF-8 (no raw surrogates)
    w = Vocab.from_json(s)
    assert w == v
    assert w.chars == tuple(chars)
    text = "".join(chars)
    assert np.array_equal(w.encode(text), v.encode(text))


@pytest.mark.parametrize("text", SURROGATE_EXAMPLES + ["\x00\r\n", "\u4e2d\u6587e\u0301"])
def test_json_round_trip_examples(text):
    v = Vocab.from_text(text)
    w = Vocab.from_json(v.to_json())
    assert w.chars == v.chars
    assert w.decode(w.encode(text)) == text


@pytest.mark.parametrize("s", [
    "",
    "not json",
    "{",
    "[]",
    "null",
    "42",
    '"abc"',
    "{}",
    '{"chars": "abc"}',
    '{"code_points": "abc"}',
    '{"code_points": null}',
    '{"code_points": [97, "b"]}',
    '{"code_points": [97.0]}',
    '{"code_points": [true]}',
    '{"code_points": [[97]]}',
    '{"code_points": [-1]}',
    '{"code_points": [1114112]}',
    '{"code_points": [1e400]}',
    '{"code_points": [99999999999999999999999]}',
    '{"code_points": []}',
    '{"code_points": [97, 97]}',
    "\x00\xff",
])
def test_from_json_garbage(s):
    with pytest.raises(ValueError):
        Vocab.from_json(s)


@pytest.mark.parametrize("s", [None, 42, ["a"]])
def test_from_json_not_a_string(s):
    with pytest.raises((ValueError, TypeError)):
        Vocab.from_json(s)


def test_from_json_deeply_nested_garbage():
    with pytest.raises(ValueError):
        Vocab.from_json("[" * 100_000)


# ------------------------------------------------------------------- size

def test_million_characters():
    rng = np.random.default_rng(0)
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ.,;:!?\n\u00e9\u4e2d"
                             "\U0001F600\ud800"))
    text = "".join(alphabet[rng.integers(0, alphabet.size, 1_000_000)])
    assert len(text) == 1_000_000
    v = Vocab.from_text(text)
    assert len(v) == alphabet.size
    ids = v.encode(text)
    assert ids.shape == (1_000_000,) and ids.dtype == np.int32
    assert v.decode(ids) == text


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
