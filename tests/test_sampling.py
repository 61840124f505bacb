"""Sampling: seeds, temperature 0 (argmax), top-k, primes."""

import numpy as np
import pytest

import pycharrnn as pc


@pytest.fixture
def model():
    vocab = pc.Vocab.from_text("abcdefgh \n")
    return pc.CharRNN(vocab, hidden_size=16, cell="gru", seed=4)


def test_same_seed_same_text(model):
    a = model.sample(200, prime="abc", seed=7)
    b = model.sample(200, prime="abc", seed=7)
    c = model.sample(200, prime="abc", seed=8)
    assert a == b and len(a) == 3 + 200 and a.startswith("abc")  # the prime, then 200
    assert a != c


def test_no_prime(model):
    s = model.sample(50, seed=1)
    assert len(s) == 50 and set(s) <= set(model.vocab.chars)
    assert model.sample(0) == ""


def test_temperature_zero_is_argmax(model):
    out = model.sample_ids(20, prime=model.vocab.encode("ab"), temperature=0)
    # Recompute greedily step by step with forward().
    ids = list(model.vocab.encode("ab"))
    for _ in range(20):
        logits, _ = model.forward(np.array(ids)[None, :])
        ids.append(int(np.argmax(logits[0, -1])))
    assert list(out) == ids[2:]


def test_sampling_follows_model_distribution(model):
    # First sampled character after a prime: frequencies match softmax(logits).
    prime = model.vocab.encode("abc")
    logits, _ = model.forward(prime[None, :])
    p = np.exp(logits[0, -1] - logits[0, -1].max())
    p /= p.sum()
    rng = np.random.default_rng(0)
    n = 3000
    counts = np.bincount([model.sample_ids(1, prime, seed=int(s))[0]
                          for s in rng.integers(0, 2**31, n)], minlength=len(p))
    # Chi-square goodness of fit, 9 degrees of freedom: 99.9% quantile 27.9.
    chi2 = float(((counts - n * p) ** 2 / (n * p)).sum())
    assert chi2 < 27.9


def test_top_k_only_samples_the_k_most_likely(model):
    prime = model.vocab.encode("abc")
    logits, _ = model.forward(prime[None, :])
    allowed = set(np.argsort(logits[0, -1])[-2:])
    firsts = {int(model.sample_ids(1, prime, temperature=1.5, top_k=2, seed=s)[0])
              for s in range(200)}
    assert firsts <= allowed and len(firsts) == 2


@pytest.mark.parametrize("num_samples", [1, 3])
def test_progress_counts_the_characters_and_changes_nothing(num_samples):
    from pycharrnn.sampling import SAMPLE_CHUNK
    model = pc.CharRNN(pc.Vocab.from_text("abcdefgh \n"), hidden_size=8, cell="gru", seed=1)
    n = SAMPLE_CHUNK + 700
    seen = []
    got = model.sample(n, seed=4, num_samples=num_samples,
                       progress=lambda done, total: seen.append((done, total)))
    assert got == model.sample(n, seed=4, num_samples=num_samples)
    assert seen[-1] == (n, n) and len(seen) >= 2
    assert all(a[0] < b[0] for a, b in zip(seen, seen[1:]))


def test_without_a_prime_a_sample_starts_at_a_line_start():
    # Samples began with a uniformly drawn character, so mid-word ("rubh,").
    # Now the model reads a newline first, as the lines of its text begin.
    model = pc.CharRNN(pc.Vocab.from_text("abc de\nf"), hidden_size=8, cell="lstm", seed=2)
    for seed in range(5):
        assert model.sample(40, seed=seed) == model.sample(40, seed=seed, warmup="\n")
        assert list(model.generate(40, seed=seed)) == list(model.sample(40, seed=seed))
    assert model.sample(40, seed=1, num_samples=2)[0] == model.sample(40, seed=1, warmup="\n")
    # a prime or a warm-up of one's own is used as it is
    ids = model.sample_ids(40, prime=model.vocab.encode("a"), seed=1)
    assert model.sample(40, seed=1, prime="a") == "a" + model.vocab.decode(ids)
    # no newline in the vocabulary: the first character is drawn uniformly, as before
    flat = pc.CharRNN(pc.Vocab.from_text("abcde"), hidden_size=8, cell="lstm", seed=2)
    first = {flat.sample(1, seed=s, temperature=1e-3) for s in range(60)}
    assert len(first) == 5  # near-argmax after the first, yet the first varies
