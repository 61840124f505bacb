"""Time budgets hold (a run for S seconds ends validated and saved within
them), and what a run says about other programs' load on its cores."""

import subprocess
import sys
import time

import pytest

import pycharrnn as pc
import pycharrnn.trainer as trainer_module
from pycharrnn import plot
from pycharrnn.runs import end_cost
from pycharrnn.cpuload import CpuLoad
from pycharrnn.progress import Progress

TEXT = "A budget is a promise about the end of a run, not about its middle. " * 60


def _trainer(tmp_path):
    m = pc.CharRNN(pc.Vocab.from_text(TEXT), hidden_size=32, cell="gru", seed=1)
    return pc.Trainer(m, TEXT, batch_size=4, seq_length=32, eval_every_seconds=1.0,
                      checkpoint_dir=tmp_path, progress=False, stop_on_signals=False)


def test_a_time_budget_holds_with_its_last_validation_and_save(tmp_path, monkeypatch):
    real = trainer_module.evaluate

    def slow(*args, **kw):  # a validation that takes a second
        time.sleep(1.0)
        return real(*args, **kw)

    monkeypatch.setattr(trainer_module, "evaluate", slow)
    # curves.png's drawing out of it (its own test is below): unmeasured before
    # the first (30 s into a budgeted run) it took 0.4-0.6 s at the end on an
    # AVX2 EPYC, and the run 4.59 s
    _slow_drawings(monkeypatch, 0.0)
    tr = _trainer(tmp_path)
    t0 = time.perf_counter()
    tr.run(seconds=4.0)
    took = time.perf_counter() - t0
    # Without the last validation in the budget the run ends a second late.
    assert took <= 4.0 + 0.5, took
    assert tr.val_history[-1]["step"] == tr.step_count
    assert (tmp_path / "latest.npz").stat().st_mtime >= time.time() - took


def _slow_drawings(monkeypatch, seconds):
    """curves.png's drawing takes ``seconds`` (without matplotlib); returns
    the step counts it was drawn at."""
    drawn = []

    def draw(runs, path, **kw):
        time.sleep(seconds)
        drawn.append(len(runs[0][1]))

    monkeypatch.setattr(plot, "_matplotlib", lambda: None)
    monkeypatch.setattr(plot, "plot_curves", draw)
    return drawn


def test_a_time_budget_holds_with_the_drawing_at_its_end(tmp_path, monkeypatch):
    drawn = _slow_drawings(monkeypatch, 1.0)
    # a picture every 1.5 s (30 s by default): its time is then known at the end
    monkeypatch.setattr(plot.CurvesPlot.__init__, "__defaults__", (1.5, print))
    tr = _trainer(tmp_path)
    tr.eval_every_seconds = 0.3
    t0 = time.perf_counter()
    tr.run(seconds=4.0)
    took = time.perf_counter() - t0
    assert len(drawn) >= 2 and drawn[-1] == tr.step_count, drawn
    # Without the last drawing in the budget the run ends a second late.
    assert took <= 4.0 + 0.5, took


def test_a_short_run_with_a_budget_draws_its_picture_at_the_end_only(tmp_path, monkeypatch):
    drawn = _slow_drawings(monkeypatch, 0.0)
    tr = _trainer(tmp_path)
    tr.eval_every_seconds = 0.2
    tr.run(seconds=1.5)
    assert len(tr.val_history) >= 3  # validations that drew a picture each before
    assert drawn == [tr.step_count]  # (without a budget: after the first validation too, test_cli)


def test_end_cost_has_the_last_drawing_and_the_first_validation_waits_for_its_estimate(tmp_path):
    tr = _trainer(tmp_path)
    curves = plot.CurvesPlot(tmp_path)
    curves.seconds = 0.7
    tr._step_seconds, tr._last_save_seconds = 0.01, 0.2
    b = tr.batches
    estimate = 0.6 * 0.01 * tr.val_ids.size / (b.rows * b.seq_length)
    assert end_cost(tr) == pytest.approx(estimate + 0.2)
    tr.run_callbacks = [curves]
    assert end_cost(tr) == pytest.approx(estimate + 0.2 + 0.7)
    # before the first validation, 9 times its estimate after the start
    tr._step_seconds = 1.0
    estimate = 0.6 * tr.val_ids.size / (b.rows * b.seq_length)
    assert 9 * estimate > 2 * tr.eval_every_seconds
    assert not tr.eval_by_time(9 * estimate - 0.01) and tr.eval_by_time(9 * estimate + 0.01)
    tr._last_eval_seconds = 0.01  # then its measured time
    assert tr.eval_by_time(tr.eval_every_seconds)


def test_the_summary_says_why_a_run_is_over_its_budget_and_names_the_load(tmp_path):
    p = Progress(bar=False)
    p.seconds, p.t0 = 10.0, time.perf_counter() - 15.0
    curves = plot.CurvesPlot(tmp_path)
    curves.seconds = 2.25

    class Run:
        _last_eval_seconds, _last_save_seconds = 4.5, 0.2
        run_callbacks = [curves]
        cpu_load = [{"cores": 2.0, "this_run": 1.0, "others": 1.0},
                    {"cores": 2.0, "this_run": 2.0, "others": 0.1}]

    notes = p._end_notes(Run())
    assert any("last validation took 4.5 s, its last save 0.2 s and drawing curves.png 2.2 s"
               in n for n in notes), notes
    assert any("at 1 validation of 2, other programs are using about 1.0 of the 2" in n
               for n in notes), notes
    p.t0 = time.perf_counter() - 10.5  # within max(2 s, 3%): nothing to explain
    Run.cpu_load = []
    assert p._end_notes(Run()) == []


def test_cpu_load_counts_another_program_and_this_one():
    load = CpuLoad()
    if load.window(0) is None:
        pytest.skip("no /proc/stat here")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # the other program started
        load.window(0)
        cpu0, t0 = time.process_time(), time.monotonic()
        while time.monotonic() - t0 < 1.5:  # this one busy too
            pass
        w = load.window(0)
        # This process's share by another clock (CLOCK_PROCESS_CPUTIME_ID,
        # where the window reads times()): one spinning thread gets up to a
        # core, less when still other programs share the machine.
        mine = (time.process_time() - cpu0) / (time.monotonic() - t0)
    finally:
        busy.kill()
        busy.wait()
    assert w is not None
    assert abs(w["this_run"] - mine) <= 0.1 and w["this_run"] <= 1.2, (w, mine)
    assert w["others"] >= 0.6 or w["cores"] < 2, w
