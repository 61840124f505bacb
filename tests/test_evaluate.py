"""Validation loss: evaluate() must equal one pass over the text with the state
carried (each loop below is that pass, written out plainly)."""

import math
import time

import numpy as np
import pytest

import pycharrnn as pc
from pycharrnn.evaluation import EVAL_WARMUP, evaluate, warmup_for
from conftest import DATA


def one_pass(model, ids, T=50):
    """The mean loss of one stream over ids, in chunks of T, state carried."""
    state, total = None, 0.0
    for p in range(0, ids.size - 1, T):
        chunk = np.asarray(ids[p:p + T + 1], dtype=np.int32)
        loss, state = model.loss(chunk[:-1], chunk[1:], state)
        total += loss * (chunk.size - 1)
    return total / (ids.size - 1)


def cold_streams(model, ids, B, T):
    """What evaluate() did before: B streams, each starting from zeros."""
    n = (ids.size - 1) // B
    state, total = None, 0.0
    for p in range(0, n, T):
        t = min(T, n - p)
        c = ids[(np.arange(B) * n)[:, None] + p + np.arange(t + 1)[None, :]]
        loss, state = model.loss(c[:, :-1], c[:, 1:], state)
        total += loss * B * t
    return total / (B * n)


@pytest.mark.skipif(not (DATA / "tinyshakespeare.txt").is_file(), reason="no ../shared/data")
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_trained_model_matches_one_pass(cell):
    text = (DATA / "tinyshakespeare.txt").read_text(encoding="utf-8")[:240_000]
    vocab = pc.Vocab.from_text(text)
    m = pc.CharRNN(vocab, hidden_size=64, cell=cell, seed=1)
    tr = pc.Trainer(m, text, batch_size=16, seq_length=48, val_fraction=0.2,
                    optimizer=pc.optim.Adam(m, lr=3e-3, clip_value=5.0))
    tr.run(steps=250, validate_at_end=False)
    want = one_pass(m, tr.val_ids)
    assert want < 2.6  # it learned something
    got = tr.evaluate()
    assert abs(got - want) < 0.01
    assert abs(got - want) < 1e-4  # float32 rounding, in fact
    assert tr.evaluate(text=text[-48_000:]) == got  # the same tail, given as text


def test_long_memory_is_read_again_from_the_true_state():
    # A ReLU RNN whose W_hh is the identity forgets nothing: no warm-up can
    # stand in for the text before a part, so the parts are read again.
    V, H = 5, 4
    m = pc.CharRNN(V, hidden_size=H, cell="rnn", nonlinearity="relu", dtype="float64", seed=2)
    p = m.params
    p["rnn.weight_hh_l0"][...] = np.eye(H)
    p["rnn.bias_hh_l0"][...] = 0
    p["rnn.bias_ih_l0"][...] = 0
    p["rnn.weight_ih_l0"][...] = np.abs(p["rnn.weight_ih_l0"]) * 0.05
    ids = np.random.default_rng(3).integers(0, V, 3001).astype(np.int32)
    want = one_pass(m, ids, T=64)
    assert abs(cold_streams(m, ids, 8, 16) - want) > 0.05  # the shortcut is far off
    got = evaluate(m, ids, streams=8, seq_length=16, warmup=32)
    assert math.isclose(got, want, rel_tol=1e-12)


def test_long_parts_get_a_longer_warm_up_and_are_read_once():
    # A state that forgets slowly (0.95 a step): 256 characters of warm-up
    # leave it 2e-6 from the true start, over float64's tolerance, and every
    # part is read again; an eighth of a 6,500-character part leaves 1e-18.
    V, H = 5, 4
    m = pc.CharRNN(V, hidden_size=H, cell="rnn", nonlinearity="relu", dtype="float64", seed=2)
    p = m.params
    p["rnn.weight_hh_l0"][...] = 0.95 * np.eye(H)
    p["rnn.bias_hh_l0"][...] = 0
    p["rnn.bias_ih_l0"][...] = 0
    p["rnn.weight_ih_l0"][...] = np.abs(p["rnn.weight_ih_l0"]) * 0.05  # linear: it decays at 0.95
    ids = np.random.default_rng(5).integers(0, V, 26_001).astype(np.int32)
    assert warmup_for(26_000, 4) == 6_500 // 8

    def read(**kw):
        seen = []
        loss = evaluate(m, ids, streams=4, seq_length=64,
                        progress=lambda done, total: seen.append(total), **kw)
        return loss, seen[-1]

    want = one_pass(m, ids, T=64)
    loss, reads = read()
    assert reads == 26_000 and math.isclose(loss, want, rel_tol=1e-10)
    loss, reads = read(warmup=EVAL_WARMUP)
    assert reads == 26_000 + 3 * 6_500 and math.isclose(loss, want, rel_tol=1e-10)


def test_the_warm_up_is_an_eighth_of_a_part_within_its_bounds():
    assert warmup_for(1_000, 32) == EVAL_WARMUP  # short parts: as before
    assert warmup_for(100_000, 32) == 3_125 // 8
    assert warmup_for(498_693, 32) == 15_584 // 8
    assert warmup_for(10**8, 32) == 8 * EVAL_WARMUP
    assert warmup_for(1, 32) == EVAL_WARMUP


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("n_ids,streams,T,W", [(1000, 7, 13, 10), (37, 4, 5, 0), (2, 3, 8, 4),
                                               (600, 32, 64, 256), (101, 3, 100, 20)])
def test_every_prediction_counted_once(cell, n_ids, streams, T, W):
    # Random weights and float64: every split of the text gives the one-pass
    # number to rounding, whatever is left over after the parts.
    m = pc.CharRNN(11, hidden_size=6, num_layers=2, cell=cell, embedding_dim=3,
                   dtype="float64", seed=4)
    ids = np.random.default_rng(n_ids).integers(0, 11, n_ids).astype(np.uint8)
    want = one_pass(m, ids, T=7)
    assert math.isclose(evaluate(m, ids, streams, T, W), want, rel_tol=1e-10)


def test_trainer_evaluate_arguments():
    text = "abcabcabd " * 30
    m = pc.CharRNN(pc.Vocab.from_text(text), hidden_size=8, cell="gru", seed=0)
    tr = pc.Trainer(m, text, batch_size=2, seq_length=8)
    assert math.isclose(tr.evaluate(text="abcab"), one_pass(m, m.vocab.encode("abcab")),
                        rel_tol=1e-6)
    with pytest.raises(ValueError, match="'z'.*position 3"):
        tr.evaluate(text="abcz")
    with pytest.raises(ValueError, match="at least 2"):
        tr.evaluate(text="a")
    with pytest.raises(ValueError, match="not both"):
        tr.evaluate(tr.val_ids, text="abc")
    with pytest.raises(TypeError):
        tr.evaluate(text=b"abc")


def test_progress_reaches_every_prediction():
    text = ("the cat sat on the mat; " * 400)
    model = pc.CharRNN(pc.Vocab.from_text(text), hidden_size=16, cell="gru", seed=3)
    ids = model.vocab.encode(text)
    seen = []
    loss = evaluate(model, ids, progress=lambda done, total: seen.append((done, total)))
    assert loss == evaluate(model, ids)  # the same result with or without
    assert seen[-1] == (ids.size - 1, ids.size - 1)
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:])) and len(seen) > 3


def test_the_bar_shows_after_its_delay_only(capsys):
    from pycharrnn.progress import Bar
    pytest.importorskip("tqdm")
    with Bar("evaluating", delay=60) as bar:
        bar(5, 10)
    assert capsys.readouterr().err == ""
    with Bar("evaluating", delay=0) as bar:
        bar(5, 10)
        bar(10, 10)
    assert "evaluating" in capsys.readouterr().err


def test_the_trainers_validation_shows_its_progress(monkeypatch, capsys):
    # A long validation said nothing: the bar (or the log) stood still.
    from pycharrnn import progress as prog

    text = "the cat sat on the mat; " * 800
    model = pc.CharRNN(pc.Vocab.from_text(text), hidden_size=8, cell="gru", seed=3)
    clock = iter(range(0, 10**6, 3))  # every reading of the clock 3 s after the last
    monkeypatch.setattr(prog.time, "perf_counter", lambda: float(next(clock)))
    shown = prog.Progress(bar=False, sample_every=0, sample_length=0)
    tr = pc.Trainer(model, text, batch_size=4, seq_length=16, val_fraction=0.5,
                    progress=shown)
    calls = []
    monkeypatch.setattr(shown, "validating", lambda d, t: (calls.append((d, t)),
                                                           prog.Progress.validating(shown, d, t)))
    tr.run(steps=1)
    val = tr.val_ids.size - 1
    assert calls and calls[-1] == (val, val)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("validating")]
    assert lines and "% (" in lines[0] and f"of {val:,} characters" in lines[0]

    class FakeBar:
        labels: list = []

        def set_description_str(self, text, refresh=True):
            self.labels.append(text)

    shown.bar = FakeBar()
    shown.validating(10, 100)
    shown.validating(50, 100)
    shown.validating(100, 100)
    assert FakeBar.labels[-1] == "training" and any(s.startswith("validating") for s in
                                                    FakeBar.labels)


def test_a_budgets_bar_follows_the_clock_through_validation_to_its_end(capsys):
    # The bar stood at the last step's time while the last validation ran
    # (its ETA frozen, "84% | 00:59 of 01:00, ETA 00:10" when the run ended)
    # and read "validating 7%: :" after its label changed.
    pytest.importorskip("tqdm")
    from pycharrnn import progress as prog

    shown = prog.Progress(bar=True, sample_every=0, sample_length=0)
    shown.seconds, shown.t0 = 20.0, time.perf_counter() - 5.0
    bar = shown.bar = shown._make_bar(None)
    shown.validating(0, 100)
    shown.val_shown -= 1.0  # the last label is old enough to change
    shown.validating(10, 100)
    assert 5.0 <= bar.n < 6.0
    shown.t0 -= 14.0  # the run ends 19 s in
    shown.close()
    assert 19.0 <= bar.n < 20.0
    err = capsys.readouterr().err
    assert "validating 10%: " in err and ": :" not in err, err


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_window_loss_is_nanogpts_estimate_against_the_reference(cell, rng):
    # Every window read from zeros, every position counted: the NumPy
    # reference, window by window, with the starts drawn the same way.
    from pycharrnn import reference as ref
    from pycharrnn.evaluation import window_loss

    V, H, L, block, windows = 6, 5, 2, 9, 13
    params = ref.init_params(rng, V, H, L, cell, 3)
    model = pc.CharRNN(V, hidden_size=H, num_layers=L, cell=cell, embedding_dim=3,
                       dtype="float64")
    model.load_state_dict(params)
    ids = rng.integers(0, V, 200)
    starts = np.random.default_rng(4).integers(0, ids.size - block, windows)
    zero = np.zeros((L, 1, H))
    expect = np.mean([ref.loss_only(params, ids[None, s:s + block], ids[None, s + 1:s + block + 1],
                                    (zero, zero) if cell == "lstm" else zero, cell)
                      for s in starts])
    got = window_loss(model, ids, block=block, windows=windows, seed=4, batch=5)
    assert abs(got - expect) <= 1e-12 * expect
    with pytest.raises(ValueError, match="block \\+ 1 = 201"):
        window_loss(model, ids, block=200)
