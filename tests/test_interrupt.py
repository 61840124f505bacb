"""Ctrl-C and SIGTERM at random moments of `pycharrnn train`: the run stops
after its step, validates, writes latest.npz, says which step it saved and
how to continue, and exits 130 (SIGINT) or 143 (SIGTERM). A second signal
abandons the save and leaves the checkpoint before it whole. Resumed again
and again, the run must equal one that was never interrupted, bit for bit.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pycharrnn.checkpoint import read_arrays
from pycharrnn.metrics import read_metrics
from test_kill import _check_run_dir, _text

COMMON = ["--checkpoint-every", "25", "--eval-every", "30", "--no-bar", "--log-every", "10",
          "--sample-length", "0", "--threads", "1"]
MODEL = ["--cell", "gru", "--hidden-size", "32", "--layers", "2", "--embedding-dim", "8",
         "--batch-size", "8", "--seq-length", "24", "--seed", "7", "--optimizer", "adam",
         "--schedule", "plateau", "--dropout", "0.1"]


def _ctrl_c_as_in_a_terminal() -> None:
    """preexec_fn: SIGINT's default action in the child, as a terminal's
    shell gives it. A shell's background job (``nohup pytest &``) ignores
    SIGINT, and a child inherits that, so Ctrl-C would never reach it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(data: Path, out: Path, cwd: Path, steps: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pycharrnn", "train", "--out", str(out),
           "--steps", str(steps)] + COMMON
    cmd += ["--resume"] if (out / "latest.npz").exists() else [str(data)] + MODEL
    return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_ctrl_c_as_in_a_terminal)


class _ProgressLines:
    """A process's stdout read line by line in a thread (the CLI flushes each
    progress line), so that the test can wait for progress and time at once."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self.steps = 0  # progress lines seen
        self.done = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            with self._cond:
                self.lines.append(line)
                self.steps += line.startswith("step") and " loss " in line
                self._cond.notify_all()
        with self._cond:
            self.done = True
            self._cond.notify_all()

    def wait(self, lines: int, timeout: float) -> None:
        """Until ``lines`` more progress lines, the end of output, or ``timeout``."""
        with self._cond:
            target = self.steps + lines
            self._cond.wait_for(lambda: self.done or self.steps >= target, timeout)

    def text(self) -> str:
        self._thread.join()
        return "".join(self.lines)


def _wait_for_handlers(p: subprocess.Popen) -> None:
    """Until the process catches SIGTERM (its SigCgt mask in /proc), that is,
    until pycharrnn's main has set its handlers. A signal before that meets
    Python's start-up, not pycharrnn: SIGTERM kills, but Ctrl-C's
    KeyboardInterrupt may surface inside an import as anything (numpy's C
    init turns it into an ImportError, site's .pth files print and go on)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and p.poll() is None:
        try:
            with open(f"/proc/{p.pid}/status") as f:
                caught = next(int(line.split()[1], 16) for line in f
                              if line.startswith("SigCgt:"))
        except (OSError, StopIteration, ValueError):
            return  # no /proc here: no wait
        if caught >> (signal.SIGTERM - 1) & 1:
            return
        time.sleep(0.002)


def test_signals_at_random_moments_then_resume_is_bit_exact(tmp_path):
    rng = random.Random(11)
    data = tmp_path / "text.txt"
    data.write_text(_text(), encoding="utf-8")
    # 20 sessions, each stopped within about 100 steps (a random moment: 50): at most
    # about 1,500 steps on any machine; step 520-550 here
    steps = 2000
    ref = tmp_path / "uninterrupted"
    p = _start(data, ref, tmp_path, steps)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]

    out = tmp_path / "interrupted"
    last, saved_messages, doubles = 0, 0, 0
    for i in range(20):
        p = _start(data, out, tmp_path, steps)
        sig = rng.choice([signal.SIGINT, signal.SIGTERM])
        progress = _ProgressLines(p.stdout)
        if rng.random() < 0.5:  # at a random time: startup, a step, a write
            _wait_for_handlers(p)
            # at most 5 progress lines (50 steps) on, whatever the machine's speed
            progress.wait(5, rng.uniform(0.0, 0.45))
        else:  # after 1-10 progress lines (10 steps apart): in mid-training
            progress.wait(rng.randint(1, 10), 120)
            # a few steps on, so that it may land in a step, a write or an eval
            time.sleep(rng.uniform(0, 0.02))
        if p.poll() is not None:
            pytest.fail(f"the run ended before signal {i}; make it longer")
        p.send_signal(sig)
        double = rng.random() < 0.3
        if double:  # a second signal soon after: abandon whatever is under way
            time.sleep(rng.uniform(0.0, 0.05))
            if p.poll() is None:
                p.send_signal(sig)
                doubles += 1
        stdout = progress.text()
        stderr = p.stderr.read()
        p.wait(timeout=120)
        # After the run, pycharrnn's handlers are gone: the default action kills.
        assert p.returncode in (128 + sig, -sig), (p.returncode, stdout[-2000:], stderr[-2000:])
        step = _check_run_dir(out)
        assert step >= last, f"latest.npz went back from step {last} to {step}"
        m = re.search(r"saved step (\d+) to (.+); continue with: pycharrnn train --out (\S+) "
                      rf"--resume --steps {steps}\n", stderr)
        if m:
            saved_messages += 1
            assert int(m.group(1)) == step  # the message tells the truth
            tail = [ln for ln in stdout.rstrip().splitlines() if not ln.startswith("note: ")]
            assert tail[-1].startswith("done: step")  # then only the summary's notes
            h, _ = read_arrays(out / "latest.npz")
            # the run validated at its end: best_val_loss covers the last step
            evals = [e for e in read_metrics(out)[1] if e["step"] == step]
            assert evals and h["extra"]["trainer"]["best_val_loss"] <= evals[-1]["val_loss"]
        elif p.returncode == 128 + sig:
            assert "interrupted" in stderr or "stopped before the first step" in stderr, stderr
        last = step
    assert saved_messages >= 8, saved_messages
    assert last < steps

    p = _start(data, out, tmp_path, steps)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    assert not list(out.glob(".*.tmp"))
    h_ref, a_ref = read_arrays(ref / "latest.npz")
    h_out, a_out = read_arrays(out / "latest.npz")
    for k in a_ref:
        if k.startswith(("param/", "optim/", "train/")):
            assert np.array_equal(a_ref[k], a_out[k]), k
    for k in ("step", "loss", "lr", "grad_norm"):
        assert np.array_equal(a_ref[f"history/{k}"], a_out[f"history/{k}"]), k
    t_ref, t_out = h_ref["extra"]["trainer"], h_out["extra"]["trainer"]
    for k in ("step", "epoch", "position", "ema_sum"):
        assert t_ref[k] == t_out[k], k
    assert h_ref["extra"]["rng"] == h_out["extra"]["rng"]
    assert h_ref["extra"]["schedule"] == h_out["extra"]["schedule"]
    # Every scheduled validation of the uninterrupted run is in the other
    # (which also validated wherever it was stopped), with the same loss.
    got = {e["step"]: e["val_loss"] for e in read_metrics(out)[1]}
    for e in read_metrics(ref)[1]:
        assert got[e["step"]] == e["val_loss"], e
    print(f"20 signals ({doubles} doubled, {saved_messages} clean saves, the last at step "
          f"{last} of {steps}): bit-exact")


def test_a_second_signal_during_a_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    # In process: the second Ctrl-C raises in the middle of writing latest.npz.
    import pycharrnn as pc
    from pycharrnn import checkpoint

    text = _text()[:4000]
    m = pc.CharRNN(pc.Vocab.from_text(text), hidden_size=8, cell="gru", seed=0)
    tr = pc.Trainer(m, text, batch_size=2, seq_length=8, checkpoint_dir=tmp_path)
    tr.run(steps=3)
    before = (tmp_path / "latest.npz").read_bytes()
    real_savez = np.savez

    def interrupted_savez(f, **arrays):
        real_savez(f, **arrays)
        f.flush()  # the bytes are on disk, in the temporary file
        assert list(tmp_path.glob(".latest.npz.*.tmp"))
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.np, "savez", interrupted_savez)
    with pytest.raises(KeyboardInterrupt):
        tr.run(steps=1, validate_at_end=False)
    assert tr.step_count == 4
    assert (tmp_path / "latest.npz").read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp"))
    monkeypatch.setattr(checkpoint.np, "savez", real_savez)
    assert pc.Trainer.resume(tmp_path, text).step_count == 3


def test_a_time_budget_run_stopped_says_how_much_time_is_left(tmp_path):
    data = tmp_path / "text.txt"
    data.write_text(_text(), encoding="utf-8")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "pycharrnn", "train", str(data), "--out", str(out),
           "--time", "60", "--recipe", "none", "--schedule", "cosine", "--hidden-size", "16",
           "--batch-size", "4", "--seq-length", "16", "--no-bar", "--log-every", "10",
           "--sample-length", "0", "--threads", "1"]
    p = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, preexec_fn=_ctrl_c_as_in_a_terminal)
    for line in p.stdout:
        if line.startswith("step") and " loss " in line and not line.startswith("step      1 "):
            break
    started = time.perf_counter()
    p.send_signal(signal.SIGINT)
    _, stderr = p.communicate(timeout=120)
    assert p.returncode == 130, stderr
    m = re.search(r"continue with: pycharrnn train --out \S+ --resume --time (\d+)\n", stderr)
    assert m, stderr
    left = int(m.group(1))
    assert 50 <= left <= 60  # the session's 60 s less the few it ran
    # resumed, the cosine carries on from the clock it had reached
    h, _ = read_arrays(out / "latest.npz")
    clock = h["extra"]["trainer"]["clock"]
    assert 0 < clock < 60 - left + (time.perf_counter() - started) + 1
    assert h["extra"]["schedule"]["config"]["seconds"] == 60


def test_an_interruption_is_found_inside_the_exception_it_became():
    from pycharrnn.signals import Interrupted as _Interrupted, interrupted_by as _interrupted_by

    assert _interrupted_by(ValueError("x")) is None
    stop = _Interrupted(signal.SIGTERM)
    try:  # a signal inside an extension module's init: the import fails
        try:
            raise stop
        except _Interrupted as e:
            raise ImportError("initialization failed") from e
    except ImportError as e:
        assert _interrupted_by(e) == signal.SIGTERM
    try:  # inside a class body's __set_name__: a RuntimeError during it
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("Error calling __set_name__")
    except RuntimeError as e:
        assert _interrupted_by(e) == signal.SIGINT
    a, b = ValueError("a"), ValueError("b")
    a.__context__, b.__context__ = b, a  # a cycle ends the walk
    assert _interrupted_by(a) is None


def test_drawing_the_curves_never_swallows_a_signal(tmp_path, monkeypatch):
    import pycharrnn as pc
    from pycharrnn import plot
    from pycharrnn.signals import Interrupted

    text = _text()[:3000]
    m = pc.CharRNN(pc.Vocab.from_text(text), hidden_size=8, seed=0)
    tr = pc.Trainer(m, text, batch_size=2, seq_length=8, checkpoint_dir=tmp_path)
    tr.run(steps=2)

    def cut_short(*a, **k):
        try:
            raise Interrupted(signal.SIGTERM)
        except Interrupted as e:
            raise ImportError("initialization failed") from e

    monkeypatch.setattr(plot, "plot_curves", cut_short)
    monkeypatch.setattr(plot, "_HINTED", [])
    logged = []
    with pytest.raises(Interrupted):
        plot.CurvesPlot(tmp_path, log=logged.append).draw(tr)
    assert not logged  # not taken for a missing matplotlib

    def missing(*a, **k):
        raise ImportError("no matplotlib")

    monkeypatch.setattr(plot, "plot_curves", missing)
    plot.CurvesPlot(tmp_path, log=logged.append).draw(tr)  # a real ImportError: a hint, the run goes on
    assert logged and "pip install" in logged[0]


# Run as `python -c DRIVER train ...`: the first import of an extension module
# that runs Python code during its init (matplotlib's ft2font makes its enums
# with the enum module) gets SIGINT then SIGTERM, so that the second signal's
# exception is raised inside that init, which turns it into an ImportError.
DRIVER = r'''
import enum, os, signal, sys
from importlib.machinery import ExtensionFileLoader
from pycharrnn import cli

fired = []
real = enum.EnumMeta.__call__

def call(cls, *args, **kwargs):
    f = sys._getframe(1)
    mod = (f.f_locals.get("args") or (None,))[0] \
        if f.f_code.co_name == "_call_with_frames_removed" else None
    spec = getattr(mod, "__spec__", None)
    if not fired and isinstance(getattr(spec, "loader", None), ExtensionFileLoader):
        fired.append(mod.__name__)
        sys.stderr.write(f"signals inside the import of {mod.__name__}\n")
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
    return real(cls, *args, **kwargs)

enum.EnumMeta.__call__ = call
cli.entry()
'''


def test_a_signal_inside_an_extension_modules_import_ends_the_run_cleanly(tmp_path):
    # Interpreter teardown after such a failed import aborted the process
    # ("Fatal Python error: PyThreadState_Get", exit -6), and the plot took
    # the ImportError for a missing matplotlib and carried on.
    pytest.importorskip("matplotlib")
    data = tmp_path / "text.txt"
    data.write_text(_text(), encoding="utf-8")
    out = tmp_path / "run"
    cmd = [sys.executable, "-c", DRIVER, "train", str(data), "--out", str(out), "--steps",
           "40", "--eval-every", "10", "--checkpoint-every", "5", "--hidden-size", "16",
           "--batch-size", "4", "--seq-length", "16", "--no-bar", "--sample-length", "0",
           "--threads", "1", "--recipe", "none"]
    p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       preexec_fn=_ctrl_c_as_in_a_terminal)
    if "signals inside the import of" not in p.stderr:
        pytest.skip("no extension module here runs Python code in its init during the run")
    assert "Fatal Python error" not in p.stderr, p.stderr[-3000:]
    assert p.returncode == 128 + signal.SIGTERM, (p.returncode, p.stderr[-3000:])
    assert "interrupted (SIGTERM)" in p.stderr, p.stderr[-3000:]
    assert "needs matplotlib" not in p.stdout
    assert _check_run_dir(out) > 0


SWALLOWER = r'''
import os, signal, sys, time
from pycharrnn import cli

def train(args):  # a library that catches everything swallows the abandon
    os.write(1, b"started\n")
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    except BaseException:
        pass
    return 0

cli.train.run = train
cli.entry()
'''


SWALLOWED_AT_START = r'''
import os, signal, sys, time
from pycharrnn import cli, data

real = data.load_text

def load_text(*args):  # reading the text, something swallows the signal's exception
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    except BaseException:
        pass
    return real(*args)

data.load_text = load_text
cli.entry()
'''


def test_a_swallowed_signal_still_stops_the_command(tmp_path):
    p = subprocess.run([sys.executable, "-c", SWALLOWER, "train", "x", "--out", "y",
                        "--steps", "1"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert p.stdout == "started\n"
    assert p.returncode == 128 + signal.SIGTERM, (p.returncode, p.stderr)
    assert "interrupted (SIGTERM)" in p.stderr

    # during the start: training does not begin
    data = tmp_path / "text.txt"
    data.write_text(_text(), encoding="utf-8")
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "-c", SWALLOWED_AT_START, "train", str(data), "--out",
                        str(out), "--steps", "50", "--hidden-size", "8", "--no-bar",
                        "--threads", "1", "--recipe", "none"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 128 + signal.SIGTERM, (p.returncode, p.stderr)
    assert "interrupted (SIGTERM)" in p.stderr
    assert "step" not in p.stdout and not (out / "latest.npz").exists()


def test_a_signal_during_a_long_sample_says_what_it_stopped(tmp_path):
    # A sample of 10^8 characters without streaming ran silent for minutes,
    # and SIGTERM then spoke of checkpoints, which sampling never writes.
    data = tmp_path / "text.txt"
    data.write_text(_text(), encoding="utf-8")
    out = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "pycharrnn", "train", str(data), "--out", str(out),
                    "--steps", "2", "--hidden-size", "16", "--batch-size", "4",
                    "--seq-length", "16", "--no-bar", "--sample-length", "0"],
                   cwd=tmp_path, check=True, capture_output=True)
    p = subprocess.Popen([sys.executable, "-m", "pycharrnn", "sample", str(out), "--length",
                          "100000000", "--no-stream", "--seed", "1"], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_handlers(p)
    time.sleep(3.0)  # past the second after which the progress shows
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 143, stderr
    assert "sampling" in stderr.split("interrupted")[0]  # the progress, before the signal
    assert stderr.rstrip().endswith("interrupted (SIGTERM); sampling stopped (it writes no "
                                     "file)"), stderr
    assert "checkpoint" not in stderr and stdout == ""
