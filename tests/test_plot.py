"""metrics.jsonl (MetricsLog, read_metrics) and training-curve plots."""

import json
import os
import sys

import pytest

import pycharrnn as pc
from pycharrnn.metrics import MetricsLog, read_metrics
from pycharrnn.rundir import METRICS_FILE

TEXT = ("To Sherlock Holmes she is always the woman. I have seldom heard him mention "
        "her under any other name. ") * 8
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STEP_KEYS = {"event", "step", "loss", "bpc", "ema_loss", "lr", "grad_norm", "epoch",
             "chars_per_sec", "time"}
EVAL_KEYS = {"event", "step", "epoch", "val_loss", "val_bpc", "time"}


def _trainer(ckdir=None, callbacks=(), **kw):
    model = pc.CharRNN(pc.Vocab.from_text(TEXT), hidden_size=8, cell="gru", seed=1)
    opt = pc.optim.Adam(model, lr=1e-2, clip_value=5.0)
    return pc.Trainer(model, TEXT, batch_size=2, seq_length=8, optimizer=opt,
                      eval_every=kw.pop("eval_every", 3), checkpoint_dir=ckdir,
                      callbacks=list(callbacks), **kw)


def _lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _write_log(path, steps, evals=()):
    with open(path, "w", encoding="utf-8") as f:
        for s in range(1, steps + 1):
            f.write(json.dumps({"event": "step", "step": s, "loss": 4.0 - 0.01 * s}) + "\n")
            if s in evals:
                f.write(json.dumps({"event": "eval", "step": s, "val_loss": 3.9}) + "\n")


# ------------------------------------------------------------------ MetricsLog
def test_metrics_log_writes_one_line_per_step_and_eval(tmp_path):
    with MetricsLog(tmp_path) as log:
        tr = _trainer(callbacks=[log])
        tr.run(steps=7)
    path = tmp_path / METRICS_FILE
    for raw in path.read_text(encoding="utf-8").splitlines():  # strict JSON: no NaN
        json.loads(raw, parse_constant=lambda c: pytest.fail(f"non-finite {c} in {raw}"))
    lines = _lines(path)
    steps = [x for x in lines if x["event"] == "step"]
    evals = [x for x in lines if x["event"] == "eval"]
    assert len(lines) == len(steps) + len(evals)
    assert [x["step"] for x in steps] == list(range(1, 8))
    assert [x["step"] for x in evals] == [h["step"] for h in tr.val_history]
    assert [x["step"] for x in evals][:2] == [3, 6]
    # each eval line follows its step's line
    for e in evals:
        i = lines.index(e)
        assert lines[i - 1]["event"] == "step" and lines[i - 1]["step"] == e["step"]
    for x, h in zip(steps, tr.history):
        assert set(x) == STEP_KEYS
        assert isinstance(x["step"], int)
        for k in ("loss", "ema_loss", "lr", "grad_norm", "epoch"):
            assert x[k] == pytest.approx(h[k], rel=1e-12)
        assert x["bpc"] == pytest.approx(h["loss"] / 0.6931471805599453)
    for x, h in zip(evals, tr.val_history):
        assert set(x) == EVAL_KEYS
        assert x["val_loss"] == pytest.approx(h["val_loss"], rel=1e-12)
        assert x["val_bpc"] == pytest.approx(h["val_loss"] / 0.6931471805599453)
        assert x["epoch"] == pytest.approx(h["epoch"])
    times = [x["time"] for x in lines]
    assert times == sorted(times) and times[0] >= 0
    assert log.closed
    # read_metrics returns the same, without the "event" key
    s2, e2 = read_metrics(tmp_path)
    assert s2 == [{k: v for k, v in x.items() if k != "event"} for x in steps]
    assert e2 == [{k: v for k, v in x.items() if k != "event"} for x in evals]
    assert read_metrics(path) == (s2, e2)


def test_metrics_log_buffers_and_flushes_at_evals(tmp_path):
    log = MetricsLog(tmp_path, flush_every=1000)
    tr = _trainer(callbacks=[log], eval_every=4)
    tr.run(steps=6, validate_at_end=False)  # no eval line (a flush) at step 6
    steps, evals = read_metrics(tmp_path)  # the log is still open
    assert [e["step"] for e in evals] == [4] and [s["step"] for s in steps] == [1, 2, 3, 4]
    log.close()
    assert [s["step"] for s in read_metrics(tmp_path)[0]] == list(range(1, 7))
    log.close()  # twice is fine
    with pytest.raises(ValueError, match="closed"):
        log(tr, "step", tr.history[-1])
    with MetricsLog(tmp_path, flush_every=2) as log2:
        for h in tr.history[:5]:
            log2(tr, "step", {**h, "step": h["step"] + 6, "bpc": 0.0, "chars_per_sec": 1.0})
        assert len(read_metrics(tmp_path)[0]) == 6 + 4  # two flushes of 2 lines


def test_metrics_log_resume_drops_later_steps_atomically(tmp_path, monkeypatch):
    path = tmp_path / METRICS_FILE
    _write_log(path, 10, evals={5, 10})
    before = path.read_bytes()
    inode = os.stat(path).st_ino

    # a rewrite that fails leaves the log as it was and no temporary file
    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        MetricsLog(tmp_path, resume_step=6)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == [METRICS_FILE]
    monkeypatch.undo()

    calls = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append((a, b)), real_replace(a, b)))
    with MetricsLog(tmp_path, resume_step=6) as log:
        assert log.dropped == 5  # steps 7..10 and the eval at 10
        assert len(calls) == 1 and os.path.samefile(calls[0][1], path)
        assert os.path.dirname(calls[0][0]) == str(tmp_path)  # the temp file sat beside it
        assert os.stat(path).st_ino != inode  # replaced, not edited in place
        assert sorted(os.listdir(tmp_path)) == [METRICS_FILE]
        log.log_step({"step": 7, "loss": 1.5, "lr": 0.1})
        log.log_eval({"step": 7, "val_loss": 1.4, "epoch": 0.5})
    steps, evals = read_metrics(tmp_path)
    assert [s["step"] for s in steps] == [1, 2, 3, 4, 5, 6, 7]
    assert steps[-1]["loss"] == 1.5 and steps[-1]["grad_norm"] is None
    assert [e["step"] for e in evals] == [5, 7]
    assert sorted(os.listdir(tmp_path)) == [METRICS_FILE]

    # nothing past resume_step: the file is left alone (plain append)
    inode = os.stat(path).st_ino
    with MetricsLog(tmp_path, resume_step=7) as log:
        assert log.dropped == 0
    assert os.stat(path).st_ino == inode and len(calls) == 1


def test_metrics_log_survives_a_killed_run_and_resume(tmp_path):
    log = MetricsLog(tmp_path, flush_every=1)
    tr = _trainer(tmp_path, callbacks=[log], eval_every=4, checkpoint_every=5,
                  checkpoint_each_epoch=False)
    for _ in range(8):  # "killed" after step 8: the last checkpoint is step 5
        tr.step()
    log.close()
    assert [s["step"] for s in read_metrics(tmp_path)[0]][-1] == 8
    back = pc.Trainer.resume(tmp_path, TEXT)
    assert back.step_count == 5
    with MetricsLog(tmp_path, resume_step=back.step_count) as log2:
        back.callbacks.append(log2)
        back.run(until_step=10)
    steps, evals = read_metrics(tmp_path)
    assert [s["step"] for s in steps] == list(range(1, 11))
    assert [e["step"] for e in evals] == [4, 8, 10]  # 10: the run's end
    assert [e["val_loss"] for e in evals] == pytest.approx(
        [h["val_loss"] for h in back.val_history])
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_read_metrics_tolerates_a_truncated_last_line(tmp_path):
    path = tmp_path / METRICS_FILE
    _write_log(path, 4, evals={2})
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"event": "step", "step": 5, "lo')  # killed mid-write
    steps, evals = read_metrics(tmp_path)
    assert [s["step"] for s in steps] == [1, 2, 3, 4] and [e["step"] for e in evals] == [2]
    # a complete record whose newline never made it is kept
    path2 = tmp_path / "other.jsonl"
    path2.write_text('{"event": "step", "step": 1, "loss": 2.0}\n'
                     '{"event": "step", "step": 2, "loss": 1.0}', encoding="utf-8")
    assert [s["step"] for s in read_metrics(path2)[0]] == [1, 2]
    # appending repairs the file first: the partial line goes, new lines parse
    with MetricsLog(tmp_path) as log:
        assert log.dropped == 1
        log.log_step({"step": 5, "loss": 1.0})
    assert [s["step"] for s in read_metrics(tmp_path)[0]] == [1, 2, 3, 4, 5]
    assert sorted(os.listdir(tmp_path)) == [METRICS_FILE, "other.jsonl"]
    # damage anywhere but the end is an error naming the line
    path.write_text('{"event": "step", "step": 1}\n{"event": "st\n'
                    '{"event": "step", "step": 3}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        read_metrics(path)
    with pytest.raises(FileNotFoundError):
        read_metrics(tmp_path / "missing")


# ----------------------------------------------------------------------- plots
def test_plot_run_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from pycharrnn.plot import plot_curves, plot_run

    with MetricsLog(tmp_path / "gru") as log:
        tr = _trainer(callbacks=[log])
        tr.run(steps=12)
    out = plot_run(tmp_path / "gru")
    assert out == tmp_path / "gru" / "curves.png"
    data = out.read_bytes()
    assert len(data) > 1000 and data[:8] == PNG_SIGNATURE
    assert sorted(os.listdir(tmp_path / "gru")) == ["curves.png", METRICS_FILE]
    # several runs in one figure: lists of (label, steps, evals) or label -> run dir
    other = tmp_path / "both.png"
    got = plot_curves([("gru", *read_metrics(tmp_path / "gru")),
                       ("history", tr.history, tr.val_history)], other, title="t", window=5)
    assert got == other and other.read_bytes()[:8] == PNG_SIGNATURE
    plot_curves({"gru": tmp_path / "gru"}, other)
    assert other.read_bytes()[:8] == PNG_SIGNATURE
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    with pytest.raises(ValueError, match="window"):
        plot_curves({"gru": tmp_path / "gru"}, other, window=0)
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_curves([("empty", [], [])], other)


def test_plot_without_matplotlib_says_how_to_install(tmp_path, monkeypatch):
    from pycharrnn import plot

    _write_log(tmp_path / METRICS_FILE, 3, evals={3})
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'pip install "pycharrnn\[plot\]"'):
        plot.plot_run(tmp_path)
    with pytest.raises(ImportError, match=r'pip install "pycharrnn\[plot\]"'):
        plot.plot_curves({"run": tmp_path}, tmp_path / "x.png")
    assert sorted(os.listdir(tmp_path)) == [METRICS_FILE]


def test_rolling_mean():
    from pycharrnn.plot import rolling_mean

    assert rolling_mean([], 10) == []
    assert rolling_mean([3.0], 100) == [3.0]
    v = [float(i % 2) for i in range(400)]
    r = rolling_mean(v, 100)
    assert len(r) == 400 and r[0] == 0.0
    assert all(abs(x - 0.5) < 0.02 for x in r[200:])
    line = [float(i) for i in range(300)]
    assert rolling_mean(line, 50)[:250] == pytest.approx(line[:250])  # centred: no lag


@pytest.mark.parametrize("flush_every,expect_on_disk", [(None, True), (50, False)])
def test_each_step_line_reaches_the_file_before_its_checkpoint(tmp_path, flush_every,
                                                                expect_on_disk):
    # A run killed right after a checkpoint must not have lost that step's
    # line: by default it is written out before the checkpoint is saved.
    seen = []

    def after_log(tr, event, m):
        if event == "step":  # the log has its line; the checkpoint is not saved yet
            steps, _ = read_metrics(tmp_path / "run")
            seen.append(bool(steps) and steps[-1]["step"] == tr.step_count)

    kw = {} if flush_every is None else {"flush_every": flush_every}
    with MetricsLog(tmp_path / "run", **kw) as log:
        tr = _trainer(tmp_path / "run", callbacks=[log, after_log], checkpoint_every=1)
        tr.run(steps=5)
    assert seen == [expect_on_disk] * 5
