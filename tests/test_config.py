"""One configuration: every default of the library, the command line and the
recipes comes from pycharrnn.config, and a run made from Python is the run
the command line makes (the same files, usable by every command)."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import signal

import numpy as np
import pytest

import pycharrnn as pc
from pycharrnn import cli as cli_pkg, config, recipes
from pycharrnn.cli.args import DEFAULTS
from pycharrnn.cli.train import PYTHON_ONLY
from pycharrnn.config import ModelConfig, TrainConfig
from pycharrnn.progress import Progress
from test_cli import cli  # run the command in a subprocess

TEXT = "to be or not to be, that is the question: whether 'tis nobler in the mind\n" * 40


def _subcommand(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in cli_pkg.parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _defaults(fn) -> dict:
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


def test_every_config_field_is_a_flag_that_shows_the_library_default():
    train = _subcommand("train")
    by_dest = {a.dest: a for a in train._actions}
    fields = set(config.MODEL_KEYS) | set(config.TRAIN_KEYS)
    assert fields - set(by_dest) == set(PYTHON_ONLY)
    text = " ".join(train.format_help().split())
    for name in fields - set(PYTHON_ONLY):
        a = by_dest[name]
        assert a.default is argparse.SUPPRESS, name  # unset flags take the config's value
        default = DEFAULTS[name]
        if default is not None and name != "eval_every":
            assert f"(default: {default})" in " ".join(a.help.split()), (name, a.help)
    assert f"(default: {ModelConfig.hidden_size})" in text
    # a command line that sets nothing gives the configs' defaults
    args = cli_pkg.parser().parse_args(["train", "x.txt", "--out", "r", "--steps", "5"])
    given = {k: v for k, v in vars(args).items() if k in fields}
    assert given == {"steps": 5}
    model, train_cfg, recipe = config.resolve(given)
    assert model == ModelConfig() and train_cfg == TrainConfig(steps=5) and recipe is None


def test_library_signatures_take_their_defaults_from_the_configs():
    model_defaults = _defaults(pc.CharRNN.__init__)
    for f in dataclasses.fields(ModelConfig):
        assert model_defaults[f.name] == f.default, f.name
    trainer_defaults = _defaults(pc.Trainer.__init__)
    # (optimizer and schedule are objects there, names in the config)
    shared = set(trainer_defaults) & set(config.TRAIN_KEYS) - {"optimizer", "schedule"}
    assert len(shared) >= 10
    for name in shared:
        assert trainer_defaults[name] == getattr(TrainConfig, name), name
    for name, value in _defaults(Progress.__init__).items():
        if name in config.TRAIN_KEYS:
            assert value == getattr(TrainConfig, name), name
    sample = {a.dest: a.default for a in _subcommand("sample")._actions}
    assert sample["length"] == TrainConfig.sample_length
    assert sample["temperature"] == TrainConfig.sample_temperature
    # the optimizer a Trainer makes by default is the config's
    m = pc.CharRNN(7, seed=0)
    tr = pc.Trainer(m, np.arange(3000) % 7, progress=False)
    assert type(tr.optimizer).__name__.lower() == TrainConfig.optimizer
    assert tr.optimizer.lr == pc.optim.DEFAULT_LR[TrainConfig.optimizer]
    assert tr.optimizer.clip_value == TrainConfig.clip_value


def test_resolve_fills_a_run_as_the_command_line_does():
    m, t, r = config.resolve({"seconds": 60, "hidden_size": 12})
    assert r is recipes.for_budget(60) and t.schedule == "cosine"
    assert m.hidden_size == 12 and m.cell == r.cell  # yours, then the recipe's
    assert t.eval_every is None and t.eval_every_seconds == 60 / config.EVALS_BY_TIME
    m, t, r = config.resolve({"steps": 40, "seconds": 60})
    assert r is None and t.schedule == TrainConfig.schedule and t.eval_every == 1000
    m, t, r = config.resolve({"steps": 40}, recipe="3min")
    assert r.name == "3min" and t.warmup == 4 and t.schedule == "cosine"
    with pytest.raises(TypeError, match="unknown options: colour"):
        config.resolve({"colour": "red"})
    with pytest.raises(ValueError, match="no recipe"):
        config.resolve({"steps": 1}, recipe="fast")


def test_a_run_made_from_python_is_a_run_for_every_command(tmp_path, capsys):
    data = tmp_path / "input.txt"
    data.write_text(TEXT, encoding="utf-8")
    run = tmp_path / "run"
    m = pc.CharRNN(pc.Vocab.from_text(TEXT), hidden_size=16, cell="gru", seed=0)
    tr = pc.Trainer(m, data, batch_size=4, seq_length=16, eval_every=5, run_dir=run)
    tr.run(steps=12)
    out = capsys.readouterr().out
    assert "validation loss" in out and "done: step 12" in out
    assert sorted(p.name for p in run.iterdir()) == [
        "best.npz", "curves.png", "latest.npz", "metrics.jsonl", "run.json"]
    info = json.loads((run / "run.json").read_text())
    assert info["data"] == str(data.resolve()) and info["model"]["cell"] == "gru"
    assert info["train"]["batch_size"] == 4
    # every command works on it
    assert cli(tmp_path, "plot", run).stdout.strip().endswith("curves.png")
    assert json.loads(cli(tmp_path, "info", run).stdout)["step"] == 12
    got = json.loads(cli(tmp_path, "eval", run, "--json").stdout)
    assert got["loss"] == tr.val_history[-1]["val_loss"]
    assert len(cli(tmp_path, "sample", run, "--length", 20, "--seed", 1).stdout) == 21
    cli(tmp_path, "report", run, "--out", tmp_path / "r.html")
    cli(tmp_path, "train", "--out", run, "--resume", "--steps", 20, "--quiet",
         "--sample-length", 0)
    assert pc.load(run).vocab == m.vocab
    back = pc.Trainer.resume(run, progress=False)  # the text run.json names
    assert back.step_count == 20
    steps = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()
             if '"step"' in x and '"eval"' not in x]
    assert [s["step"] for s in steps] == list(range(1, 21))


def test_a_run_made_by_the_command_line_continues_from_python(tmp_path, capsys):
    data = tmp_path / "input.txt"
    data.write_text(TEXT, encoding="utf-8")
    run = tmp_path / "run"
    cli(tmp_path, "train", data, "--out", run, "--steps", 6, "--hidden-size", 8,
         "--batch-size", 2, "--seq-length", 8, "--quiet", "--sample-length", 0, "--seed", 3)
    tr = pc.Trainer.resume(run)
    tr.run(until_step=9)
    assert pc.Trainer.resume(run, TEXT, progress=False).step_count == 9
    # and the same run made from Python from the same configs is the same run
    given = {"steps": 9, "hidden_size": 8, "batch_size": 2, "seq_length": 8, "seed": 3}
    model_cfg, cfg, recipe = config.resolve(given)
    again = pc.Trainer.from_config(TEXT, model_cfg, cfg, run_dir=tmp_path / "again",
                                   progress=False)
    again.run()
    a, b = pc.load(run), pc.load(tmp_path / "again")
    assert np.array_equal(a.flat_params, b.flat_params)


def test_a_run_directory_is_not_overwritten(tmp_path):
    m = pc.CharRNN(pc.Vocab.from_text(TEXT), hidden_size=8, seed=0)
    pc.Trainer(m, TEXT, batch_size=2, seq_length=8, run_dir=tmp_path, progress=False).run(
        steps=2)
    before = (tmp_path / "latest.npz").read_bytes()
    with pytest.raises(pc.RunExistsError, match="already holds a run"):
        pc.Trainer(m, TEXT, batch_size=2, seq_length=8, run_dir=tmp_path)
    assert (tmp_path / "latest.npz").read_bytes() == before


def test_progress_is_a_library_callback(capsys):
    m = pc.CharRNN(pc.Vocab.from_text(TEXT), hidden_size=8, seed=0)
    pc.Trainer(m, TEXT, batch_size=2, seq_length=8, eval_every=4,
               progress=Progress(bar=False, log_every=2, sample_length=30)).run(steps=4)
    out = capsys.readouterr().out
    assert out.startswith("CharRNN(lstm, V=") and "step      2  loss" in out
    assert "step      4  validation loss" in out and "done: step 4" in out
    assert "--- sample ---" in out
    pc.Trainer(m, TEXT, batch_size=2, seq_length=8, progress=False).run(steps=2)
    assert capsys.readouterr() == ("", "")


@pytest.fixture
def interactive_sigint():
    """SIGINT handled as in an interactive session. A shell's background
    job starts with it ignored, and a run leaves an ignored signal ignored
    (pycharrnn/signals.py), so the test would see no Ctrl-C there."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_signal_stops_a_python_run_saved_and_raises(tmp_path, capfd, interactive_sigint):
    m = pc.CharRNN(pc.Vocab.from_text(TEXT), hidden_size=8, seed=0)

    def ctrl_c_at_step_3(trainer, event, metrics):
        if event == "step" and metrics["step"] == 3:
            signal.raise_signal(signal.SIGINT)

    tr = pc.Trainer(m, TEXT, batch_size=2, seq_length=8, run_dir=tmp_path,
                    callbacks=[ctrl_c_at_step_3], steps_per_call=1, progress=False)
    with pytest.raises(pc.Interrupted) as e:
        tr.run(steps=50)
    assert e.value.clean and e.value.signum == signal.SIGINT and e.value.step == 3
    assert isinstance(e.value, KeyboardInterrupt)
    assert pc.Trainer.resume(tmp_path, TEXT, progress=False).step_count == 3
    assert tr.val_history[-1]["step"] == 3  # validated at its end, as any run
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert "SIGINT: stopping after this step" in capfd.readouterr().err
