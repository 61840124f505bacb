"""The sampling loop in C++ against the NumPy reference (tests/
sampling_reference.py), its counter-based random numbers (the same text at
any thread count, on every instruction set, however it is split over
calls), the GIL, and beam search against exhaustive search."""

import itertools
import threading
import time

import numpy as np
import pytest

import pycharrnn as pc
from pycharrnn import _core
from pycharrnn.sampling import _Run

import sampling_reference as ref

CHARS = "abcdefgh \n"


def sharp(model):
    """Stronger recurrent weights and a sharper decoder: distributions far
    from uniform, so top-k and top-p cut real subsets."""
    for name, view in model.params.items():
        if name.startswith("rnn.weight"):
            view[...] *= 3.0
    model.params["decoder.weight"][...] *= 10.0
    return model


@pytest.fixture(scope="module", params=["rnn", "gru", "lstm"])
def model(request):
    return sharp(pc.CharRNN(pc.Vocab.from_text(CHARS), hidden_size=16, num_layers=2,
                            cell=request.param, embedding_dim=5, dtype="float64", seed=4))


OPTIONS = [
    dict(),
    dict(temperature=0.7, top_k=3),
    dict(temperature=1.3, top_p=0.8),
    dict(temperature=0.9, top_k=6, top_p=0.6),
    dict(temperature=0),
    dict(top_k=1),
    dict(top_p=1e-9),
]


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("prime", ["", "abc"])
def test_loop_equals_the_numpy_reference(model, options, prime):
    context = list(model.vocab.encode(prime))
    for seed in (0, 2**64 - 1):
        want = ref.sample_ids(model, 40, context, seed=seed, rows=3, **options)
        got = model.sample_ids(40, context, seed=seed, num_samples=3, **options)
        assert got.tolist() == want
        # Row 0 is the single sample, and the text with the same arguments.
        assert model.sample_ids(40, context, seed=seed, **options).tolist() == want[0]
        # The text without a prime begins after a newline the model reads first.
        text_context = context or list(model.vocab.encode("\n")) * ("\n" in model.vocab)
        text = ref.sample_ids(model, 40, text_context, seed=seed, rows=1, **options)[0]
        assert model.sample(40, prime, seed=seed, **options) == prime + model.vocab.decode(
            np.array(text, np.int32))


@pytest.mark.parametrize("stop", ["a", "h ", "\n\n"])
def test_stop_equals_the_numpy_reference(model, stop):
    stop_ids = list(model.vocab.encode(stop))
    want = ref.sample_ids(model, 80, list(model.vocab.encode("bc")), seed=5, rows=4,
                          stop=stop_ids)
    got = model.sample(80, "bc", seed=5, num_samples=4, stop=stop)
    assert got == ["bc" + model.vocab.decode(np.array(w, np.int32)) for w in want]
    assert "".join(model.generate(80, "bc", seed=5, stop=stop)) == got[0]


def test_float32_loop_equals_the_reference_on_its_own_logits():
    m = sharp(pc.CharRNN(pc.Vocab.from_text(CHARS), hidden_size=24, cell="lstm", seed=1))
    want = ref.sample_ids(m, 200, [3, 4, 5], temperature=0.8, top_p=0.95, seed=9, rows=2)
    assert m.sample_ids(200, [3, 4, 5], 0.8, seed=9, top_p=0.95,
                        num_samples=2).tolist() == want


@pytest.mark.parametrize("rows", [1, 3, 4, 5])
@pytest.mark.parametrize("E", [None, 6])
@pytest.mark.parametrize("threads", [1, 2])
def test_the_loop_state_and_logits_are_the_models(model, rows, E, threads):
    # The step of the loop (one parallel region for B <= 4, the general
    # forward beyond) against model.forward over the whole generated text.
    m = pc.CharRNN(pc.Vocab.from_text(CHARS), hidden_size=40, num_layers=3, cell=model.cell,
                   embedding_dim=E, dtype="float64", seed=5)
    before = pc.get_num_threads()
    pc.set_num_threads(threads)
    try:
        run = _Run(m, rows, np.array([[1, 2, 3]], np.int32), 1.0, None, None, 8, None)
        ids = run.take(17, last=False)
    finally:
        pc.set_num_threads(before)
    seq = np.concatenate([np.tile([[1, 2, 3]], (rows, 1)), ids], axis=1).astype(np.int32)
    logits, state = m.forward(seq)
    assert np.allclose(run.logits, logits[:, -1], rtol=1e-12, atol=1e-12)
    assert np.allclose(run.state, m.pack_state(state, rows), rtol=1e-12, atol=1e-12)


def test_any_split_over_calls_gives_the_same_ids(model):
    whole = model.sample_ids(100, [1, 2, 3], seed=3, num_samples=2, top_k=5)
    rng = np.random.default_rng(0)
    for _ in range(5):
        run = _Run(model, 2, np.array([[1, 2, 3]], np.int32), 1.0, 5, None, 3, None)
        pieces, done = [], 0
        while done < 100:
            k = int(min(100 - done, rng.integers(1, 30)))
            pieces.append(run.take(k, last=done + k == 100))
            done += k
        assert np.array_equal(np.concatenate(pieces, axis=1), whole)


def test_long_samples_are_made_in_pieces_with_the_same_text(model, monkeypatch):
    from pycharrnn import sampling

    want = model.sample(100, "ab", seed=4, num_samples=3)
    want_stop = model.sample(100, "ab", seed=4, num_samples=3, stop="a")
    want_ids = model.sample_ids(100, [1], seed=4)
    monkeypatch.setattr(sampling, "SAMPLE_CHUNK", 7)
    assert model.sample(100, "ab", seed=4, num_samples=3) == want
    assert model.sample(100, "ab", seed=4, num_samples=3, stop="a") == want_stop
    assert np.array_equal(model.sample_ids(100, [1], seed=4), want_ids)


def test_rows_do_not_depend_on_the_batch(model):
    eight = model.sample_ids(50, [0, 1], seed=7, num_samples=8)
    three = model.sample_ids(50, [0, 1], seed=7, num_samples=3)
    assert np.array_equal(eight[:3], three)
    assert len({tuple(r) for r in eight}) == 8


def test_same_text_at_any_thread_count():
    m = sharp(pc.CharRNN(pc.Vocab.from_text(CHARS), hidden_size=200, num_layers=2, cell="gru",
                         embedding_dim=16, seed=2))
    before = pc.get_num_threads()
    try:
        texts = []
        for n in (1, 2, 3):
            pc.set_num_threads(n)
            texts.append(m.sample(300, "ab", seed=11, num_samples=3))
        assert texts[0] == texts[1] == texts[2]
    finally:
        pc.set_num_threads(before)


def test_same_text_on_every_instruction_set():
    # The kernels of each instruction set round differently in the last
    # bit; the draw (in double, compiled once) turns the same random number
    # into the same character unless it falls within that rounding of a
    # boundary of the cumulative distribution.
    m = sharp(pc.CharRNN(pc.Vocab.from_text(CHARS), hidden_size=96, num_layers=2,
                         cell="lstm", embedding_dim=8, seed=3))
    active = _core.isa()
    try:
        texts = {}
        for isa in _core.isa_available():
            _core.set_isa(isa)
            texts[isa] = m.sample(1000, "abc", seed=12, top_p=0.97)
    finally:
        _core.set_isa(active)
    assert len(set(texts.values())) == 1, texts.keys()


def test_draw_edge_cases_follow_the_reference():
    # A decoder with zero weights: every step's logits are its bias, so the
    # draw sees exactly the values set here (huge, tiny, tied, non-finite).
    V = 7
    m = pc.CharRNN(V, hidden_size=3, cell="rnn", dtype="float64", seed=0)
    m.params["decoder.weight"][...] = 0
    rng = np.random.default_rng(1)
    rows = [np.zeros(V), np.array([1, 1, 1, 0, 0, 0, 1.0]), rng.standard_normal(V) * 1e30,
            rng.standard_normal(V) * 1e-30, np.array([0, 0, 800, 800, -800, 0, 0.0])]
    for row in rows:
        m.params["decoder.bias"][...] = row
        for temperature in (1.0, 0.3, 1e-300, 1e-30, 0.0, 50.0):
            for top_k, top_p in ((None, None), (2, None), (None, 0.5), (3, 0.99)):
                got = m.sample_ids(30, [0], temperature, top_k, seed=4, top_p=top_p)
                for i, g in enumerate(got):
                    u = float(ref.hash_uniform(4, 0, np.array([i]))[0])
                    assert g == ref.draw(row, temperature, top_k, top_p, u), \
                        (row, temperature, top_k, top_p, i)
    for bad in (np.nan, np.inf, -np.inf):
        m.params["decoder.bias"][...] = 0
        m.params["decoder.bias"][2] = bad
        for temperature in (1.0, 0.0):
            with pytest.raises(ValueError, match="NaN or infinite"):
                m.sample_ids(3, [0], temperature, seed=0)


def test_the_loop_releases_the_gil():
    m = pc.CharRNN(pc.Vocab.from_text(CHARS), hidden_size=256, num_layers=2, cell="lstm",
                   seed=0)
    t0 = time.perf_counter()
    m.sample_ids(200, [1], seed=0)
    n = int(200 * max(0.3, 0.3) / max(time.perf_counter() - t0, 1e-4))
    done = threading.Event()
    worker = threading.Thread(target=lambda: (m.sample_ids(n, [1], seed=0), done.set()))
    ticks = 0
    worker.start()
    while not done.is_set():
        ticks += 1  # runs only while the sampling thread does not hold the GIL
        time.sleep(0)
    worker.join()
    assert ticks > 50


def test_sampling_arguments_are_checked_in_cxx_too():
    m = pc.CharRNN(5, hidden_size=8, cell="gru", seed=0)
    run = _Run(m, 2, None, 1.0, None, None, 0, None)
    with pytest.raises(ValueError, match="state must have shape"):
        m.backend.core.sample(m.flat_params, run.state, run.logits, np.empty((3, 4), np.int32),
                       live=run.live)
    with pytest.raises(ValueError, match="top_p"):
        m.backend.core.sample(m.flat_params, run.state, run.logits, np.empty((2, 4), np.int32),
                       live=run.live, top_p=0.0)
    with pytest.raises(ValueError, match="stop"):
        m.backend.core.sample(m.flat_params, run.state, run.logits, np.empty((2, 4), np.int32),
                       live=run.live, stop=np.array([7], np.int32),
                       window=np.zeros((2, 1), np.int32))
    with pytest.raises(ValueError, match="share memory"):
        m.backend.core.sample(m.flat_params, run.state, run.state.reshape(-1)[:10].reshape(2, 5),
                       np.empty((2, 4), np.int32), live=run.live)
    with pytest.raises(ValueError, match="seed"):
        m.sample_ids(3, seed=2**64)


# ----------------------------------------------------------------- beam search

@pytest.fixture(scope="module", params=["gru", "lstm"])
def tiny(request):
    # Three symbols, so that every continuation can be enumerated.
    m = pc.CharRNN(pc.Vocab.from_text("ab\n"), hidden_size=8, cell=request.param,
                   dtype="float64", seed=7)
    for name, view in m.params.items():
        if name.startswith("rnn.weight"):
            view[...] *= 2.5
    m.params["decoder.weight"][...] *= 4.0
    return m


@pytest.mark.parametrize("prime", ["", "a", "ba\n"])
def test_beam_search_finds_the_exhaustive_best(tiny, prime):
    length = 5
    # Without a prime the model reads a newline first, as in sampling.
    context = list(tiny.vocab.encode(prime or "\n"))
    want, score = ref.brute_force(tiny, context, length)
    found = tiny.beam_search(prime, length, beam_width=3 ** (length - 1))
    assert tuple(found.ids) == want and isinstance(found, str)
    assert found == prime + tiny.vocab.decode(np.array(want, np.int32))
    assert found.score == pytest.approx(score, rel=1e-12, abs=1e-12)
    assert found.log_prob == found.score
    # Narrower beams never beat it, and their own scores are their texts'.
    for k in (1, 2, 4):
        narrow = tiny.beam_search(prime, length, beam_width=k)
        assert narrow.score <= score + 1e-12
        assert narrow.log_prob == pytest.approx(ref.log_prob(tiny, context, list(narrow.ids)),
                                                rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.7, 2.0])
@pytest.mark.parametrize("stop", ["\n", "ab"])
def test_beam_search_with_stop_and_length_penalty(tiny, stop, alpha):
    length = 5
    want, score = ref.brute_force(tiny, [0], length, stop=list(tiny.vocab.encode(stop)),
                                  length_penalty=alpha)
    found = tiny.beam_search("\n", length, beam_width=3 ** length, stop=stop,
                             length_penalty=alpha)
    assert tuple(found.ids) == want
    assert found.score == pytest.approx(score, rel=1e-12, abs=1e-12)
    assert found.log_prob == pytest.approx(ref.log_prob(tiny, [0], list(want)), rel=1e-12,
                                           abs=1e-12)


@pytest.mark.parametrize("no_repeat, penalty, size, stop", [
    (2, 1.0, 1, None), (3, 1.0, 1, None), (1, 1.0, 1, None), (0, 1.7, 2, None),
    (0, 3.0, 1, None), (3, 1.5, 2, None), (2, 1.0, 1, "\n"), (0, 2.0, 3, "b\n"),
])
def test_beam_search_with_repetition_control_finds_the_exhaustive_best(tiny, no_repeat,
                                                                       penalty, size, stop):
    length, prime = 5, "ab"
    context = list(tiny.vocab.encode(prime))
    want, score = ref.brute_force(tiny, context, length,
                                  stop=None if stop is None else list(tiny.vocab.encode(stop)),
                                  no_repeat=no_repeat, penalty=penalty, penalty_size=size)
    found = tiny.beam_search(prime, length, beam_width=3 ** length, stop=stop,
                             no_repeat_ngram_size=no_repeat, repetition_penalty=penalty,
                             penalty_ngram_size=size)
    assert tuple(found.ids) == want
    assert found.score == pytest.approx(score, rel=1e-12, abs=1e-12)
    # The penalty ranks; the log-probability stays the model's own.
    assert found.log_prob == pytest.approx(ref.log_prob(tiny, context, list(want)),
                                           rel=1e-12, abs=1e-12)
    seq = context + list(want)
    if no_repeat:
        grams = [tuple(seq[i:i + no_repeat]) for i in range(len(seq) - no_repeat + 1)]
        assert len(set(grams)) == len(grams)


def test_the_repetition_cases_change_the_plain_answer(tiny):
    changed = 0
    for no_repeat, penalty, size in ((2, 1.0, 1), (3, 1.0, 1), (0, 1.7, 2), (0, 3.0, 1)):
        plain = tiny.beam_search("ab", 5, beam_width=3 ** 5)
        ruled = tiny.beam_search("ab", 5, beam_width=3 ** 5, no_repeat_ngram_size=no_repeat,
                                 repetition_penalty=penalty, penalty_ngram_size=size)
        changed += tuple(plain.ids) != tuple(ruled.ids)
    assert changed >= 2


def test_a_stop_reached_beats_a_likelier_text_that_did_not_reach_it(tiny):
    # Beam search used to return a live hypothesis that never reached the stop
    # whenever it scored above every one that did.
    plain, plain_score = ref.brute_force(tiny, [0], 4)
    cases = 0
    for stop in ("".join(s) for n in (2, 3) for s in itertools.product("ab\n", repeat=n)):
        if stop in tiny.vocab.decode(np.array(plain, np.int32)):
            continue
        want, _ = ref.brute_force(tiny, [0], 4, stop=list(tiny.vocab.encode(stop)))
        found = tiny.beam_search("\n", 4, beam_width=3 ** 4, stop=stop)
        assert tuple(found.ids) == want and found.stopped and found.endswith(stop)
        cases += found.score < plain_score  # less likely than `plain`, yet it wins
    assert cases >= 3
    never = tiny.beam_search("\n", 1, beam_width=9, stop="bb")
    assert not never.stopped and len(never.ids) == 1


def test_beam_width_one_is_greedy(model):
    for prime in ("a", "hg", "abc\n"):
        greedy = model.sample(60, prime, temperature=0)
        assert model.beam_search(prime, 60, beam_width=1) == greedy


def test_beam_search_on_a_trained_model_beats_greedy():
    text = "the cat sat on the mat. the dog sat on the log. " * 40
    m = pc.CharRNN(pc.Vocab.from_text(text), hidden_size=32, cell="gru", seed=0)
    tr = pc.Trainer(m, text, batch_size=4, seq_length=24,
                    optimizer=pc.optim.Adam(m, lr=1e-2), val_fraction=0.0)
    tr.run(steps=150)
    greedy = m.beam_search("the ", 30, beam_width=1)
    wide = m.beam_search("the ", 30, beam_width=8)
    assert wide.log_prob >= greedy.log_prob - 1e-4
    assert set(wide) <= set(text)
    # Its text repeats every 48 characters; a long beam copies it, and the
    # repetition control keeps every 12-gram of prime + text new.
    loop = m.beam_search("the ", 150, beam_width=4)
    assert len({loop[i:i + 12] for i in range(len(loop) - 11)}) < len(loop) - 11
    fresh = m.beam_search("the ", 150, beam_width=4, no_repeat_ngram_size=12)
    assert len({fresh[i:i + 12] for i in range(len(fresh) - 11)}) == len(fresh) - 11


def test_beam_search_arguments():
    m = pc.CharRNN(pc.Vocab.from_text("ab\n"), hidden_size=4, cell="gru", seed=0)
    assert m.beam_search("a", 0) == "a" and m.beam_search("a", 0).log_prob == 0.0
    with pytest.raises(ValueError, match="beam_width"):
        m.beam_search("a", 5, beam_width=0)
    with pytest.raises(ValueError, match="prime.*'z'"):
        m.beam_search("az", 5)
    with pytest.raises(TypeError, match="length_penalty"):
        m.beam_search("a", 5, length_penalty=float("nan"))
    for bad in (dict(no_repeat_ngram_size=-1), dict(repetition_penalty=0.0),
                dict(penalty_ngram_size=0), dict(repetition_penalty=float("inf"))):
        with pytest.raises((ValueError, TypeError), match=next(iter(bad))):
            m.beam_search("a", 5, **bad)
    ids_only = pc.CharRNN(3, hidden_size=4, cell="gru", seed=0)
    found = ids_only.beam_search([0, 1], 4, beam_width=2, stop=[2])
    assert found.ids.dtype == np.int32 and found == ""
