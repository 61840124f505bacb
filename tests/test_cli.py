"""The command line end to end, in subprocesses (run from a scratch directory so
the installed package is what gets imported)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pycharrnn as pc
from pycharrnn.evaluation import evaluate

TEXT = "to be or not to be, that is the question: whether 'tis nobler in the mind\n" * 40


def cli(tmp_path, *args, ok=True):
    r = subprocess.run([sys.executable, "-m", "pycharrnn", *map(str, args)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    if ok:
        assert r.returncode == 0, r.stderr + r.stdout
    return r


@pytest.fixture
def data(tmp_path):
    p = tmp_path / "input.txt"
    p.write_text(TEXT, encoding="utf-8")
    return p


def test_train_sample_info_resume(tmp_path, data):
    run = tmp_path / "run"
    r = cli(tmp_path, "train", data, "--out", run, "--steps", 12, "--cell", "gru",
            "--hidden-size", 16, "--batch-size", 4, "--seq-length", 16, "--eval-every", 6,
            "--log-every", 4, "--sample-length", 30, "--seed", 1, "--no-bar")
    assert "step      4" in r.stdout and "validation loss" in r.stdout
    assert "--- sample ---" in r.stdout
    assert (run / "latest.npz").is_file() and (run / "best.npz").is_file()
    m = pc.load(run)
    assert m.cell == "gru" and m.hidden_size == 16

    s1 = cli(tmp_path, "sample", run, "--length", 50, "--seed", 3, "--prime", "to be")
    s2 = cli(tmp_path, "sample", run / "latest.npz", "--length", 50, "--seed", 3,
             "--prime", "to be")
    assert s1.stdout == s2.stdout and s1.stdout.startswith("to be")
    assert len(s1.stdout.rstrip("\n")) == 55

    bad = cli(tmp_path, "sample", run, "--length", 50, "--seed", 3, "--prime", "to bée",
              ok=False)
    assert bad.returncode != 0 and "U+00E9" in bad.stderr
    s3 = cli(tmp_path, "sample", run, "--length", 50, "--seed", 3, "--prime", "to bée",
             "--drop-unknown", "--no-stream")
    assert s3.stdout == s1.stdout  # the prime as the model read it, then the same text

    info = json.loads(cli(tmp_path, "info", run).stdout)
    assert info["cell"] == "gru" and info["num_params"] == m.num_params
    build = json.loads(cli(tmp_path, "info").stdout)
    assert {"openmp", "num_threads", "simd", "cuda", "compiler"} <= set(build)

    r = cli(tmp_path, "train", "--out", run, "--resume", "--steps", 20, "--sample-length", 0)
    assert "resuming" in r.stdout and "step 20" in r.stdout
    assert pc.Trainer.resume(run, TEXT).step_count == 20


def test_errors_are_clear(tmp_path, data):
    r = cli(tmp_path, "train", data, "--out", tmp_path / "r", ok=False)
    assert r.returncode == 2 and "--steps" in r.stderr
    r = cli(tmp_path, "train", "--out", tmp_path / "r", "--steps", 1, ok=False)
    assert r.returncode == 2 and "DATA_FILE" in r.stderr
    r = cli(tmp_path, "sample", tmp_path / "missing.npz", ok=False)
    assert r.returncode == 1 and "missing.npz" in r.stderr
    (tmp_path / "junk.npz").write_bytes(b"not a checkpoint")
    r = cli(tmp_path, "sample", tmp_path / "junk.npz", ok=False)
    assert r.returncode == 1 and "not a pycharrnn checkpoint" in r.stderr
    run = tmp_path / "run"
    cli(tmp_path, "train", data, "--out", run, "--steps", 2, "--hidden-size", 8,
        "--batch-size", 2, "--seq-length", 8, "--sample-length", 0)
    r = cli(tmp_path, "train", data, "--out", run, "--steps", 2, ok=False)
    assert r.returncode == 2 and "--resume" in r.stderr
    r = cli(tmp_path, "train", "--out", run, "--resume", "--steps", 4, "--cell", "rnn",
            ok=False)
    assert r.returncode == 1 and "cell" in r.stderr


def test_python_dash_m_and_version(tmp_path):
    r = cli(tmp_path, "--version")
    assert pc.__version__ in r.stdout


def test_train_writes_metrics_and_plot_and_info(tmp_path, data):
    run = tmp_path / "run"
    r = cli(tmp_path, "train", data, "--out", run, "--epochs", 1, "--cell", "rnn",
            "--hidden-size", 8, "--batch-size", 4, "--seq-length", 16, "--eval-every", 5,
            "--sample-every", 10, "--sample-length", 20, "--no-bar", "--log-every", 5)
    assert "--- sample at step 10 ---" in r.stdout
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in lines if x["event"] == "step"]
    evals = [x for x in lines if x["event"] == "eval"]
    assert [x["step"] for x in steps] == list(range(1, len(steps) + 1))
    assert evals and all("val_loss" in x for x in evals)
    info = json.loads(cli(tmp_path, "info", run).stdout)
    assert info["step"] == len(steps) and info["best_val_loss"] > 0
    pytest.importorskip("matplotlib")
    png = tmp_path / "c.png"
    cli(tmp_path, "plot", run, "--out", png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    assert (run / "curves.png").is_file()


def test_streamed_sample_equals_non_streamed(tmp_path, data):
    run = tmp_path / "run"
    cli(tmp_path, "train", data, "--out", run, "--steps", 3, "--hidden-size", 8,
        "--batch-size", 2, "--seq-length", 8, "--sample-length", 0, "--quiet")
    args = ["sample", run, "--length", 60, "--seed", 5, "--prime", "to", "--top-k", 5,
            "--temperature", 0.9]
    streamed = cli(tmp_path, *args).stdout
    whole = cli(tmp_path, *args, "--no-stream").stdout
    assert streamed == whole and streamed.startswith("to")
    many = cli(tmp_path, "sample", run, "--length", 20, "--seed", 1, "--num-samples", 3).stdout
    assert many.count("--- sample ") == 3
    argmax = cli(tmp_path, "sample", run, "--length", 20, "--argmax", "--prime", "to").stdout
    assert argmax == cli(tmp_path, "sample", run, "--length", 20, "--temperature", 0,
                         "--prime", "to", "--seed", 9).stdout


def test_sample_beam(tmp_path, data):
    run = tmp_path / "run"
    cli(tmp_path, "train", data, "--out", run, "--steps", 30, "--hidden-size", 16,
        "--batch-size", 4, "--seq-length", 16, "--sample-length", 0, "--quiet", "--seed", 2)
    model = pc.load(run)
    # The command line's beam search has repetition control unless --allow-repeats.
    ruled = dict(no_repeat_ngram_size=20, repetition_penalty=1.2, penalty_ngram_size=4)
    r = cli(tmp_path, "sample", run, "--beam", 4, "--length", 40, "--prime", "to be")
    want = model.beam_search("to be", 40, beam_width=4, **ruled)
    assert r.stdout == want + "\n" and want.startswith("to be")
    assert f"log-probability {want.log_prob:.4f}" in r.stderr
    plain = cli(tmp_path, "sample", run, "--beam", 4, "--length", 40, "--prime", "to be",
                "--allow-repeats").stdout
    assert plain == model.beam_search("to be", 40, beam_width=4) + "\n"
    tuned = cli(tmp_path, "sample", run, "--beam", 4, "--length", 40, "--prime", "to be",
                "--no-repeat-ngram", 3, "--repetition-penalty", 1).stdout
    assert tuned == model.beam_search("to be", 40, beam_width=4, no_repeat_ngram_size=3) + "\n"
    stop = cli(tmp_path, "sample", run, "--beam", 3, "--length", 40, "--prime", "to",
               "--stop", " ", "--length-penalty", 0.5).stdout
    assert stop == model.beam_search("to", 40, 3, stop=" ", length_penalty=0.5, **ruled) + "\n"
    # --argmax is beam search with K=1 (with the same control); --allow-repeats
    # makes it the plain argmax sample.
    greedy = cli(tmp_path, "sample", run, "--beam", 1, "--length", 30, "--prime", "t").stdout
    assert greedy == cli(tmp_path, "sample", run, "--argmax", "--length", 30,
                         "--prime", "t").stdout
    assert cli(tmp_path, "sample", run, "--argmax", "--allow-repeats", "--length", 30,
               "--prime", "t").stdout == model.sample(30, "t", temperature=0) + "\n"
    for flags in (["--no-repeat-ngram", 5], ["--repetition-penalty", 2], ["--allow-repeats"]):
        bad = cli(tmp_path, "sample", run, *flags, ok=False)
        assert bad.returncode != 0 and flags[0] in bad.stderr and "--beam" in bad.stderr
    never = cli(tmp_path, "sample", run, "--beam", 2, "--length", 1, "--stop", "ee")
    assert "no text reached --stop" in never.stderr
    for flags, name in ((["--top-k", 3], "--top-k"), (["--num-samples", 2], "--num-samples"),
                        (["--argmax"], "--argmax")):
        bad = cli(tmp_path, "sample", run, "--beam", 2, *flags, ok=False)
        assert bad.returncode != 0 and name in bad.stderr and "--beam" in bad.stderr
    bad = cli(tmp_path, "sample", run, "--length-penalty", 1, ok=False)
    assert bad.returncode != 0 and "--length-penalty" in bad.stderr


def test_progress_bar_with_tqdm(tmp_path, data):
    pytest.importorskip("tqdm")
    r = cli(tmp_path, "train", data, "--out", tmp_path / "run", "--steps", 6, "--hidden-size", 8,
            "--batch-size", 2, "--seq-length", 8, "--sample-length", 0)
    assert "training:" in r.stderr and "6/6" in r.stderr and "chars/s" in r.stderr
    assert "step      1  loss" not in r.stdout  # the bar replaces the progress lines


def _small_run(tmp_path, data, *extra):
    run = tmp_path / "run"
    r = cli(tmp_path, "train", data, "--out", run, "--hidden-size", 12, "--batch-size", 4,
            "--seq-length", 16, "--sample-length", 0, "--no-bar", "--eval-every", 1000,
            *extra)
    return run, r


def test_a_time_limited_run_ends_validated_with_best_and_info(tmp_path, data):
    run, r = _small_run(tmp_path, data, "--time", 1.5, "--cell", "gru")
    info = json.loads(cli(tmp_path, "info", run).stdout)
    assert info["step"] > 0 and info["best_val_loss"] > 0
    assert (run / "best.npz").is_file()
    evals = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()
             if '"eval"' in x]
    assert evals[-1]["step"] == info["step"]  # the last step was validated
    assert f"validation loss {evals[-1]['val_loss']:.4f}" in r.stdout
    # `pycharrnn eval` on the run reproduces that number (same model, same text)
    out = json.loads(cli(tmp_path, "eval", run, "--json").stdout)
    assert out["step"] == info["step"] and math.isclose(out["loss"], evals[-1]["val_loss"],
                                                         rel_tol=1e-12)
    assert math.isclose(out["bits_per_char"], out["loss"] / math.log(2))
    assert out["characters"] == round(len(TEXT) * 0.1)
    line = cli(tmp_path, "eval", run).stdout
    assert f"{out['loss']:.4f} nats/char" in line and "bits/char" in line
    # any other text, as one pass with the state carried
    other = tmp_path / "other.txt"
    other.write_text("whether 'tis nobler to be\n" * 30, encoding="utf-8")
    got = json.loads(cli(tmp_path, "eval", run, other, "--json").stdout)
    m = pc.load(run)
    ids = m.vocab.encode(other.read_text(encoding="utf-8"))
    # (how close evaluate() comes to a plain one-stream loop: test_evaluate.py)
    assert got["loss"] == evaluate(m, ids, 4, 16) and got["predicted"] == ids.size - 1
    # a character the model never saw: named, with the way out
    other.write_text("zebra", encoding="utf-8")
    r = cli(tmp_path, "eval", run, other, ok=False)
    assert r.returncode == 1 and "'z'" in r.stderr and "--drop-unknown" in r.stderr
    # the EMA in the log is a mean of real losses from step 1 (not ln(V))
    steps = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()
             if '"step"' in x and '"eval"' not in x]
    assert math.isclose(steps[0]["ema_loss"], steps[0]["loss"], rel_tol=1e-9)


def test_eval_needs_a_text_without_a_run(tmp_path, data):
    run, _ = _small_run(tmp_path, data, "--steps", 2)
    m = pc.load(run)
    m.save(tmp_path / "model.npz")
    r = cli(tmp_path, "eval", tmp_path / "model.npz", ok=False)
    assert r.returncode == 1 and "TEXT_FILE" in r.stderr
    data.write_text(TEXT + "changed", encoding="utf-8")
    r = cli(tmp_path, "eval", run, ok=False)
    assert r.returncode == 1 and "no longer the text" in r.stderr


def test_bad_files_are_named(tmp_path, data):
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("to be or not to be, caf".encode() + b"\xe9 au lait\n" * 50)
    r = cli(tmp_path, "train", latin, "--out", tmp_path / "r", "--steps", 1, ok=False)
    assert r.returncode == 1
    assert "latin1.txt is not UTF-8 text: byte 0xE9 at offset 23" in r.stderr
    assert "Traceback" not in r.stderr
    not_ckpt = tmp_path / "notes.txt"
    not_ckpt.write_text("hello", encoding="utf-8")
    np.save(tmp_path / "array.npy", np.zeros(3))
    np.savez(tmp_path / "foreign.npz", a=np.zeros(3))
    for f in (not_ckpt, tmp_path / "array.npy", tmp_path / "foreign.npz"):
        for cmd in ("sample", "info", "eval"):
            r = cli(tmp_path, cmd, f, ok=False)
            assert r.returncode == 1 and "not a pycharrnn checkpoint" in r.stderr, (cmd, f)
            assert "allow_pickle" not in r.stderr and "Traceback" not in r.stderr


def test_byte_order_mark_and_crlf_are_dropped(tmp_path):
    p = tmp_path / "bom.txt"
    p.write_bytes(b"\xef\xbb\xbf" + TEXT.replace("\n", "\r\n").encode())
    run = tmp_path / "run"
    cli(tmp_path, "train", p, "--out", run, "--steps", 1, "--hidden-size", 8,
        "--batch-size", 2, "--seq-length", 8, "--sample-length", 0, "--quiet")
    assert pc.load(run).vocab == pc.Vocab.from_text(TEXT)  # no U+FEFF, no \r


@pytest.mark.parametrize("args,flag", [
    (["sample", "RUN", "--top-k", "0"], "--top-k: must be >= 1"),
    (["sample", "RUN", "--top-p", "1.5"], "--top-p: must be <= 1"),
    (["sample", "RUN", "--temperature", "-1"], "--temperature: must be >= 0"),
    (["sample", "RUN", "--temperature", "nan"], "--temperature: must be a finite number"),
    (["sample", "RUN", "--length", "-3"], "--length: must be >= 0"),
    (["sample", "RUN", "--num-samples", "0"], "--num-samples: must be >= 1"),
    (["train", "DATA", "--out", "x", "--steps", "5", "--hidden-size", "0"],
     "--hidden-size: must be >= 1"),
    (["train", "DATA", "--out", "x", "--steps", "5", "--dropout", "1"],
     "--dropout: must be < 1"),
    (["train", "DATA", "--out", "x", "--steps", "5", "--lr", "0"], "--lr: must be > 0"),
    (["train", "DATA", "--out", "x", "--steps", "five"], "--steps: must be an integer"),
    # nothing would be trained and no checkpoint written
    (["train", "DATA", "--out", "x", "--steps", "0"], "--steps: must be >= 1"),
    (["train", "DATA", "--out", "x", "--epochs", "0"], "--epochs: must be > 0"),
    (["train", "DATA", "--out", "x", "--time", "-1"], "--time: must be > 0"),
    (["train", "DATA", "--out", "x", "--steps", "5", "--val-fraction", "1"],
     "--val-fraction: must be < 1"),
])
def test_errors_name_the_flag(tmp_path, data, args, flag):
    args = [str(data) if a == "DATA" else str(tmp_path / "r") if a == "RUN" else a
            for a in args]
    r = cli(tmp_path, *args, ok=False)
    assert r.returncode == 2 and flag in r.stderr, r.stderr
    # one line, the command's one prefix, no usage block
    assert r.stderr.startswith("pycharrnn: error: ") and r.stderr.count("\n") == 1, r.stderr


@pytest.mark.parametrize("args,needle,code", [
    (["train", "missing.txt", "--out", "r", "--steps", "1"], "missing.txt: no such file", 1),
    (["train", "DIR", "--out", "r", "--steps", "1"], ": is a directory", 1),
    (["train", "DATA", "--out", "r", "--steps", "1", "--hiden-size", "8"],
     "unrecognized arguments: --hiden-size 8", 2),
    (["train", "DATA", "--out", "r"], "give --steps N, --epochs E and/or --time SECONDS", 2),
    (["train", "--out", "r", "--steps", "1"], "give a DATA_FILE or --corpus NAME", 2),
    (["train", "--out", "RUN", "--resume", "--steps", "1"], "nothing to resume", 2),
    (["sample", "nowhere"], "nowhere", 1),
    (["trian"], "invalid choice: 'trian'", 2),
    (["report", "--out", "x.html"], "give a RUN_DIR, or --compare RUN_A RUN_B", 2),
])
def test_every_mistake_is_one_line(tmp_path, data, args, needle, code):
    (tmp_path / "adir").mkdir()
    args = [str(data) if a == "DATA" else str(tmp_path / "adir") if a == "DIR" else
            str(tmp_path / "nothing") if a == "RUN" else a for a in args]
    r = cli(tmp_path, *args, ok=False)
    assert r.returncode == code, r.stderr
    assert r.stderr.startswith("pycharrnn: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert needle in r.stderr and "Errno" not in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "r").exists()


def test_threads_above_the_usable_cores_are_obeyed_with_a_warning(tmp_path, data):
    from pycharrnn.backend import usable_cores
    n = usable_cores() + 1
    r = cli(tmp_path, "train", data, "--out", tmp_path / "r", "--steps", 1, "--hidden-size", 8,
            "--batch-size", 2, "--seq-length", 8, "--threads", n, "--no-bar")
    warning = [line for line in r.stderr.splitlines() if "warning" in line]
    assert warning == [f"pycharrnn: warning: --threads {n} is more than the {usable_cores()} "
                       "cores this process may use (its affinity mask and CPU quota); it runs "
                       f"slower than {usable_cores()}: leave it unset to have the team chosen "
                       "while it runs"], r.stderr
    assert json.loads((tmp_path / "r" / "run.json").read_text())["train"]["threads"] == n
    with pytest.warns(UserWarning, match=f"n={n} is more than"):
        pc.set_num_threads(n)
    pc.set_num_threads(None)


def test_a_model_too_large_for_memory_is_refused_before_anything_is_written(
        tmp_path, data, monkeypatch, capsys):
    # The measured case: --hidden-size 20000 (an LSTM of 1.6 billion
    # parameters) on a machine with 24 GiB passed, and the out-of-memory
    # killer ended the run a minute later. Reproduced without allocating it:
    # the check runs before the model is built.
    from pycharrnn import memory
    from pycharrnn.cli import main
    monkeypatch.setattr(memory, "available", lambda: (24 * memory.GiB,
                                                      "this machine has available"))
    code = main(["train", str(data), "--out", str(tmp_path / "r"), "--steps", "1",
                 "--hidden-size", "20000"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith("pycharrnn: error: this model needs about ") and "GiB" in err
    assert "more than the 24.0 GiB this machine has available" in err
    assert "--hidden-size (20000)" in err and "hidden_size" not in err
    assert not (tmp_path / "r").exists()
    needs = memory.training_needs(len(set(TEXT)), pc.ModelConfig(hidden_size=20000), 32, 64)
    assert needs.parts["parameters"] / 4 > 1.6e9  # the count the issue measured
    assert 24 * memory.GiB < needs.total < 40 * memory.GiB


def test_cross_checked_errors_name_flags_too(tmp_path, data):
    r = cli(tmp_path, "train", data, "--out", tmp_path / "r", "--steps", 1,
            "--batch-size", 5000, ok=False)
    assert r.returncode == 1 and "--batch-size" in r.stderr and "batch_size" not in r.stderr


def test_bad_prime_is_refused_before_anything_is_printed(tmp_path, data):
    run, _ = _small_run(tmp_path, data, "--steps", 2)
    for extra in ([], ["--no-stream"], ["--num-samples", "2"]):
        r = cli(tmp_path, "sample", run, "--prime", "to bé", *extra, ok=False)
        assert r.returncode == 1 and r.stdout == "", extra
        assert "--prime" in r.stderr and "U+00E9" in r.stderr
    r = cli(tmp_path, "sample", run, "--stop", "é", ok=False)
    assert r.returncode == 1 and r.stdout == "" and "--stop" in r.stderr


def test_help_shows_every_default(tmp_path):
    from pycharrnn.config import ModelConfig, TrainConfig
    for cmd in ("train", "sample", "eval", "bench", "plot", "info"):
        text = cli(tmp_path, cmd, "--help").stdout
        assert "default" in text or cmd == "info"  # info has no option
    train = " ".join(cli(tmp_path, "train", "--help").stdout.split())
    for needle in (f"--hidden-size HIDDEN_SIZE units per layer (default: "
                   f"{ModelConfig.hidden_size})",
                   "--cell {rnn,gru,lstm} (default: lstm)", "--lr-decay LR_DECAY",
                   "(default: 0.97)", "--eval-every EVAL_EVERY", "(default: 1000;",
                   f"(default: {TrainConfig.sample_temperature})"):
        assert needle in train, needle
    sample = " ".join(cli(tmp_path, "sample", "--help").stdout.split())
    assert "--temperature TEMPERATURE" in sample
    assert f"(default: {TrainConfig.sample_temperature})" in sample
    assert "(default: None)" not in train + sample


def test_every_option_with_a_default_says_it():
    import argparse
    from pycharrnn import cli as cli_mod
    sub = next(a for a in cli_mod.parser()._actions
               if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        text = " ".join(p.format_help().split())
        for a in p._actions:
            d = a.default
            if a.option_strings and not (d is None or d is False or d is argparse.SUPPRESS):
                assert f"(default: {a.default})" in text, (name, a.dest)


def test_time_bar_shows_elapsed_of_total_and_eta(tmp_path, data):
    pytest.importorskip("tqdm")
    r = cli(tmp_path, "train", data, "--out", tmp_path / "run", "--time", 2, "--hidden-size", 8,
            "--batch-size", 2, "--seq-length", 8, "--sample-length", 0)
    assert "of 00:02, ETA" in r.stderr and "step=" in r.stderr


def test_counts_are_worded_right(tmp_path):
    run = tmp_path / "run"
    p = tmp_path / "one.txt"
    p.write_text("a" * 40, encoding="utf-8")
    r = cli(tmp_path, "train", p, "--out", run, "--steps", 1, "--hidden-size", 4,
            "--batch-size", 1, "--seq-length", 8, "--sample-length", 0, "--no-bar",
            "--threads", 1)
    assert "1 symbol," in r.stdout and "1 thread " in r.stdout
    assert "1 symbols" not in r.stdout and "1 threads" not in r.stdout
    assert "mean of the last 1 step)" in r.stdout


def test_import_from_a_source_folder_says_what_to_do(tmp_path):
    # A copy of the package without its compiled core, first on the path (as
    # the root of a clone is); -S keeps an editable install's import hook out.
    import shutil
    import numpy
    src = tmp_path / "clone"
    shutil.copytree(Path(pc.__file__).parent, src / "pycharrnn",
                    ignore=shutil.ignore_patterns("_core*", "__pycache__"))
    site = str(Path(numpy.__file__).parents[1])
    r = subprocess.run([sys.executable, "-S", "-c", "import pycharrnn"], cwd=src,
                       capture_output=True, text=True, timeout=60,
                       env={"PYTHONPATH": f"{src}{os.pathsep}{site}", "PATH": ""})
    assert r.returncode == 1
    assert "ImportError" in r.stderr and "circular" not in r.stderr
    assert "run from another directory" in r.stderr and "pip install -e ." in r.stderr


def test_a_curve_that_cannot_be_drawn_does_not_end_the_run(tmp_path, data, monkeypatch,
                                                            capsys):
    # E.g. a matplotlib left half-imported by an interrupted first import.
    from pycharrnn import cli, plot

    def broken(*a, **k):
        raise AttributeError("module 'matplotlib' has no attribute 'get_data_path'")

    monkeypatch.setattr(plot, "plot_curves", broken)
    run = tmp_path / "run"
    rc = cli.main(["train", str(data), "--out", str(run), "--steps", "8", "--hidden-size", "8",
                   "--batch-size", "2", "--seq-length", "8", "--eval-every", "4",
                   "--sample-length", "0", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0 and (run / "latest.npz").is_file()
    assert err.count("curves.png not drawn: AttributeError") == 1


def test_curves_are_drawn_after_the_validations_checkpoint(tmp_path, data, monkeypatch):
    # A drawing can take a second (the first imports matplotlib): the step
    # validated is saved before it, so a kill during the drawing loses nothing.
    from pycharrnn import cli, plot
    from pycharrnn.checkpoint import read_arrays

    run = tmp_path / "run"
    seen = []

    def record(curves, trainer):
        header, _ = read_arrays(run / "latest.npz")
        seen.append((trainer.val_history[-1]["step"], header["extra"]["trainer"]["step"]))

    monkeypatch.setattr(plot.CurvesPlot, "draw", record)
    rc = cli.main(["train", str(data), "--out", str(run), "--steps", "6", "--hidden-size", "8",
                   "--batch-size", "2", "--seq-length", "8", "--eval-every", "3",
                   "--checkpoint-every", "1", "--sample-length", "0", "--quiet"])
    assert rc == 0
    # the first validation's drawing (later ones wait PLOT_EVERY), then the end's
    assert seen == [(3, 3), (6, 6)]


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path):
    """`pycharrnn sample ... | head`: no "Broken pipe" error, the status
    of a process ended by SIGPIPE (141)."""
    pc.CharRNN(pc.Vocab.from_text(TEXT), hidden_size=8, seed=0).save(tmp_path / "m.npz")
    p = subprocess.Popen([sys.executable, "-m", "pycharrnn", "sample", "m.npz", "--length",
                          "300000", "--seed", "1"], cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.read(10)
    p.stdout.close()  # as `head` does
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141, err
    assert err == ""
