"""End-to-end learning: a repeating pattern is learnt exactly; Shakespeare's loss falls."""

import math

import numpy as np
import pytest

import pycharrnn as pc
from conftest import DATA

PATTERN = "AABBBBCCCCCC"


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_learns_repeating_pattern_and_reproduces_it(cell):
    text = PATTERN * 60
    vocab = pc.Vocab.from_text(text)
    model = pc.CharRNN(vocab, hidden_size=32, cell=cell, seed=0)
    opt = pc.optim.AdaGrad(model, lr=0.1, eps=1e-8, clip_value=5.0, eps_inside_sqrt=True)
    trainer = pc.Trainer(model, text, batch_size=4, seq_length=24, optimizer=opt)
    loss = math.inf
    for _ in range(3000):
        loss = trainer.step()["loss"]
        if loss < 0.05:
            break
    assert loss < 0.05, f"did not learn the pattern: loss {loss:.4f}"
    # Primed with one full period, argmax continues the pattern exactly.
    out = model.sample(5 * len(PATTERN), prime=PATTERN, temperature=0)
    assert out == PATTERN * 6  # the prime, then five more periods


def test_shakespeare_300_steps_brings_loss_well_below_uniform():
    path = DATA / "tinyshakespeare.txt"
    if not path.is_file():
        pytest.skip("tinyshakespeare.txt not present")
    text = path.read_text(encoding="utf-8")
    vocab = pc.Vocab.from_text(text)
    assert len(vocab) == 65
    model = pc.CharRNN(vocab, hidden_size=128, cell="rnn", seed=0)
    trainer = pc.Trainer(model, text, batch_size=32, seq_length=50)
    hist = trainer.run(steps=300)
    first = np.mean([m["loss"] for m in hist[:10]])
    last = np.mean([m["loss"] for m in hist[-20:]])
    assert first > 3.5  # starts near log(65) = 4.17
    assert last < 2.6, f"mean loss of the last 20 steps: {last:.3f}"
