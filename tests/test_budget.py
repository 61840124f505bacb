"""Time budgets hold (a run for S seconds ends validated and saved within
them), and what a run says about other programs' load on its cores."""

import subprocess
import sys
import time

import pytest

import pycharrnn as pc
import pycharrnn.trainer as trainer_module
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
    tr = _trainer(tmp_path)
    t0 = time.perf_counter()
    tr.run(seconds=4.0)
    took = time.perf_counter() - t0
    # Without the last validation in the budget the run ends a second late.
    assert took <= 4.0 + 0.5, took
    assert tr.val_history[-1]["step"] == tr.step_count
    assert (tmp_path / "latest.npz").stat().st_mtime >= time.time() - took


def test_the_summary_says_why_a_run_is_over_its_budget_and_names_the_load():
    p = Progress(bar=False)
    p.seconds, p.t0 = 10.0, time.perf_counter() - 15.0

    class Run:
        _last_eval_seconds, _last_save_seconds = 4.5, 0.2
        cpu_load = [{"cores": 2.0, "this_run": 1.0, "others": 1.0},
                    {"cores": 2.0, "this_run": 2.0, "others": 0.1}]

    notes = p._end_notes(Run())
    assert any("last validation took 4.5 s" in n for n in notes), notes
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
