"""Time budgets hold (a run for S seconds ends validated and saved within
them), and what a run says about other programs' load on its cores."""

import subprocess
import sys
import time

import pytest

import pycharrnn as pc
import pycharrnn.trainer as trainer_module
from pycharrnn import plot
from pycharrnn.runs import VALIDATION_PER_STEP, end_cost, validation_cost
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
    estimate = VALIDATION_PER_STEP * 0.01 * tr.val_ids.size / (b.rows * b.seq_length)
    assert end_cost(tr) == pytest.approx(estimate + 0.2)
    tr.run_callbacks = [curves]
    assert end_cost(tr) == pytest.approx(estimate + 0.2 + 0.7)
    # before the first validation, 9 times its estimate after the start
    tr._step_seconds = 1.0
    estimate = VALIDATION_PER_STEP * tr.val_ids.size / (b.rows * b.seq_length)
    assert 9 * estimate > 2 * tr.eval_every_seconds
    assert not tr.eval_by_time(9 * estimate - 0.01) and tr.eval_by_time(9 * estimate + 0.01)
    tr._last_eval_seconds = 0.01  # then its measured time
    assert tr.eval_by_time(tr.eval_every_seconds)


def test_a_budgeted_run_counts_its_first_drawing_before_it_is_timed(tmp_path, monkeypatch):
    monkeypatch.setattr(plot, "_matplotlib", lambda: None)
    curves = plot.CurvesPlot(tmp_path)
    curves.on_run_start(None, None, None)  # no budget: nothing to count
    assert curves.end_seconds() == 0.0
    curves.on_run_start(None, None, 10.0)
    assert curves.end_seconds() == plot.FIRST_DRAWING > 0
    curves.seconds = 0.0
    curves.on_run_start(None, None, 1.0)  # at most a tenth of a short budget
    assert curves.end_seconds() == pytest.approx(min(plot.FIRST_DRAWING, 0.1))
    curves.seconds = 0.2  # a drawing timed
    curves.on_run_start(None, None, 10.0)
    assert curves.end_seconds() == 0.2

    def missing():
        raise ImportError("no matplotlib")

    monkeypatch.setattr(plot, "_matplotlib", missing)
    curves = plot.CurvesPlot(tmp_path)
    curves.on_run_start(None, None, 10.0)  # no drawing to come
    assert curves.end_seconds() == 0.0


def test_a_validation_estimate_takes_the_median_step_and_holds_once_it_has_enough(tmp_path):
    tr = _trainer(tmp_path)
    b = tr.batches
    per_step = VALIDATION_PER_STEP * tr.val_ids.size / (b.rows * b.seq_length)
    tr._step_seconds = 1.0  # the last step's, slowed by a probe or another program
    tr._step_times.extend([0.01, 0.01, 1.0, 0.01, 0.01, 1.0, 0.01, 1.0])
    assert validation_cost(tr) == pytest.approx(0.01 * per_step)
    # With 8 of the 9 steps timed a first estimate is held to a quarter of
    # the budget (the first steps are slow); with 9 it is whole, however big.
    budget = 0.01 * per_step  # the validation would take all of it
    assert end_cost(tr, budget) == pytest.approx(0.25 * budget)
    tr._step_times.append(0.01)
    assert end_cost(tr, budget) == pytest.approx(budget)


def test_a_time_budget_holds_when_validation_takes_most_of_it(tmp_path, monkeypatch):
    # Steps of about 10 ms and 70,000 characters held out: a validation
    # expected to take 2.2 s or more, and that takes what was expected.
    text = TEXT * 35
    m = pc.CharRNN(pc.Vocab.from_text(text), hidden_size=32, cell="gru", seed=1)
    tr = pc.Trainer(m, text, batch_size=4, seq_length=32, val_fraction=0.5, eval_every=None,
                    eval_every_seconds=1.0, checkpoint_dir=tmp_path, progress=False,
                    stop_on_signals=False)
    real_step, real_evaluate = m.forward_backward, trainer_module.evaluate
    m.forward_backward = lambda *a, **kw: (time.sleep(0.01), real_step(*a, **kw))[1]
    took = []

    def as_expected(*args, **kw):
        took.append(validation_cost(tr))
        time.sleep(took[-1])
        return real_evaluate(*args, **kw)

    monkeypatch.setattr(trainer_module, "evaluate", as_expected)
    _slow_drawings(monkeypatch, 0.0)
    t0 = time.perf_counter()
    tr.run(seconds=4.0)
    elapsed = time.perf_counter() - t0
    assert len(took) == 1 and took[0] >= 2.0, took  # the last validation, over half the budget
    assert tr.step_count >= 9
    # Held to a quarter of the budget (as before), the estimate let the
    # steps run to 3 s and the run end at 5.2 s or later.
    assert elapsed <= 4.0 + 0.5, elapsed


def test_the_summary_says_when_validation_took_most_of_the_budget():
    p = Progress(bar=False)
    p.seconds, p.t0 = 10.0, time.perf_counter() - 10.0

    class Run:
        _last_eval_seconds, _last_save_seconds = 6.0, 0.1
        run_callbacks, cpu_load, val_fraction = [], [], 0.1

    notes = p._end_notes(Run())
    assert notes == ["note: validation took 6.0 s of the 0:10 budget, so the steps got less "
                     "than half of it; for a better model try a longer budget: seconds=24, or "
                     "less text held out: val_fraction=0.04 (now 0.1)"], notes
    Run._last_eval_seconds = 4.9
    assert p._end_notes(Run()) == []


def test_the_speed_a_run_shows_is_its_steps_not_its_validations(tmp_path, monkeypatch):
    # A run that spent most of its time validating showed "6,392 chars/s"
    # where its steps trained at 23,000: the characters over the whole run.
    real = trainer_module.evaluate
    monkeypatch.setattr(trainer_module, "evaluate",
                        lambda *a, **kw: (time.sleep(0.3), real(*a, **kw))[1])
    shown = Progress(bar=False, sample_every=0, sample_length=0, quiet=True)
    seen = []
    tr = pc.Trainer(pc.CharRNN(pc.Vocab.from_text(TEXT), hidden_size=32, cell="gru", seed=1),
                    TEXT, batch_size=4, seq_length=32, eval_every=5, progress=shown,
                    callbacks=[lambda t, event, m: seen.append(m) if event == "step" else None],
                    stop_on_signals=False)
    tr.run(steps=20)
    steps_time = sum(m["chars_per_sec"] ** -1 * 4 * 32 for m in seen)  # each step's own timing
    assert shown.rate() == pytest.approx(20 * 4 * 32 / steps_time, rel=1e-6)
    assert shown.rate() > 2 * 20 * 4 * 32 / shown.elapsed()  # 4 validations of 0.3 s


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
