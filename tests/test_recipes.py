"""Runs by time budget: the recipe table, the cosine to the deadline, the
trainer's clock, and `pycharrnn train --time` choosing and printing a recipe."""

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest

import pycharrnn as pc
from pycharrnn import recipes
from pycharrnn.runs import end_cost
from pycharrnn.schedule import CosineToDeadline, from_config
from test_cli import cli, data  # noqa: F401  (the fixture)


def test_the_table_is_ordered_and_for_budget_picks_the_largest_that_fits():
    rows = [r for r in recipes.RECIPES if not r.alternate]
    budgets = [r.seconds for r in rows]
    assert budgets == sorted(budgets) and len(set(budgets)) == len(budgets)
    first = recipes.RECIPES[0]
    assert recipes.for_budget(1) is first  # shorter than every row: the smallest
    for r in rows:
        assert recipes.for_budget(r.seconds) is r
        assert recipes.for_budget(r.seconds * 1.5).seconds >= r.seconds
    assert recipes.by_name("3min").seconds == 180
    for r in recipes.RECIPES:  # an alternate row is some row's fallback, of the same budget
        if r.alternate:
            assert any(p.fallback == r.name and p.seconds == r.seconds for p in rows)
        if r.fallback:
            assert recipes.by_name(r.fallback).alternate
    with pytest.raises(ValueError, match="no recipe 'x'; there are 1min"):
        recipes.by_name("x")


@pytest.mark.parametrize("r", recipes.RECIPES, ids=lambda r: r.name)
def test_every_recipe_builds_a_model_and_an_optimizer(r):
    o = r.options()
    model_keys = ("cell", "hidden_size", "num_layers", "embedding_dim", "dropout",
                  "input_dropout", "output_dropout", "weight_drop", "embedding_dropout",
                  "locked_dropout")
    m = pc.CharRNN(20, seed=0, **{k: o[k] for k in model_keys})
    pc.optim.OPTIMIZERS[r.optimizer](m, lr=r.lr, weight_decay=r.weight_decay)
    assert r.name in {x.name for x in recipes.RECIPES} and r.describe()


def test_cosine_to_the_deadline():
    s = CosineToDeadline(0.01, seconds=100, warmup_steps=10, min_lr=0.001)
    assert s.by_time
    assert s.lr(5, 0.0, 0.0) == pytest.approx(0.005)  # half-way through the warm-up
    assert s.lr(10, 0.0, 0.0) == pytest.approx(0.01)
    assert s.lr(500, 0.0, 50.0) == pytest.approx(0.0055)  # half-way to the deadline
    assert s.lr(900, 0.0, 100.0) == pytest.approx(0.001)
    assert s.lr(999, 0.0, 1e6) == pytest.approx(0.001)  # held after it
    lrs = [s.lr(100, 0.0, t) for t in np.linspace(0, 100, 50)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    again = from_config(s.config())
    assert again.config() == s.config() and again.lr(50, 0.0, 37.0) == s.lr(50, 0.0, 37.0)
    for bad in (0, -1, math.inf, "10"):
        with pytest.raises(ValueError, match="seconds"):
            CosineToDeadline(0.01, seconds=bad)


class _Recorder:
    """A schedule by time that records the clock it is given."""

    by_time = True

    def __init__(self):
        self.seen = []

    def lr(self, step, epoch, seconds):
        self.seen.append(seconds)
        return 1e-3

    def on_validation(self, loss):
        pass

    def state_dict(self):
        return {"config": {"type": "Constant", "base_lr": 1e-3}}


def test_the_trainer_clock_runs_across_runs_and_resumes(tmp_path):
    text = "abcdefgh" * 300
    m = pc.CharRNN(pc.Vocab.from_text(text), hidden_size=8, cell="gru", seed=0)
    sched = _Recorder()
    tr = pc.Trainer(m, text, batch_size=2, seq_length=8, schedule=sched,
                    optimizer=pc.optim.Adam(m), checkpoint_dir=tmp_path)
    tr.run(seconds=0.3)
    first = tr.clock  # the loop's time: the run's 0.3 s less its last validation and save
    assert 0.3 - end_cost(tr) - 0.05 <= first < 5 and sched.seen[0] < 0.1
    assert all(a <= b for a, b in zip(sched.seen, sched.seen[1:]))
    assert sched.seen[-1] < first
    tr.run(seconds=0.2)  # a second session continues the clock
    assert tr.clock >= first + 0.2 - end_cost(tr) - 0.05
    back = pc.Trainer.resume(tmp_path, text)
    assert back.clock == pytest.approx(tr.clock, abs=0.05)


def _train(tmp_path, data, *extra, ok=True):
    run = tmp_path / "run"
    return run, cli(tmp_path, "train", data, "--out", run, "--sample-length", 0, "--no-bar",
                    "--hidden-size", 12, "--batch-size", 4, "--seq-length", 16, *extra, ok=ok)


def test_time_alone_picks_and_prints_the_recipe(tmp_path, data):  # noqa: F811
    run, r = _train(tmp_path, data, "--time", 1, "--cell", "lstm")
    first = recipes.RECIPES[0]
    line = r.stdout.splitlines()[0]
    assert line.startswith(f"recipe {first.name} (for --time 1; about ")
    # A tiny model on a short text: many epochs in a second, but a second is
    # too short for dropout to pay (the strong level: see the next test).
    expo = float(line.split(", exposure ")[1].split(":")[0])
    # (The line goes on "; measured while other programs used ..." when the
    # machine is busy: the level is the same.)
    assert expo >= recipes.EXPOSURE_STRONG and re.search(r": no regularisation[);]", line)
    assert "then a cosine to the deadline" in line
    # Your options with their values: the line above them describes the row.
    assert "yours: --cell lstm, --hidden-size 12, --batch-size 4, --seq-length 16" in line
    m = pc.load(run)  # the recipe's choices, and yours where you gave them
    assert (m.cell, m.hidden_size, m.embedding_dim) == ("lstm", 12, first.embedding_dim)
    assert not m.regularized
    assert json.loads((run / "run.json").read_text())["recipe"] == first.name
    h, _ = pc.checkpoint.read_arrays(run / "latest.npz")
    sched = h["extra"]["schedule"]["config"]
    assert sched["type"] == "CosineToDeadline" and sched["seconds"] == 1
    assert h["extra"]["optimizer"]["type"] == first.optimizer.capitalize().replace("w", "W")


def test_the_regularisation_follows_the_exposure_the_budget_buys():
    # Exposures measured (benchmarks/recipe_spread.py): none was best up to
    # 7.2 (3-minute rows), moderate from 28 (tinyshakespeare, 15 minutes,
    # GRU 1 x 768 and LSTM 2 x 512), strong made the 60-minute row (129) and
    # was within 0.008 of the best at 150 (200,000 characters, 3 minutes);
    # heavy beat strong by 0.034 at 861 (the same text, 15 minutes).
    assert [recipes.level_for(e) for e in (0.3, 7.2, 28.2, 60.0, 129.0, 150.0, 861.0)] == \
        ["none", "none", "moderate", "moderate", "strong", "strong", "heavy"]
    heavy, strong = recipes.REGULARISATION["heavy"], recipes.REGULARISATION["strong"]
    assert all(heavy[k] > strong[k] for k in heavy if k != "locked_dropout")
    assert recipes.level_for(100, 60) == "none"  # a minute is too short for dropout
    assert recipes.exposure(8.5, 3_322_497, 1_003_854) == pytest.approx(28.13, abs=0.01)
    row = recipes.by_name("3min")
    small = recipes.fit_to_text(row, 180, 180_000, 47_000, params(row, 78))  # 47 epochs
    assert params(row, 78) == 932_814  # csrc/model.hpp's count (test_memory checks it)
    assert small.level == "strong" and small.epochs == pytest.approx(47.0)
    assert small.exposure == pytest.approx(47.0 * 932_814 / 180_000)
    assert (small.weight_drop, small.output_dropout, small.dropout) == (0.4, 0.3, 0.0)
    assert (small.hidden_size, small.lr, small.name) == (row.hidden_size, row.lr, row.name)
    # The 15-minute row on tinyshakespeare (8.5 to 9.4 epochs) and on the
    # 3.4M-character Sherlock text (3.3): the same epochs on a small model
    # would not be regularised.
    lstm = recipes.by_name("15min")
    ts = recipes.fit_to_text(lstm, 900, 1_003_854, 10_500, params(lstm, 65))
    assert ts.level == "moderate" and ts.weight_drop == 0.2 and ts.epochs < 10
    assert recipes.fit_to_text(ts, 900, 1_003_854, 10_500, 900_000).level == "none"
    big = recipes.fit_to_text(lstm, 900, 3_040_000, 11_000, params(lstm, 96))
    assert big.level == "none" and not (big.weight_drop or big.output_dropout)
    two = recipes.fit_to_text(recipes.by_name("60min"), 3600, 1_000_000, 12_000,
                              params(recipes.by_name("60min"), 65))
    assert two.level == "strong" and two.dropout == 0.25  # two layers: between them too


def params(row, vocab_size):
    """The parameters of a recipe's model on vocab_size characters."""
    from pycharrnn.config import ModelConfig

    return ModelConfig(cell=row.cell, hidden_size=row.hidden_size, num_layers=row.num_layers,
                       embedding_dim=row.embedding_dim).parameters(vocab_size)


def test_a_large_text_gets_the_faster_model_of_its_budget():
    from pycharrnn import config

    assert recipes.for_budget(900).name == recipes.for_budget(3000).name == "15min"
    assert all(recipes.for_budget(s).name != "15min-gru" for s in (1, 60, 900, 1e6))
    row = recipes.by_name("15min")
    small = "abcdefghij" * 100_000  # 1M characters: read 8.5 times at 10,500 chars/s
    m, t, r = config.resolve({"seconds": 900}, text=small, rate=10_500)
    assert r.name == "15min" and (m.cell, m.num_layers) == (row.cell, row.num_layers)
    assert r.level == "moderate" and m.weight_drop == 0.2
    big = small * 3  # read 3.5 times: the GRU 1 x 768, reading it more often
    m, t, r = config.resolve({"seconds": 900}, text=big, rate=10_500)
    gru = recipes.by_name(row.fallback)
    assert r.name == gru.name and (m.cell, m.hidden_size, t.lr) == ("gru", 768, gru.lr)
    assert r.level == "none" and m.weight_drop == 0.0
    assert "instead of 15min" in r.announce(t) and "fewer than 4.5 times" in r.announce(t)
    rates = []
    m, t, r = config.resolve({"seconds": 900}, text=big,
                             rate=lambda mc, tc, v: rates.append(mc.cell) or 30_000.0)
    assert rates == ["lstm"] and r.name == "15min"  # fast enough: the LSTM reads it 10 times
    m, t, r = config.resolve({"seconds": 900}, text=big,
                             rate=lambda mc, tc, v: rates.append(mc.cell) or 10_500.0)
    assert rates[1:] == ["lstm", "gru"] and r.name == gru.name  # measured again as the GRU
    m, t, r = config.resolve({"seconds": 900, "hidden_size": 256}, text=big, rate=10_500)
    assert r.name == "15min" and m.cell == "lstm"  # your model: the row stays


def test_resolve_fits_the_recipe_to_the_text_and_keeps_what_you_set():
    from pycharrnn import config

    text = "abcdefghij" * 20_000  # 180,000 characters to train on
    m, t, r = config.resolve({"seconds": 180}, text=text, rate=47_000)
    assert r.level == "strong" and m.weight_drop == 0.4 and m.locked_dropout
    m, t, r = config.resolve({"seconds": 180, "output_dropout": 0.05}, text=text,
                             rate=47_000)
    assert m.output_dropout == 0.05 and m.weight_drop == 0.4  # yours stays
    assert r.announce(t, {"output_dropout": 0.05}).endswith("; yours: output_dropout=0.05")
    assert r.announce(t, {"locked_dropout": False, "lr": 4e-3},
                      naming=lambda k: "--" + k.replace("_", "-")).endswith(
        "; yours: --lr 0.004, --locked-dropout off")
    m, t, r = config.resolve({"seconds": 180}, text=text * 50, rate=47_000)
    assert r.level == "none" and m.weight_drop == 0.0
    # A row by name, or no text: the row as it is.
    m, t, r = config.resolve({"seconds": 180}, recipe="3min", text=text, rate=47_000)
    assert not r.level and m.weight_drop == 0.0
    assert not config.resolve({"seconds": 180})[2].level
    assert not config.resolve({"seconds": 180}, text=text)[2].level  # no rate: no fit
    # Measured as the command line does: a positive speed, and the epochs.
    from pycharrnn.runs import measure_rate
    m, t, r = config.resolve({"seconds": 1, "hidden_size": 16, "embedding_dim": 8},
                             text=text, rate=measure_rate)
    assert r.rate > 0 and r.epochs == pytest.approx(r.rate / 180_000)
    # With the run's threads, and the process's setting left as it was.
    auto, n = pc.backend.threads_auto(), pc.get_num_threads()
    assert measure_rate(m, config.replace(t, threads=1), 12, seconds=0.05) > 0
    assert (pc.backend.threads_auto(), pc.get_num_threads()) == (auto, n)


def test_a_speed_measured_beside_other_programs_is_said_to_be_so():
    from pycharrnn import config
    from pycharrnn.runs import Rate, measure_rate

    text = "abcdefghij" * 20_000
    busy = Rate(47_000, others=1.5, cores=2.0)
    m, t, r = config.resolve({"seconds": 180}, text=text, rate=busy)
    assert (r.others, r.cores, r.rate) == (1.5, 2.0, 47_000) and r.busy()
    line = r.announce(t, auto=True, naming=lambda k: "--" + k)
    assert "other programs used 1.5 of the 2 cores" in line and "--recipe 3min" in line
    # Sent to the faster row by the slow measurement: the advice names the
    # row an idle machine would have trained.
    m, t, r = config.resolve({"seconds": 900}, text=text * 15,
                             rate=Rate(10_500, others=1.2, cores=2.0))
    assert r.name == "15min-gru"
    assert "--recipe 15min trains" in r.announce(t, auto=True, naming=lambda k: "--" + k)
    assert type(r.rate) is float  # kept as a plain number (run.json, the table)
    # Below the share, or unknown: nothing said.
    for rate in (Rate(47_000, others=0.4, cores=2.0), Rate(47_000), 47_000):
        m, t, r = config.resolve({"seconds": 180}, text=text, rate=rate)
        assert not r.busy() and "other programs" not in r.announce(t, auto=True)
        assert r.level == "strong"  # the same fit: the note changes no choice
    # measure_rate says what the others used while it timed (on Linux).
    rate = measure_rate(m, config.replace(t, threads=1), 12, seconds=0.05)
    assert isinstance(rate, Rate) and rate > 0
    if os.path.exists("/proc/stat") and hasattr(os, "sched_getaffinity"):
        assert rate.cores == len(os.sched_getaffinity(0)) and 0 <= rate.others <= rate.cores


def test_run_json_records_how_the_recipe_was_fitted(tmp_path, data):  # noqa: F811
    run, r = _train(tmp_path, data, "--time", 1)
    fit = json.loads((run / "run.json").read_text())["recipe_fit"]
    assert fit["level"] in recipes.REGULARISATION and fit["rate"] > 0
    from pycharrnn.data import validation_size
    n = len(Path(data).read_text(encoding="utf-8"))
    assert fit["epochs"] == pytest.approx(fit["rate"] / (n - validation_size(n, 0.1)), rel=0.01)
    assert fit["cores"] is None or 0 <= fit["others"] <= fit["cores"]


def test_no_recipe_with_steps_or_recipe_none(tmp_path, data):  # noqa: F811
    run, r = _train(tmp_path, data, "--time", 1, "--recipe", "none")
    assert not r.stdout.startswith("recipe")
    m = pc.load(run)
    assert m.cell == "lstm" and m.embedding_dim is None and not m.regularized
    run2 = tmp_path / "run2"
    r = cli(tmp_path, "train", data, "--out", run2, "--steps", 3, "--time", 30,
            "--hidden-size", 8, "--sample-length", 0, "--no-bar")
    assert not r.stdout.startswith("recipe") and pc.load(run2).embedding_dim is None


def test_a_named_recipe_applies_with_steps_and_cosine_with_time(tmp_path, data):  # noqa: F811
    run, r = _train(tmp_path, data, "--steps", 4, "--recipe", "3min")
    assert r.stdout.startswith("recipe 3min (--recipe): ")
    assert pc.load(run).hidden_size == 12
    h, _ = pc.checkpoint.read_arrays(run / "latest.npz")
    sched = h["extra"]["schedule"]["config"]  # the cosine runs to --steps
    assert sched["type"] == "CosineWarmup" and sched["total_steps"] == 4
    assert sched["warmup_steps"] == 0 and "then a cosine to step 4" in r.stdout
    run2 = tmp_path / "run2"
    r = cli(tmp_path, "train", data, "--out", run2, "--time", 1, "--recipe", "none",
            "--schedule", "cosine", "--hidden-size", 8, "--sample-length", 0, "--no-bar")
    h, _ = pc.checkpoint.read_arrays(run2 / "latest.npz")
    assert h["extra"]["schedule"]["config"]["type"] == "CosineToDeadline"
    lrs = [json.loads(x)["lr"] for x in (run2 / "metrics.jsonl").read_text().splitlines()
           if '"eval"' not in x]
    assert lrs[-1] < lrs[0]


@pytest.mark.parametrize("flag", ["--input-dropout", "--embedding-dropout"])
def test_embedding_regularisers_without_an_embedding_name_the_flag(tmp_path, data, flag):  # noqa: F811
    r = cli(tmp_path, "train", data, "--out", tmp_path / "r", "--steps", 2, "--recipe", "none",
            flag, "0.1", ok=False)
    assert r.returncode == 1 and flag in r.stderr and "--embedding-dim" in r.stderr


def test_validation_by_time_is_spaced_by_the_clock_and_its_own_cost():
    text = "abcdefgh" * 100_000  # epochs longer than the run
    m = pc.CharRNN(pc.Vocab.from_text(text), hidden_size=16, cell="gru", seed=0)
    # 8,000 characters to validate: a few milliseconds, so the clock spaces
    # them (with the default tenth, 80,000 took 0.07-0.13 s on an AVX2 EPYC,
    # 9x that spaced them a second apart, and one came in 1.6 s)
    tr = pc.Trainer(m, text, batch_size=4, seq_length=16, optimizer=pc.optim.Adam(m),
                    val_fraction=0.01, eval_every=None, eval_every_seconds=0.25,
                    checkpoint_each_epoch=False)
    tr.run(seconds=1.6)
    evals = [h["step"] for h in tr.val_history]
    epoch_ends = {s for s in range(1, tr.step_count + 1)
                  if s % tr.batches.chunks_per_epoch == 0}
    by_time = [s for s in evals if s not in epoch_ends and s != tr.step_count]
    assert 2 <= len(by_time) <= 7, evals  # about 1.6 / 0.25, fewer when slow to validate
    # and never sooner than 9 of its own validations' time after the last
    tr.last_eval_clock, tr._last_eval_seconds = 10.0, 0.1
    assert not tr.eval_by_time(10.89) and tr.eval_by_time(10.91)
    tr._last_eval_seconds = 0.01
    assert not tr.eval_by_time(10.24) and tr.eval_by_time(10.26)
    with pytest.raises(ValueError, match="eval_every_seconds"):
        pc.Trainer(m, text, eval_every_seconds=0)
