"""Trainer: validation, schedules, callbacks, checkpoints, divergence, exact resume."""

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import pycharrnn as pc
from pycharrnn import schedule as sch
from pycharrnn.rundir import BEST
from pycharrnn.errors import TrainingDiverged
from pycharrnn.runs import check_compatible

TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, "
        "it was the age of foolishness... ") * 12


def _setup(kind, ckdir):
    vocab = pc.Vocab.from_text(TEXT)
    if kind == "gru-adam-cosine":
        m = pc.CharRNN(vocab, hidden_size=24, num_layers=2, cell="gru", embedding_dim=8,
                       dropout=0.2, seed=3)
        opt = pc.optim.Adam(m, lr=3e-3, clip_norm=1.0)
        s = sch.CosineWarmup(3e-3, total_steps=60, warmup_steps=5)
        kw = dict(eval_every=7)
    else:
        m = pc.CharRNN(vocab, hidden_size=20, num_layers=2, cell="lstm", seed=4,
                       dtype="float64")
        opt = pc.optim.RMSProp(m, lr=2e-3, alpha=0.95, centered=True, momentum=0.3,
                               clip_value=5.0)
        s = sch.ReduceOnPlateau(2e-3, factor=0.5, patience=0)
        kw = dict(eval_every=5)
    return pc.Trainer(m, TEXT, batch_size=4, seq_length=16, optimizer=opt, schedule=s,
                      checkpoint_dir=ckdir, checkpoint_every=10, **kw)


RESUME_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, pycharrnn as pc
    from test_trainer import TEXT
    tr = pc.Trainer.resume(sys.argv[1], TEXT)
    tr.run(until_step=int(sys.argv[2]))
    np.save(sys.argv[3], tr.model.flat_params)
    np.save(sys.argv[4], np.array([tr.step_count, tr.ema_loss, tr.optimizer.lr,
                                   len(tr.val_history), tr.batches.epoch]))
""")


@pytest.mark.parametrize("kind", ["gru-adam-cosine", "lstm-rmsprop-plateau"])
def test_resume_in_a_new_process_is_bit_exact(kind, tmp_path):
    N, M = 23, 27  # the run crosses an epoch boundary (about 27 chunks per epoch)
    full = _setup(kind, tmp_path / "full")
    full.run(steps=N + M)
    assert full.batches.epoch >= 1 and full.val_history
    part = _setup(kind, tmp_path / "part")
    part.run(steps=N)  # writes part/latest.npz at step N
    script = tmp_path / "resume.py"
    script.write_text(RESUME_SCRIPT)
    out_p, out_s = tmp_path / "p.npy", tmp_path / "s.npy"
    tests_dir = str(__import__("pathlib").Path(__file__).parent)
    r = subprocess.run([sys.executable, str(script), str(tmp_path / "part"), str(N + M),
                        str(out_p), str(out_s)], capture_output=True, text=True,
                       env={**__import__("os").environ, "PYTHONPATH": tests_dir})
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.load(out_p), full.model.flat_params)
    s = np.load(out_s)
    assert s[0] == full.step_count and s[1] == full.ema_loss and s[2] == full.optimizer.lr
    # The interrupted run validated once more: at its end (step N, not an
    # eval step); that validation does not feed the schedule (the lr matches).
    assert N % full.eval_every and s[3] == len(full.val_history) + 1
    assert s[4] == full.batches.epoch


def test_resume_in_process_keeps_histories(tmp_path):
    tr = _setup("gru-adam-cosine", tmp_path)
    tr.run(steps=12)
    back = pc.Trainer.resume(tmp_path, TEXT)
    assert back.step_count == 12
    assert back.history == tr.history
    assert back.val_history == tr.val_history
    assert back.best_val_loss == tr.best_val_loss


def test_resume_rejects_mismatches(tmp_path):
    tr = _setup("gru-adam-cosine", tmp_path)
    tr.run(steps=3)
    with pytest.raises(ValueError, match="batch_size"):
        pc.Trainer.resume(tmp_path, TEXT, batch_size=8)
    with pytest.raises(ValueError, match="training data differs"):
        pc.Trainer.resume(tmp_path, TEXT[:-1] + "a")
    tr.model.save(tmp_path / "model_only.npz")
    with pytest.raises(pc.CheckpointError, match="no training state"):
        pc.Trainer.resume(tmp_path / "model_only.npz", TEXT)
    saved = pc.load(tmp_path).config()
    with pytest.raises(ValueError, match="hidden_size"):
        check_compatible(saved, {"hidden_size": 99, "cell": "gru"})
    check_compatible(saved, {"hidden_size": 24, "cell": "gru", "dropout": None})


def test_divergence_is_caught_and_the_checkpoint_kept(tmp_path):
    vocab = pc.Vocab.from_text(TEXT)
    m = pc.CharRNN(vocab, hidden_size=16, cell="rnn", nonlinearity="relu", seed=0)
    opt = pc.optim.SGD(m, lr=0.1)
    tr = pc.Trainer(m, TEXT, batch_size=4, seq_length=16, optimizer=opt,
                    checkpoint_dir=tmp_path, checkpoint_every=5)
    tr.run(steps=10)
    good = pc.load(tmp_path / "latest.npz").state_dict()
    opt.lr = 1e30  # blows up
    with pytest.raises(TrainingDiverged, match=r"step 1[12]\b.*learning rate"):
        tr.run(steps=10)
    assert tr.step_count <= 11
    again = pc.load(tmp_path / "latest.npz").state_dict()
    assert all(np.array_equal(good[k], again[k]) for k in good)
    assert all(np.isfinite(v).all() for v in again.values())


def test_validation_and_best_checkpoint(tmp_path):
    vocab = pc.Vocab.from_text(TEXT)
    m = pc.CharRNN(vocab, hidden_size=16, cell="gru", seed=0)
    events = []
    tr = pc.Trainer(m, TEXT, batch_size=4, seq_length=16, val_fraction=0.2, eval_every=4,
                    optimizer=pc.optim.Adam(m, lr=1e-2), checkpoint_dir=tmp_path,
                    callbacks=[lambda t, e, mt: events.append((e, mt["step"]))])
    hist = tr.run(steps=12)
    assert len(tr.val_ids) == round(len(TEXT) * 0.2)
    assert [e for e in events if e[0] == "eval"] == [("eval", 4), ("eval", 8), ("eval", 12)]
    assert "val_loss" in hist[3] and "val_loss" not in hist[2]
    assert tr.val_history[-1]["val_loss"] < tr.val_history[0]["val_loss"]
    best = pc.Trainer.resume(tmp_path / BEST, TEXT)
    assert best.best_val_loss == min(v["val_loss"] for v in tr.val_history)
    # evaluate() on ids that fit one chunk equals the model's plain loss.
    ids = tr.val_ids[:17]
    want, _ = m.loss(ids[None, :-1], ids[None, 1:])
    assert math.isclose(tr.evaluate(ids), want, rel_tol=1e-6)


def test_callback_can_stop_the_run():
    m = pc.CharRNN(pc.Vocab.from_text(TEXT), hidden_size=8, cell="rnn", seed=0)
    tr = pc.Trainer(m, TEXT, batch_size=2, seq_length=8,
                    callbacks=[lambda t, e, mt: mt["step"] < 3])
    assert len(tr.run(steps=10)) == 3


def test_schedules():
    s = sch.StepDecay(1.0, gamma=0.97, every=1, start=10)  # char-rnn's default
    assert s.lr(1, 9.99) == 1.0 and s.lr(1, 10.0) == 0.97 and s.lr(1, 12.5) == 0.97 ** 3
    c = sch.CosineWarmup(1.0, total_steps=110, warmup_steps=10, min_lr=0.1)
    assert c.lr(5, 0) == 0.5 and c.lr(10, 0) == 1.0
    assert math.isclose(c.lr(60, 0), 0.55) and math.isclose(c.lr(110, 0), 0.1)
    p = sch.ReduceOnPlateau(1.0, factor=0.5, patience=1)
    for v in (3.0, 2.0, 2.5, 2.4):  # two validations without improvement
        p.on_validation(v)
    assert p.lr(1, 0) == 0.5
    q = sch.from_config(p.config())
    q.load_state_dict(json.loads(json.dumps(p.state_dict())))
    assert q.lr(1, 0) == 0.5 and q.best == 2.0
    with pytest.raises(ValueError):
        sch.StepDecay(1.0, gamma=1.5)


def test_trainer_reports_grad_norm_before_clipping():
    m = pc.CharRNN(pc.Vocab.from_text(TEXT), hidden_size=8, cell="rnn", seed=0)
    opt = pc.optim.SGD(m, lr=0.1, clip_norm=1e-3)
    tr = pc.Trainer(m, TEXT, batch_size=2, seq_length=8, optimizer=opt)
    mt = tr.step()
    assert mt["grad_norm"] > 1e-3
    assert math.isclose(mt["grad_norm"], np.linalg.norm(m.flat_grads), rel_tol=1e-5)


def test_every_run_ends_validated_and_saved(tmp_path):
    m = pc.CharRNN(pc.Vocab.from_text(TEXT), hidden_size=8, cell="gru", seed=0)
    events = []
    tr = pc.Trainer(m, TEXT, batch_size=2, seq_length=8, eval_every=100,
                    checkpoint_dir=tmp_path,
                    callbacks=[lambda t, e, mt: events.append((e, mt["step"]))])
    tr.run(steps=5)  # no scheduled validation in 5 steps; one at the end
    assert [v["step"] for v in tr.val_history] == [5] and ("eval", 5) in events
    assert tr.best_val_loss == tr.val_history[0]["val_loss"] == tr.evaluate()
    assert pc.Trainer.resume(tmp_path / BEST, TEXT).step_count == 5
    tr.run(seconds=0.2)  # stopped by time: validated at its last step too
    assert tr.val_history[-1]["step"] == tr.step_count > 5
    # a stop requested (a signal handler's way) ends the run after that step
    tr.callbacks.append(lambda t, e, mt: t.request_stop() if mt["step"] == t.step_count
                        and e == "step" and len(events) > 20 else None)
    n = tr.step_count
    done = tr.run(steps=1000)
    assert 0 < len(done) < 1000 and tr.val_history[-1]["step"] == tr.step_count
    assert pc.Trainer.resume(tmp_path, TEXT).step_count == tr.step_count > n


def test_ema_loss_is_meaningful_from_the_first_step():
    m = pc.CharRNN(pc.Vocab.from_text(TEXT), hidden_size=8, cell="rnn", seed=0)
    tr = pc.Trainer(m, TEXT, batch_size=2, seq_length=8, ema_decay=0.9)
    assert math.isnan(tr.ema_loss)
    losses = [tr.step()["loss"] for _ in range(5)]
    assert math.isclose(tr.history[0]["ema_loss"], losses[0], rel_tol=1e-12)  # not ln(V)-ish
    w = 0.9 ** np.arange(4, -1, -1)  # the weighted mean of the losses so far
    assert math.isclose(tr.ema_loss, float(np.dot(w, losses) / w.sum()), rel_tol=1e-12)
    with pytest.raises(ValueError, match="ema_decay"):
        pc.Trainer(m, TEXT, batch_size=2, seq_length=8, ema_decay=1.0)
