"""Bad input to the trainer and its batches (pycharrnn.trainer, pycharrnn.data), with the
conventions of test_model_inputs.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

import pycharrnn as pc
from pycharrnn.data import Batches
from conftest import make_model


H = 5


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
