"""Bad input to sampling (pycharrnn.sampling through the model's methods),
with the conventions of test_model_inputs.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

import pycharrnn as pc
from conftest import make_model


H = 5


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
