"""A JSONL metrics log for run directories.

:class:`MetricsLog` is a :class:`~pycharrnn.Trainer` callback that appends one
JSON object per line to ``RUN_DIR/metrics.jsonl``: one per training step and
one per validation. :func:`read_metrics` reads such a file back.

Step lines::

    {"event": "step", "step": 12, "loss": 2.31, "bpc": 3.33, "ema_loss": 4.1,
     "lr": 0.002, "grad_norm": 0.8, "epoch": 0.008, "chars_per_sec": 250000.0,
     "time": 0.41}

and every ``Trainer.grad_norms_every`` steps also ``"grad_norms": {"rnn.weight_hh_l0":
0.31, ...}``, each parameter's gradient norm (before clipping).

Validation lines::

    {"event": "eval", "step": 100, "epoch": 0.07, "val_loss": 2.2,
     "val_bpc": 3.17, "time": 3.2}

``time`` is the number of seconds since the log was opened, when the line
was written: the steps a Trainer makes in one C++ call (``steps_per_call``)
are written together when the call returns, at most about 50 ms after the
first of them ended. Losses are in
nats per character, ``bpc`` in bits per character. A value that is not a
finite number (an infinite ``chars_per_sec`` from a step too short to time) is
written as ``null`` so that every line is strict JSON.

Resuming: a run killed after its last checkpoint may have logged steps past
it. ``MetricsLog(run_dir, resume_step=trainer.step_count)`` first drops every
line with a step above ``resume_step`` (and a truncated last line), writing
the kept lines to a temporary file that then replaces the log (never editing
it in place), and appends after them::

    trainer = pycharrnn.Trainer.resume(run_dir, text)
    with MetricsLog(run_dir, resume_step=trainer.step_count) as log:
        trainer.callbacks.append(log)
        trainer.run(until_step=10_000)
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .checks import check_int, check_optional_int
from .files import atomic_write
from .rundir import METRICS_FILE

__all__ = ["MetricsLog", "read_metrics", "metrics_path", "METRICS_FILE", "rolling_mean",
           "SMOOTHING"]

#: Steps in the rolling mean that smooths a training-loss curve (curves.png,
#: the report).
SMOOTHING = 100


STEP_KEYS = ("step", "loss", "bpc", "ema_loss", "lr", "grad_norm", "epoch", "chars_per_sec")
EVAL_KEYS = ("step", "epoch", "val_loss", "val_bpc")

PathLike = Union[str, "os.PathLike[str]"]


def metrics_path(path_or_run_dir: PathLike) -> Path:
    """The metrics file for ``path_or_run_dir``: the path itself when it names
    a ``.jsonl`` file, else ``path_or_run_dir / "metrics.jsonl"``."""
    p = Path(path_or_run_dir)
    if p.suffix == ".jsonl" and not p.is_dir():
        return p
    return p / METRICS_FILE


def rolling_mean(values: Sequence[float], window: int = SMOOTHING) -> List[float]:
    """Rolling mean of ``values`` over ``window`` steps, centred on each step
    so that it does not lag behind the curve: the one smoothing of a loss
    curve (curves.png and the report draw it). Early on the window is
    narrower (value i averages values i-k..i+k with k = min(window // 2,
    i // 4)) so the mean follows a loss's steep early drop instead of
    smearing it; near the end it holds the values that exist."""
    n = len(values)
    h = max(0, int(window) // 2)
    csum = [0.0]
    for v in values:
        csum.append(csum[-1] + float(v))
    out: List[float] = []
    for i in range(n):
        k = min(h, i // 4)
        lo, hi = i - k, min(n, i + k + 1)
        out.append((csum[hi] - csum[lo]) / (hi - lo))
    return out


def _number(v: Any) -> Optional[float]:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _parse_lines(path: Path) -> Tuple[List[Tuple[str, Dict[str, Any]]], bool, int]:
    """(records, needs_repair, n_bad): the parseable lines of ``path`` as
    (raw line without its newline, parsed object). A last line that does not
    parse (a write cut short) is left out and counted in n_bad; an unterminated
    last line that does parse is kept. needs_repair is True when the file does
    not end as complete lines do (so appending to it as it is would corrupt
    it). A bad line anywhere else raises ValueError naming it."""
    lines = path.read_bytes().split(b"\n")
    tail = lines.pop()  # b"" after a final newline; else an unterminated line
    if tail.strip():
        lines.append(tail)
    needs_repair = bool(tail)
    nonblank = [i for i, raw in enumerate(lines) if raw.strip()]
    last = nonblank[-1] if nonblank else -1
    out: List[Tuple[str, Dict[str, Any]]] = []
    n_bad = 0
    for i in nonblank:
        raw = lines[i]
        try:
            text = raw.decode("utf-8").rstrip("\r")
            obj = json.loads(text)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            if i == last:  # a partial write at the end: tolerated
                n_bad += 1
                needs_repair = True
                continue
            raise ValueError(f"{path}, line {i + 1}: not a metrics record ({e})") from None
        out.append((text, obj))
    return out, needs_repair, n_bad


def read_metrics(path_or_run_dir: PathLike) -> Tuple[List[Dict[str, Any]],
                                                     List[Dict[str, Any]]]:
    """Read a metrics log: ``(steps, evals)``, two lists of dicts in file order
    (each dict is one line, without its "event" key). ``path_or_run_dir`` is
    the ``.jsonl`` file or the run directory holding ``metrics.jsonl``. A
    truncated last line (a run killed mid-write) is ignored; a damaged line
    anywhere else raises ValueError naming it."""
    path = metrics_path(path_or_run_dir)
    if not path.is_file():
        raise FileNotFoundError(f"no metrics log: {path}")
    steps: List[Dict[str, Any]] = []
    evals: List[Dict[str, Any]] = []
    records, _, _ = _parse_lines(path)
    for _, obj in records:
        event = obj.get("event")
        rec = {k: v for k, v in obj.items() if k != "event"}
        if event == "step":
            steps.append(rec)
        elif event == "eval":
            evals.append(rec)
    return steps, evals


class MetricsLog:
    """Trainer callback that appends step and validation metrics to
    ``RUN_DIR/metrics.jsonl`` (one JSON object per line).

    Args:
        run_dir: the run directory (created if needed), or the ``.jsonl`` file.
        resume_step: when the log already exists, first drop its lines with a
            step greater than this (the steps a killed run made after its last
            checkpoint); pass the resumed trainer's ``step_count``.
        flush_every: lines are handed to the operating system at least every
            this many lines, at every validation and checkpoint, and on close.
            The default, 1, writes each step's line before the trainer can
            save that step's checkpoint, so a run killed at any moment and
            resumed loses no line (with more, the lines of the last steps
            before a checkpoint may still sit in the buffer when it is saved).
        overwrite: start an empty log even if one exists.

    Opening an existing log without ``resume_step`` appends to it (a truncated
    last line is dropped first). Use as a context manager, or call
    :meth:`close`.
    """

    def __init__(self, run_dir: PathLike, resume_step: Optional[int] = None,
                 flush_every: int = 1, overwrite: bool = False):
        self._file = None
        flush_every = check_int("flush_every", flush_every, 1)
        resume_step = check_optional_int("resume_step", resume_step, 0)
        self.path = metrics_path(run_dir)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.flush_every = flush_every
        self.resume_step = resume_step
        #: Lines dropped from an existing log when it was opened.
        self.dropped = 0
        if self.path.exists():
            self._prepare_existing(resume_step, overwrite)
        self._file = open(self.path, "a", encoding="utf-8", newline="\n")
        self._pending = 0
        self._t0 = time.perf_counter()

    # --------------------------------------------------------------- opening
    def _prepare_existing(self, resume_step: Optional[int], overwrite: bool) -> None:
        if overwrite:
            self.dropped = sum(1 for line in self.path.read_bytes().split(b"\n")
                               if line.strip())
            self._rewrite([])
            return
        records, damaged, n_bad = _parse_lines(self.path)
        if resume_step is None:
            if not damaged:
                return  # plain append
            keep = [raw for raw, _ in records]
        else:
            keep = []
            for raw, obj in records:
                step = obj.get("step")
                if isinstance(step, (int, float)) and step > resume_step:
                    continue
                keep.append(raw)
            if not damaged and len(keep) == len(records):
                return  # nothing to drop
        self.dropped = len(records) - len(keep) + n_bad
        self._rewrite(keep)

    def _rewrite(self, lines: List[str]) -> None:
        """Replace the log by ``lines`` atomically: a temporary file beside it,
        flushed to disk, then os.replace."""
        data = "".join(line + "\n" for line in lines).encode("utf-8")
        atomic_write(self.path, lambda f: f.write(data))

    # --------------------------------------------------------------- writing
    @property
    def closed(self) -> bool:
        return self._file is None or self._file.closed

    def elapsed(self) -> float:
        """Seconds since the log was opened (the "time" field)."""
        return time.perf_counter() - self._t0

    def _write(self, record: Dict[str, Any], flush: bool) -> None:
        if self.closed:
            raise ValueError(f"the metrics log {self.path} is closed")
        self._file.write(json.dumps(record, allow_nan=False, separators=(", ", ": ")))
        self._file.write("\n")
        self._pending += 1
        if flush or self._pending >= self.flush_every:
            self.flush()

    def log_step(self, metrics: Dict[str, Any]) -> None:
        """Append a step line from a trainer's step metrics."""
        rec: Dict[str, Any] = {"event": "step", "step": int(metrics["step"])}
        for k in STEP_KEYS[1:]:
            rec[k] = _number(metrics.get(k))
        if "grad_norms" in metrics:  # every Trainer.grad_norms_every steps
            rec["grad_norms"] = {k: _number(v) for k, v in metrics["grad_norms"].items()}
        rec["time"] = round(self.elapsed(), 6)
        self._write(rec, flush=False)

    def log_eval(self, metrics: Dict[str, Any]) -> None:
        """Append a validation line (and flush)."""
        val = metrics["val_loss"]
        rec: Dict[str, Any] = {"event": "eval", "step": int(metrics["step"]),
                               "epoch": _number(metrics.get("epoch")),
                               "val_loss": _number(val),
                               "val_bpc": _number(metrics.get("val_bpc",
                                                              float(val) / math.log(2)))}
        cpu = metrics.get("cpu")
        if cpu is not None:  # other programs' load since the last validation (cpuload.py)
            rec["cpu_others"], rec["cpu_this_run"] = cpu["others"], cpu["this_run"]
        rec["time"] = round(self.elapsed(), 6)
        self._write(rec, flush=True)

    #: It only records step metrics: the Trainer may report several steps at once.
    batched_steps = True

    def __call__(self, trainer: Any, event: str, metrics: Dict[str, Any]) -> None:
        if event == "step":
            self.log_step(metrics)
        elif event == "eval":
            self.log_eval(metrics)
        elif event == "checkpoint" and not self.closed:
            self.flush()
        return None  # never stops the run

    def flush(self) -> None:
        if not self.closed:
            self._file.flush()
        self._pending = 0

    def close(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.flush()
            self._file.close()

    def __enter__(self) -> "MetricsLog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"MetricsLog({str(self.path)!r}, {state})"
