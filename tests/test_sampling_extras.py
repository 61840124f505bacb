"""Sampling extras: top_p, batched num_samples, stop strings, warm-up, the
streaming ``generate``, and their argument checks.

Statistical tests are seeded (deterministic); each compares with what the
model's own softmax says, so a wrong implementation fails them.
"""

import math

import numpy as np
import pytest

import pycharrnn as pc

CHARS = "abcdefgh \n"
PRIME = "abc"


@pytest.fixture(scope="module")
def model():
    m = pc.CharRNN(pc.Vocab.from_text(CHARS), hidden_size=16, cell="gru", seed=4)
    # Stronger recurrent weights (a longer memory, so a warm-up matters) and a
    # sharper decoder (next-character distributions far from uniform, so
    # top-k / top-p sets are real subsets).
    for name, view in m.params.items():
        if name.startswith("rnn.weight"):
            view[...] *= 3.0
    m.params["decoder.weight"][...] *= 10.0
    return m


def softmax(z, temperature=1.0):
    z = np.asarray(z, np.float64) / temperature
    p = np.exp(z - z.max())
    return p / p.sum()


def next_probs(model, text, temperature=1.0):
    logits, _ = model.forward(model.vocab.encode(text)[None, :])
    return softmax(logits[0, -1], temperature)


def nucleus(p, top_p):
    """The ids of the smallest set of most likely ids with mass >= top_p, or
    None when top_p sits so close to a boundary that rounding could decide."""
    order = np.argsort(-p, kind="stable")
    mass = np.cumsum(p[order])
    if np.min(np.abs(mass - top_p)) < 1e-6:
        return None
    n = int(np.searchsorted(mass, top_p)) + 1
    return set(int(i) for i in order[:n])


def top_k_set(p, k):
    return set(int(i) for i in np.argsort(-p, kind="stable")[:k])


def chi2(counts, p):
    n = counts.sum()
    return float(((counts - n * p) ** 2 / (n * p)).sum())


# Chi-square 99.9% quantiles by degrees of freedom.
CHI2_999 = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52, 6: 22.46, 7: 24.32,
            8: 26.12, 9: 27.88}


class CountingCore:
    """Wraps model.backend.core, recording the batch shape of every forward call
    and (rows, ids asked for, steps made) of every call of the sampling loop."""

    def __init__(self, core):
        self._inner = core
        self.calls = []
        self.loops = []

    def forward(self, params, x, *rest, **options):
        self.calls.append(x.shape)
        return self._inner.forward(params, x, *rest, **options)

    def sample(self, params, state, logits, out, **kw):
        k = self._inner.sample(params, state, logits, out, **kw)
        self.loops.append((out.shape[0], out.shape[1], k))
        return k

    def __getattr__(self, name):
        return getattr(self._inner, name)


# ---------------------------------------------------------------- top-k, top-p

def test_fixture_distribution_is_not_flat(model):
    p = next_probs(model, PRIME)
    assert p.max() > 0.25 and np.sort(p)[-4:].sum() < 0.97


def test_top_k_first_character_only_from_the_k_most_likely(model):
    p = next_probs(model, PRIME, 1.5)
    allowed = top_k_set(p, 3)
    ids = model.sample_ids(1, model.vocab.encode(PRIME), temperature=1.5, top_k=3,
                           num_samples=3000, seed=0)[:, 0]
    assert set(ids.tolist()) == allowed
    q = p[sorted(allowed)] / p[sorted(allowed)].sum()
    counts = np.bincount(ids, minlength=len(p))[sorted(allowed)]
    assert chi2(counts, q) < CHI2_999[2]


def test_top_p_first_character_only_from_the_nucleus(model):
    p = next_probs(model, PRIME)
    allowed = nucleus(p, 0.8)
    assert allowed is not None and 2 <= len(allowed) < len(p) - 1
    ids = model.sample_ids(1, model.vocab.encode(PRIME), top_p=0.8, num_samples=4000,
                           seed=1)[:, 0]
    assert set(ids.tolist()) == allowed
    # Within the nucleus the probabilities are the softmax, renormalised.
    keep = sorted(allowed)
    counts = np.bincount(ids, minlength=len(p))[keep]
    assert chi2(counts, p[keep] / p[keep].sum()) < CHI2_999[len(keep) - 1]


def test_top_p_applies_after_temperature_and_top_k(model):
    T = 2.0
    p = next_probs(model, PRIME, T)
    k = 5
    topk = sorted(top_k_set(p, k))
    pk = np.zeros_like(p)
    pk[topk] = p[topk] / p[topk].sum()
    allowed = nucleus(pk, 0.6)
    assert allowed is not None and 2 <= len(allowed) < k
    # Without top_k the nucleus at this temperature is larger: top_k matters.
    assert nucleus(p, 0.6) != allowed
    ids = model.sample_ids(1, model.vocab.encode(PRIME), temperature=T, top_k=k, top_p=0.6,
                           num_samples=3000, seed=2)[:, 0]
    assert set(ids.tolist()) == allowed


@pytest.mark.parametrize("kwargs,allowed_of", [
    ({"top_k": 2, "temperature": 1.3}, lambda p: top_k_set(p, 2)),
    ({"top_p": 0.7, "temperature": 0.9}, lambda p: nucleus(p, 0.7)),
])
def test_every_step_of_every_row_respects_the_cut(model, kwargs, allowed_of):
    # Check each generated character against the model's distribution given
    # that row's own prefix (so a batched run must keep rows' states apart).
    rows = model.sample(40, prime=PRIME, num_samples=4, seed=5, **kwargs)
    checked = 0
    for row in rows:
        assert row.startswith(PRIME)
        row = row[len(PRIME):]
        logits, _ = model.forward(model.vocab.encode(PRIME + row)[None, :])
        for t, ch in enumerate(row):
            p = softmax(logits[0, len(PRIME) - 1 + t], kwargs["temperature"])
            allowed = allowed_of(p)
            if allowed is None:
                continue
            assert model.vocab.encode(ch)[0] in allowed, (row, t)
            checked += 1
    assert checked > 100


@pytest.mark.parametrize("kwargs", [
    {}, {"prime": PRIME}, {"prime": PRIME, "temperature": 0.7},
    {"prime": "h", "top_k": 4}, {"temperature": 1.8},
])
def test_top_p_one_is_no_top_p(model, kwargs):
    for seed in range(4):
        assert model.sample(150, seed=seed, top_p=1.0, **kwargs) == \
            model.sample(150, seed=seed, **kwargs)
    assert model.sample(150, seed=9, top_p=0.5, **kwargs) != model.sample(150, seed=9, **kwargs)
    np.testing.assert_array_equal(
        model.sample_ids(30, model.vocab.encode("ab"), seed=3, top_p=1, num_samples=5),
        model.sample_ids(30, model.vocab.encode("ab"), seed=3, num_samples=5))


def test_small_top_p_is_argmax(model):
    # A nucleus holding less mass than the most likely character is that character.
    greedy = model.sample(60, prime=PRIME, temperature=0)
    for seed in range(3):
        assert model.sample(60, prime=PRIME, top_p=1e-9, seed=seed) == greedy


# -------------------------------------------------------------------- batched

def test_batched_shapes_and_types(model):
    ids = model.sample_ids(25, model.vocab.encode(PRIME), num_samples=6, seed=0)
    assert ids.shape == (6, 25) and ids.dtype == np.int32
    one = model.sample_ids(25, model.vocab.encode(PRIME), num_samples=1, seed=0)
    assert one.shape == (25,) and one.dtype == np.int32
    assert model.sample_ids(0, num_samples=3).shape == (3, 0)
    texts = model.sample(25, prime=PRIME, num_samples=6, seed=0)
    assert isinstance(texts, list) and len(texts) == 6
    assert all(isinstance(t, str) and len(t) == len(PRIME) + 25 for t in texts)
    assert texts == [PRIME + model.vocab.decode(r) for r in ids]
    assert isinstance(model.sample(25, prime=PRIME, num_samples=1, seed=0), str)
    assert model.sample(0, num_samples=2) == ["", ""]


def test_batched_reproducible_and_rows_differ(model):
    a = model.sample(60, prime=PRIME, num_samples=8, seed=21)
    assert a == model.sample(60, prime=PRIME, num_samples=8, seed=21)
    assert a != model.sample(60, prime=PRIME, num_samples=8, seed=22)
    assert len(set(a)) == 8
    b = model.sample(60, num_samples=8, seed=21)  # no prime: uniform first character
    assert len(set(b)) == 8 and b == model.sample(60, num_samples=8, seed=21)


def test_batched_is_one_call_of_the_loop(model, monkeypatch):
    core = CountingCore(model.backend.core)
    monkeypatch.setattr(model.backend, "core", core)
    model.sample_ids(12, model.vocab.encode(PRIME), num_samples=7, seed=0)
    assert core.calls == [(1, len(PRIME))] and core.loops == [(7, 12, 12)]
    core.calls.clear()
    core.loops.clear()
    model.sample(5, num_samples=3, seed=0)  # after a newline read first (a line's start)
    assert core.calls == ([(1, 1)] if "\n" in model.vocab else []) and \
        core.loops == [(3, 5, 5)]


def test_batched_first_character_follows_softmax(model):
    p = next_probs(model, PRIME)
    n = 4000
    ids = model.sample_ids(1, model.vocab.encode(PRIME), num_samples=n, seed=3)[:, 0]
    assert chi2(np.bincount(ids, minlength=len(p)), p) < CHI2_999[9]


def test_batched_second_character_follows_each_rows_softmax(model):
    # Rows that drew the same first character share a distribution for the
    # second: checks that each row's state follows its own draw.
    n = 4000
    ids = model.sample_ids(2, model.vocab.encode(PRIME), num_samples=n, seed=4)
    first = np.bincount(ids[:, 0]).argmax()
    second = ids[ids[:, 0] == first, 1]
    p = next_probs(model, PRIME + model.vocab.chars[first])
    keep = p * len(second) >= 5  # chi-square needs expected counts >= 5
    counts = np.bincount(second, minlength=len(p))
    obs = np.append(counts[keep], counts[~keep].sum())
    exp = np.append(p[keep], p[~keep].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    assert len(second) > 500
    assert chi2(obs, exp) < CHI2_999[len(exp) - 1]


def test_batched_without_prime_first_character_is_uniform(model):
    ids = model.sample_ids(1, num_samples=3000, seed=5)[:, 0]
    V = model.vocab_size
    assert chi2(np.bincount(ids, minlength=V), np.full(V, 1 / V)) < CHI2_999[9]


def test_batched_argmax_rows_equal_the_greedy_sample(model):
    greedy = model.sample(40, prime=PRIME, temperature=0)
    assert model.sample(40, prime=PRIME, temperature=0, num_samples=3) == [greedy] * 3


# --------------------------------------------------------------------- stop

def test_stop_cuts_after_the_first_occurrence(model):
    full = model.sample(300, prime=PRIME, seed=8)[len(PRIME):]
    for stop in (full[40:42], full[100:103], full[7]):
        cut = model.sample(300, prime=PRIME, seed=8, stop=stop)
        assert cut[:len(PRIME)] == PRIME
        cut = cut[len(PRIME):]
        assert cut == full[:full.index(stop) + len(stop)]
        assert cut.endswith(stop) and cut.find(stop) == len(cut) - len(stop)


def test_stop_never_runs_past_length(model):
    full = model.sample(50, prime=PRIME, seed=8)[len(PRIME):]
    absent = next(a + b for a in CHARS for b in CHARS if a + b not in full)
    assert model.sample(50, prime=PRIME, seed=8, stop=absent) == PRIME + full
    # An occurrence only after `length` characters does not extend the sample.
    longer = model.sample(200, prime=PRIME, seed=8)[len(PRIME):]
    assert longer[:50] == full
    late = next(longer[i:i + 2] for i in range(50, 198) if longer[i:i + 2] not in full)
    assert model.sample(50, prime=PRIME, seed=8, stop=late) == PRIME + full
    assert len(model.sample(50, prime=PRIME, seed=8, stop=late)) == len(PRIME) + 50
    assert model.sample(0, seed=8, stop="a") == ""


def test_stop_does_not_match_the_prime(model):
    # The prime ends with "c"; stop "c" (or "bc") must wait for a generated one.
    n = len(PRIME)
    seed = next(s for s in range(100)
                if "bc" in model.sample(200, prime=PRIME, seed=s)[n + 1:])
    full = model.sample(200, prime=PRIME, seed=seed)[n:]
    for stop in ("c", "bc"):
        cut = model.sample(200, prime=PRIME, seed=seed, stop=stop)
        assert cut == PRIME + full[:full.index(stop) + len(stop)] and len(cut) > n + 1


def test_stop_in_batched_runs_each_row_on_its_own(model, monkeypatch):
    full = model.sample(120, prime=PRIME, seed=6, num_samples=6)
    stop = "a"
    core = CountingCore(model.backend.core)
    monkeypatch.setattr(model.backend, "core", core)
    cut = model.sample(120, prime=PRIME, seed=6, num_samples=6, stop=stop)
    n = len(PRIME)
    full = [f[n:] for f in full]
    want = [PRIME + (f[:f.index(stop) + 1] if stop in f else f) for f in full]
    assert cut == want
    assert len(set(map(len, cut))) > 2  # rows really stopped at different places
    # Generation ends once every row has stopped (or at length).
    steps = max(map(len, cut)) - n
    assert core.loops == [(6, 120, steps)]


def test_generate_stops_drawing_at_the_stop(model, monkeypatch):
    full = model.sample(200, prime=PRIME, seed=1)[len(PRIME):]
    stop = full[30:33]
    core = CountingCore(model.backend.core)
    monkeypatch.setattr(model.backend, "core", core)
    out = "".join(model.generate(200, prime=PRIME, seed=1, stop=stop))
    assert out == PRIME + full[:full.index(stop) + 3]
    # Pieces of 1, 2, 4, ... ids; the last one ends at the stop.
    assert sum(k for _, _, k in core.loops) == len(out) - len(PRIME)
    assert [n for _, n, _ in core.loops] == [1, 2, 4, 8, 16, 32, 64][:len(core.loops)]


# ------------------------------------------------------------------- warm-up

def test_warmup_sets_the_state_and_is_not_in_the_output(model):
    # The state after the prime differs ...
    assert not np.allclose(next_probs(model, "hhgg \nfeab"), next_probs(model, "ab"), atol=1e-3)
    base = model.sample(100, prime="ab", seed=3)
    warm = model.sample(100, prime="ab", seed=3, warmup="hhgg \nfe")
    assert len(warm) == 2 + 100 and warm != base and warm.startswith("ab")
    # The warm-up is context before the prime, not text of the sample.
    assert "hhgg \nfe" + warm == model.sample(100, prime="hhgg \nfeab", seed=3)
    rows = model.sample(30, prime="ab", seed=3, warmup="hhgg", num_samples=3)
    assert ["hhgg" + r for r in rows] == model.sample(30, prime="hhggab", seed=3, num_samples=3)


def test_warmup_without_prime_draws_from_the_model(model):
    # No prime: the first character comes from the softmax after the warm-up,
    # not uniformly.
    warm = "ggh"
    p = next_probs(model, warm)
    firsts = model.sample(1, warmup=warm, num_samples=3000, seed=7)
    ids = model.vocab.encode("".join(firsts))
    assert chi2(np.bincount(ids, minlength=len(p)), p) < CHI2_999[9]
    assert model.sample(50, warmup=warm, seed=7) != model.sample(50, seed=7)


def test_warmup_with_unknown_characters(model):
    with pytest.raises(ValueError, match=r"warmup.*'z'.*vocabulary"):
        model.sample(5, warmup="abz")
    with pytest.raises(ValueError, match="warmup"):
        model.generate(5, prime="a", warmup="Q")


# ------------------------------------------------------------------ streaming

@pytest.mark.parametrize("kwargs", [
    {},
    {"prime": PRIME},
    {"prime": PRIME, "temperature": 0},
    {"prime": "h", "temperature": 0.7, "top_k": 3},
    {"prime": PRIME, "top_p": 0.85},
    {"prime": PRIME, "stop": "e"},
    {"prime": PRIME, "stop": " a"},
    {"warmup": "hgfe", "prime": "d", "temperature": 1.3, "top_k": 6, "top_p": 0.9, "stop": "h"},
    {"warmup": "abc"},
])
def test_generate_joined_equals_sample(model, kwargs):
    for seed in (0, 1, 2):
        chars = list(model.generate(120, seed=seed, **kwargs))
        assert all(isinstance(c, str) and len(c) == 1 for c in chars)
        assert "".join(chars) == model.sample(120, seed=seed, **kwargs)


def test_generate_is_a_lazy_iterator(model, monkeypatch):
    core = CountingCore(model.backend.core)
    monkeypatch.setattr(model.backend, "core", core)
    it = model.generate(1000, prime=PRIME, seed=0)
    assert iter(it) is it and core.calls == [] and core.loops == []
    # The prime's characters come first, before the model runs.
    assert "".join(next(it) for _ in PRIME) == PRIME and core.calls == []
    first = next(it)
    assert core.calls == [(1, len(PRIME))] and core.loops == [(1, 1, 1)]
    first += "".join(next(it) for _ in range(2))
    assert core.loops == [(1, 1, 1), (1, 2, 2)]  # nothing made ahead of what was asked
    assert PRIME + first == model.sample(3, prime=PRIME, seed=0)
    assert "".join(model.generate(0, prime=PRIME)) == PRIME


# ------------------------------------------------------------ bad arguments

@pytest.mark.parametrize("kwargs,exc,name", [
    ({"top_p": 0}, ValueError, "top_p"),
    ({"top_p": 0.0}, ValueError, "top_p"),
    ({"top_p": -0.2}, ValueError, "top_p"),
    ({"top_p": 1.0000001}, ValueError, "top_p"),
    ({"top_p": math.nan}, ValueError, "top_p"),
    ({"top_p": math.inf}, ValueError, "top_p"),
    ({"top_p": "0.9"}, TypeError, "top_p"),
    ({"top_p": True}, TypeError, "top_p"),
    ({"top_p": [0.5]}, TypeError, "top_p"),
    ({"num_samples": 0}, ValueError, "num_samples"),
    ({"num_samples": -3}, ValueError, "num_samples"),
    ({"num_samples": 2.0}, TypeError, "num_samples"),
    ({"num_samples": True}, TypeError, "num_samples"),
    ({"num_samples": "2"}, TypeError, "num_samples"),
    ({"stop": 5}, TypeError, "stop"),
    ({"stop": ["a"]}, TypeError, "stop"),
    ({"stop": b"a"}, TypeError, "stop"),
    ({"stop": ""}, ValueError, "stop"),
    ({"stop": "aZ"}, ValueError, "stop"),
    ({"warmup": 5}, TypeError, "warmup"),
    ({"warmup": None}, TypeError, "warmup"),
    ({"warmup": "xyz"}, ValueError, "warmup"),
    ({"prime": 3}, TypeError, "prime"),
    ({"temperature": -1.0}, ValueError, "temperature"),
    ({"top_k": 0}, ValueError, "top_k"),
    ({"length": -1}, ValueError, "length"),
])
def test_sample_bad_arguments(model, kwargs, exc, name):
    args = {"length": 5, "prime": "ab"}
    args.update(kwargs)
    with pytest.raises(exc, match=name):
        model.sample(**args)
    if "num_samples" not in kwargs:
        # generate checks at the call, before any character is asked for.
        with pytest.raises(exc, match=name):
            model.generate(**args)
        with pytest.raises(exc, match=name):
            model.sample(num_samples=3, **args)


@pytest.mark.parametrize("kwargs,exc,name", [
    ({"top_p": 0}, ValueError, "top_p"),
    ({"top_p": 1.5}, ValueError, "top_p"),
    ({"top_p": "x"}, TypeError, "top_p"),
    ({"num_samples": 0}, ValueError, "num_samples"),
    ({"num_samples": 1.0}, TypeError, "num_samples"),
    ({"num_samples": np.int64(-1)}, ValueError, "num_samples"),
])
def test_sample_ids_bad_arguments(model, kwargs, exc, name):
    with pytest.raises(exc, match=name):
        model.sample_ids(5, **kwargs)


def test_new_arguments_are_keyword_only(model):
    with pytest.raises(TypeError):
        model.sample(5, "ab", 1.0, None, 0, 0.9)
    with pytest.raises(TypeError):
        model.sample_ids(5, None, 1.0, None, 0, 0.9)


def test_numpy_scalars_accepted(model):
    a = model.sample(20, prime="ab", seed=0, top_p=np.float32(0.9), num_samples=np.int64(2))
    assert a == model.sample(20, prime="ab", seed=0, top_p=float(np.float32(0.9)),
                             num_samples=2)


def test_text_options_need_a_vocab():
    m = pc.CharRNN(6, hidden_size=8, cell="rnn", seed=0)
    with pytest.raises(ValueError, match="Vocab"):
        m.generate(5)
    with pytest.raises(ValueError, match="Vocab"):
        m.sample(5, num_samples=2)
    assert m.sample_ids(5, seed=0, top_p=0.9, num_samples=2).shape == (2, 5)
