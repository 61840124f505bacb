"""The command line end to end, in subprocesses (run from a scratch directory so
the installed package is what gets imported)."""

import json
import subprocess
import sys

import pytest

import pycharrnn as pc

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
    assert s3.stdout[len("to bée"):] == s1.stdout[len("to be"):]

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


def test_progress_bar_with_tqdm(tmp_path, data):
    pytest.importorskip("tqdm")
    r = cli(tmp_path, "train", data, "--out", tmp_path / "run", "--steps", 6, "--hidden-size", 8,
            "--batch-size", 2, "--seq-length", 8, "--sample-length", 0)
    assert "training:" in r.stderr and "6/6" in r.stderr and "chars/s" in r.stderr
    assert "step      1  loss" not in r.stdout  # the bar replaces the progress lines
