"""Over- and underfitting, said while a run goes and in its summary
(pycharrnn.fit, pycharrnn.progress.Progress)."""

from __future__ import annotations

import math

import numpy as np

import pycharrnn as pc
from pycharrnn.fit import DROPOUT_GAP, GAP, GROWTH, WIDE, Fit, advice, diagnose
from pycharrnn.progress import Progress


def points(vals, trains, every=100, epochs=None):
    """Validation points, one per epoch unless ``epochs`` gives them."""
    epochs = epochs or range(1, len(vals) + 1)
    return [{"step": every * (i + 1), "val_loss": v, "train_loss": t, "epoch": e}
            for i, (v, t, e) in enumerate(zip(vals, trains, epochs))]


def test_a_validation_loss_that_rose_from_its_best_is_overfitting():
    fit = diagnose(points([2.0, 1.6, 1.5, 1.52, 1.55], [2.1, 1.6, 1.4, 1.3, 1.2]))
    assert fit.kind == "overfitting" and "risen from its best 1.500" in fit.why
    # One point above the best is noise, not yet a rise.
    assert diagnose(points([2.0, 1.6, 1.5, 1.49, 1.52], [2.1, 1.6, 1.45, 1.44, 1.43])).kind == ""


def test_a_rise_that_is_not_overfitting_is_not_called_so():
    vals, trains = [2.0, 1.6, 1.5, 1.52, 1.55], [2.1, 1.6, 1.4, 1.3, 1.2]
    # Within the first epoch: the model has not read a character twice.
    early = points(vals, trains, epochs=[0.1, 0.2, 0.3, 0.4, 0.5])
    assert diagnose(early).kind == ""
    # A spike (the training loss rose with it): the optimizer's, not a fit.
    spike = points([2.0, 1.6, 1.5, 11.7, 1.55], [2.1, 1.6, 1.4, 9.0, 1.45])
    assert diagnose(spike).kind == ""
    # The same gap growth as in the next test, all within the first epoch.
    assert diagnose(points([2.0, 1.7, 1.6, 1.58], [2.0, 1.65, 1.5, 1.3],
                           epochs=[0.2, 0.4, 0.6, 0.8])).kind == ""


def test_a_gap_that_grew_is_overfitting_and_a_gap_from_the_start_is_not():
    growing = points([2.0, 1.7, 1.6, 1.58], [2.0, 1.65, 1.5, 1.58 - GAP - 0.05])
    fit = diagnose(growing)  # the gap grew from 0 (at the first epoch) to GAP + 0.05
    assert fit.kind == "overfitting" and fit.gap > GAP and not fit.risen
    assert "fits its training text ever better" in fit.why
    # The note says where validation stands, so that a growing gap does not
    # read as a run that has stopped improving.
    assert fit.why.endswith("; validation is still falling")
    past = diagnose(points([2.0, 1.7, 1.58, 1.59], [2.0, 1.65, 1.5, 1.59 - GAP - 0.05]))
    assert past.kind == "overfitting" and not past.risen  # one point past the best
    assert past.why.endswith("; validation is 0.010 above its best 1.580")
    # Within ROSE of the best (noise at a validation): said as such.
    near = diagnose(points([2.0, 1.7, 1.58, 1.582], [2.0, 1.65, 1.5, 1.582 - GAP - 0.05]))
    assert near.why.endswith("; validation is within 0.005 of its best 1.580")
    assert GAP + 0.05 >= GROWTH
    # Grown by less than GROWTH: not yet.
    assert diagnose(points([2.0, 1.7, 1.6, 1.58], [1.95, 1.55, 1.5, 1.58 - GAP - 0.05],
                           epochs=[1, 1, 2, 3])).kind == ""
    # The same final gap, there from the start (a validation text unlike the
    # rest): not overfitting while it runs; at the end it is explained.
    constant = points([2.3, 2.0, 1.9, 1.8], [2.0, 1.7, 1.6, 1.5])
    assert diagnose(constant).kind == ""
    end = diagnose(constant, final=True)
    assert end.kind == "apart" and math.isclose(end.gap, 0.3) and "differs" in end.why
    assert end.gap > WIDE
    # One validation only: a wide gap is still said, without a cause.
    one = diagnose(points([1.8], [1.5]), final=True)
    assert one.kind == "apart" and "cannot tell" in one.why


def test_a_level_gap_with_a_falling_loss_at_the_end_is_underfitting():
    falling = points([2.4, 2.2, 2.1, 2.0, 1.9], [2.4, 2.2, 2.1, 2.0, 1.9])
    assert diagnose(falling).kind == ""  # said at the end only
    fit = diagnose(falling, final=True)
    assert fit.kind == "underfitting" and "still fell" in fit.why
    flat = points([2.4, 2.0, 1.9, 1.899, 1.8985], [2.4, 2.0, 1.9, 1.899, 1.8985])
    assert diagnose(flat, final=True).kind == ""


def test_advice_names_one_change():
    over = Fit("overfitting", 0.3, "", risen=True)
    assert advice(over, {"output_dropout": 0.0, "dropout": 0.5, "hidden_size": 256}) == \
        "try more dropout: output_dropout=0.2 (now 0)"
    assert advice(over, {"output_dropout": 0.25, "hidden_size": 256}) == \
        "try more dropout: output_dropout=0.45 (now 0.25)"
    assert "hidden_size=128" in advice(over, {"output_dropout": 0.5, "hidden_size": 256})
    under = Fit("underfitting", 0.0, "")
    flag = {"seconds": "--time", "hidden_size": "--hidden-size"}
    assert advice(under, {"hidden_size": 64}, 60, lambda k, v: f"{flag[k]} {v}") == \
        "try a longer budget: --time 120"
    assert "hidden_size=128" in advice(under, {"hidden_size": 64})
    assert advice(Fit("", 0.0, ""), {"hidden_size": 64}) == ""


def test_a_gap_with_validation_at_its_best_asks_for_time_not_dropout():
    # Only the gap grew: more dropout measured worse there (pycharrnn.fit's
    # docstring), so the advice is a longer run, unless the gap is wider
    # than DROPOUT_GAP.
    growing = points([2.0, 1.7, 1.6, 1.55, 1.50], [1.95, 1.55, 1.4, 1.3, 1.2])
    fit = diagnose(growing, final=True)
    assert fit.kind == "overfitting" and not fit.risen and fit.gap <= DROPOUT_GAP
    flag = {"seconds": "--time", "output_dropout": "--output-dropout"}
    tip = advice(fit, {"output_dropout": 0.3, "hidden_size": 512}, 3600,
                 lambda k, v: f"{flag[k]} {v}")
    assert tip == ("more dropout measured worse in runs whose validation had not risen; "
                   "try a longer budget: --time 7200")
    assert "twice the steps" in advice(fit, {"output_dropout": 0.3, "hidden_size": 512})
    wide = Fit("overfitting", DROPOUT_GAP + 0.01, "")
    assert advice(wide, {"output_dropout": 0.0, "hidden_size": 512}) == \
        "try more dropout: output_dropout=0.2 (now 0)"
    risen = diagnose(points([2.0, 1.6, 1.5, 1.52, 1.55], [2.1, 1.6, 1.4, 1.3, 1.2]), final=True)
    assert risen.risen and advice(risen, {"output_dropout": 0.0, "hidden_size": 64}) == \
        "try more dropout: output_dropout=0.2 (now 0)"


def test_a_run_that_learns_a_small_text_by_heart_says_so(tmp_path, capsys):
    # A model far too big for its text: the progress notes say so at a
    # validation, and the summary names the change to try.
    words = ("the cat sat on a mat while a dog ran far away into the night and was not "
             "seen again by anyone who lived in that old town").split()
    rng = np.random.default_rng(0)
    text = " ".join(words[i] for i in rng.integers(0, len(words), 400))
    model = pc.CharRNN(pc.Vocab.from_text(text), hidden_size=128, cell="gru", seed=0)
    tr = pc.Trainer(model, text, batch_size=4, seq_length=32, val_fraction=0.25,
                    optimizer=pc.optim.Adam(model, lr=1e-2), eval_every=20,
                    progress=Progress(bar=False, sample_every=0, sample_length=0,
                                      log_every=10**6),
                    checkpoint_dir=tmp_path / "run")
    tr.run(steps=300)
    out = capsys.readouterr().out
    assert "note: overfitting:" in out
    summary = out[out.index("done:"):]
    assert "overfitting: validation loss" in summary and "has risen" in summary
    assert "try more dropout: output_dropout=0.2 (now 0)" in summary
    assert "(best.npz holds the model at its best, " in summary


def test_the_progress_notes_a_growing_gap_and_then_a_rise_once_each(capsys):
    # A run first told that its gap grows (validation still falling) is told
    # again when validation rises from its best; neither is repeated.
    from types import SimpleNamespace
    prog = Progress(bar=False, sample_every=0, sample_length=0, log_every=10**6)
    trainer = SimpleNamespace(model=SimpleNamespace(num_params=10**6),
                              batches=SimpleNamespace(ids=np.zeros(1000)), history=[])
    vals = [2.0, 1.7, 1.6, 1.58, 1.60, 1.62, 1.63]
    trains = [2.0, 1.65, 1.5, 1.36, 1.3, 1.25, 1.2]
    for i, (v, t) in enumerate(zip(vals, trains)):
        trainer.history = [{"step": 100 * (i + 1), "loss": t}]
        prog(trainer, "eval", {"step": 100 * (i + 1), "val_loss": v, "val_bpc": v / math.log(2),
                               "epoch": float(i + 1)})
    notes = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("note:")]
    assert len(notes) == 2
    assert notes[0].startswith("note: overfitting: validation loss 1.580 is 0.22 above training")
    assert notes[0].endswith("; validation is still falling")
    assert notes[1].startswith("note: overfitting: validation loss 1.620 has risen from its best "
                               "1.580")
