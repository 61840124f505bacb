"""What a training run shows while it runs: a progress bar (tqdm.auto: a
widget in Jupyter, a bar on a terminal) or progress lines, a line at each
validation, samples, and a summary at the end.

:class:`Progress` is a Trainer callback; ``Trainer(progress=True)`` (the
default) adds one, and ``pycharrnn train`` is that same callback with the
options of its flags.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from .backend import get_num_threads, threads_auto
from .config import TrainConfig
from .cpuload import CpuLoad
from .fit import ROSE, advice, diagnose
from .rundir import BEST
from .words import clock, plural

__all__ = ["Progress", "Bar"]

_C = TrainConfig  # the defaults


def end_parts(trainer: Any) -> List[Tuple[str, float]]:
    """What a run's callbacks do at its end, each with its expected seconds
    (``what`` and ``end_seconds()``: curves.png's drawing,
    :class:`pycharrnn.plot.CurvesPlot`), for the budget
    (:func:`pycharrnn.runs.end_cost`) and the note of a run over it."""
    return [(cb.what, cb.end_seconds()) for cb in getattr(trainer, "run_callbacks", None) or ()
            if hasattr(cb, "end_seconds")]


class Progress:
    """Trainer callback: a bar when ``bar`` (and tqdm is installed; with a
    time limit it measures time, elapsed of total and the time left, else
    steps), else a line every ``log_every`` steps; a line at each
    validation; a sample of ``sample_length`` characters at
    ``sample_temperature`` every ``sample_every`` steps and at the end of a
    run that was not stopped by a signal (0: none); at the start of the
    first run the model, the data and ``trainer.notes``; at the end a
    summary. ``quiet``: nothing at all."""

    #: Step events may come after several steps ran (Trainer's steps_per_call) ...
    batched_steps = True

    def __init__(self, bar: bool = True, log_every: int = _C.log_every,
                 sample_every: int = _C.sample_every, sample_length: int = _C.sample_length,
                 sample_temperature: float = _C.sample_temperature, seed: int = _C.seed,
                 quiet: bool = False):
        self.use_bar, self.log_every, self.sample_every = bar, log_every, sample_every
        self.sample_length, self.sample_temperature = sample_length, sample_temperature
        self.seed, self.quiet = seed, quiet
        self.bar = None
        self.started = False
        self.val: Optional[float] = None
        self.t0, self.chars, self.start_step = time.perf_counter(), 0, 0
        self.steps_t0 = self.steps_seconds = 0.0  # Trainer.elapsed at the start; the steps' since
        self.until: Optional[float] = None
        self.seconds: Optional[float] = None
        self.said_load = False  # the note about other programs' load, said once
        self.val_t0: Optional[float] = None  # when the validation in progress began
        self.val_shown = 0.0  # and when its progress was last shown
        #: The kinds of fit said so far ("overfitting" for a gap that grew,
        #: "overfitting risen"): each once a run, so that a run that was
        #: first told its gap grows is also told when validation rises.
        self.fits_said: set = set()
        self.points: List[Dict[str, float]] = []  # step, val_loss, train_loss per validation
        #: How the end's advice writes a setting (field, value) -> str; the
        #: command line names its flags.
        self.option: Optional[Callable[[str, Any], str]] = None

    @classmethod
    def make(cls, progress: Any) -> Optional["Progress"]:
        """The Trainer's ``progress`` argument as a callback: True a Progress
        with the defaults, False or None none, anything else as it is."""
        if progress is True:
            return cls()
        return progress or None

    @classmethod
    def from_config(cls, config: TrainConfig, bar: bool = True, quiet: bool = False
                    ) -> "Progress":
        return cls(bar=bar, log_every=config.log_every, sample_every=config.sample_every,
                   sample_length=config.sample_length,
                   sample_temperature=config.sample_temperature, seed=config.seed, quiet=quiet)

    def due(self, step: int) -> bool:
        """... except at a step that prints a sample of the model as it is then."""
        every = self.sample_every
        return bool(every and step % every == 0 and self.sample_length > 0 and not self.quiet)

    def write(self, msg: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(msg, file=sys.stdout)
        else:
            print(msg, flush=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def rate(self) -> float:
        """Training characters a second: over the steps' own time (the
        Trainer's ``elapsed``), not the validations', saves' and drawings'."""
        return self.chars / max(self.steps_seconds, 1e-9)

    def eta(self, step: int) -> Optional[float]:
        """Seconds left: to the time limit or the last step, whichever is sooner."""
        el, left = self.elapsed(), []
        if self.seconds is not None:
            left.append(self.seconds - el)
        if self.until is not None and step > self.start_step:
            left.append((self.until - step) * el / (step - self.start_step))
        return max(0.0, min(left)) if left else None

    # ------------------------------------------------------------- the run
    def on_run_start(self, trainer: Any, until: Optional[float],
                     seconds: Optional[float]) -> None:
        self.t0, self.chars, self.start_step = time.perf_counter(), 0, trainer.step_count
        self.steps_t0, self.steps_seconds = trainer.elapsed, 0.0
        self.until = None if until is None or math.isinf(until) else until
        self.seconds = seconds
        if not self.started and not self.quiet:
            self.started = True
            for note in trainer.notes:
                print(note, flush=True)
            print(self._header(trainer), flush=True)
        self.bar = self._make_bar(trainer) if self.use_bar and not self.quiet else None

    def _header(self, trainer: Any) -> str:
        model, b = trainer.model, trainer.batches
        workers = plural(get_num_threads(), "thread")
        if threads_auto():  # the governor picks the team (set_num_threads)
            workers = f"up to {workers}"
        group = trainer.parallel.group
        if group is not None:
            workers = f"{group.size} ranks x {workers} ({b.rows} of the " \
                      f"{b.batch_size} streams each)"
        total = b.ids.size + trainer.val_ids.size
        where = f" -> {trainer.run_dir}" if trainer.run_dir is not None else ""
        return (f"{model}\n{plural(total, 'character')} ({b.ids.size:,} for training, "
                f"{trainer.val_ids.size:,} for validation), "
                f"{plural(model.vocab_size, 'symbol')}, {trainer.optimizer!r}, {workers}{where}")

    def _make_bar(self, trainer: Any):
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return None
        if self.seconds is not None:
            fmt = ("{desc}: {percentage:3.0f}%|{bar}| {elapsed} of "
                   + tqdm.format_interval(self.seconds) + ", ETA {remaining}{postfix}")
            return tqdm(total=self.seconds, desc="training", bar_format=fmt, dynamic_ncols=True)
        total = None if self.until is None else max(0, int(self.until) - trainer.step_count)
        return tqdm(total=total, unit="step", dynamic_ncols=True, desc="training", initial=0)

    def validating(self, done: int, total: int) -> None:
        """The progress of a validation (the Trainer's ``evaluate``): the
        bar's label reads "validating N%" while it runs; without a bar a
        line says how far it is every 10 s once it has run 10 s."""
        now = time.perf_counter()
        if self.val_t0 is None:
            self.val_t0 = self.val_shown = now
        if self.quiet or done >= total:
            if self.bar is not None:
                self.bar.set_description_str("training", refresh=False)
            return
        wait = 0.25 if self.bar is not None else 10.0
        if now - self.val_shown < wait:
            return
        self.val_shown = now
        pct = f"validating {100 * done // max(total, 1)}%"
        if self.bar is not None:
            self._follow_clock()
            self.bar.set_description_str(pct, refresh=True)
        else:
            self.write(f"{pct} ({done:,} of {plural(total, 'character')}, "
                       f"{clock(now - self.val_t0)})")

    def __call__(self, trainer: Any, event: str, m: Dict[str, Any]) -> None:
        if event == "eval":
            self.val, self.val_t0 = m["val_loss"], None
            self.write(f"step {m['step']:6d}  validation loss {m['val_loss']:.4f} "
                       f"({m['val_bpc']:.3f} bits/char)")
            self.points.append({"step": m["step"], "val_loss": m["val_loss"],
                                "train_loss": _loss_now(trainer), "epoch": m["epoch"]})
            fit = diagnose(self.points, capacity=_capacity(trainer))
            said = fit.kind + (" risen" if fit.risen else "")
            if fit.kind and said not in self.fits_said and not self.quiet:
                self.write(f"note: {fit.kind}: {fit.why}")
                self.fits_said.add(said)
            cpu = m.get("cpu")
            if cpu is not None and CpuLoad.busy(cpu) and not self.said_load:
                self.said_load = True
                self.write(f"note: {CpuLoad.describe(cpu)}: training is slower than on an "
                           "idle machine (the kernels' threads adapt to it)")
            return
        if event != "step":
            return
        self.chars += trainer.batches.batch_size * trainer.batches.seq_length
        self.steps_seconds = trainer.elapsed - self.steps_t0
        s = m["step"]
        if self.bar is not None:
            post = {"loss": f"{m['loss']:.3f}", "ema": f"{m['ema_loss']:.3f}",
                    "chars/s": f"{self.rate():,.0f}"}
            if self.val is not None:
                post["val"] = f"{self.val:.3f}"
            if self.seconds is not None:
                self.bar.set_postfix({"step": str(s), **post}, refresh=False)
                self._follow_clock()
            else:
                self.bar.set_postfix(post, refresh=False)
                self.bar.update(1)
        elif not self.quiet and (s % self.log_every == 0 or s == self.start_step + 1):
            eta = self.eta(s)
            self.write(f"step {s:6d}  loss {m['loss']:.4f} ({m['bpc']:.3f} bits/char)  "
                       f"ema {m['ema_loss']:.4f}  lr {m['lr']:.3g}  epoch {m['epoch']:.3f}  "
                       f"{self.rate():,.0f} chars/s  {clock(self.elapsed())}"
                       + (f"  ETA {clock(eta)}" if eta is not None else ""))
        if self.due(s):
            text = trainer.model.sample(self.sample_length,
                                        temperature=self.sample_temperature, seed=s)
            self.write(f"--- sample at step {s} ---\n{text}\n---")

    def _follow_clock(self) -> None:
        """A time budget's bar shows the time spent (a validation's too, so
        that its ETA falls while it runs, and where the run ended when closed)."""
        if self.seconds is not None:
            self.bar.update(min(self.elapsed(), self.seconds) - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self._follow_clock()
            self.bar.close()
            self.bar = None

    def _end_notes(self, trainer: Any) -> List[str]:
        """What the summary adds: a run over its time budget says why, and
        other programs' load on the cores, if any was seen, is said."""
        notes = []
        el = self.elapsed()
        if self.seconds is not None and el > self.seconds + max(2.0, 0.03 * self.seconds):
            parts = [f"its last validation took {trainer._last_eval_seconds:.1f} s",
                     f"its last save {trainer._last_save_seconds:.1f} s"] + \
                [f"{what} {s:.1f} s" for what, s in end_parts(trainer)]
            notes.append(f"note: the run took {clock(el)} of its {clock(self.seconds)}: "
                         + ", ".join(parts[:-1]) + " and " + parts[-1])
        heavy = self._validation_note(trainer)
        if heavy:
            notes.append(heavy)
        fit = self._fit_note(trainer)
        if fit:
            notes.append(fit)
        busy = [w for w in trainer.cpu_load if CpuLoad.busy(w)]
        if busy:
            mean = {k: sum(w[k] for w in busy) / len(busy) for k in busy[0]}
            notes.append(f"note: at {plural(len(busy), 'validation')} of "
                         f"{len(trainer.cpu_load)}, {CpuLoad.describe(mean)}")
        return notes

    def _validation_note(self, trainer: Any) -> str:
        """The summary's line when the last validation took over half of the
        run's time budget (the steps got less than half): what to change."""
        val, seconds = trainer._last_eval_seconds, self.seconds
        if seconds is None or val <= 0.5 * seconds:
            return ""
        opt = self.option or (lambda k, v: f"{k}={v}")
        tip = f"a longer budget: {opt('seconds', f'{4 * val:.0f}')}"
        fraction = getattr(trainer, "val_fraction", None)
        if fraction:  # a quarter of the budget for it
            less = float(f"{fraction * 0.25 * seconds / val:.1g}")
            tip += f", or less text held out: {opt('val_fraction', f'{less:g}')} (now {fraction:g})"
        return (f"note: validation took {val:.1f} s of the {clock(seconds)} budget, so the "
                f"steps got less than half of it; for a better model try {tip}")

    def _fit_note(self, trainer: Any) -> str:
        """The summary's line on over- or underfitting (or a wide gap), with
        the one change to try; empty when the run is neither."""
        if not self.points:
            return ""
        last = self.points[-1]
        fit = diagnose(self.points, final=True, capacity=_capacity(trainer))
        if not fit.kind:
            return ""
        tip = advice(fit, vars(trainer.model.model_config()), self.seconds, self.option)
        best = min(p["val_loss"] for p in self.points)
        if trainer.run_dir is not None and best < last["val_loss"] - ROSE:
            tip += f" ({BEST} holds the model at its best, {best:.3f})"
        label = "" if fit.kind == "apart" else f"{fit.kind}: "
        return f"note: {label}{fit.why}" + (f"; {tip}" if tip else "")

    def on_run_end(self, trainer: Any, signum: Optional[int]) -> None:
        """Close the bar; the summary (unless quiet); a sample unless a signal
        stopped the run (``quiet`` silences progress, not the sample asked for)."""
        self.close()
        if not trainer.history or trainer.step_count <= self.start_step:
            return
        if not self.quiet:
            recent = min(RECENT, len(trainer.history))
            msg = (f"done: step {trainer.step_count}, {self.rate():,.0f} chars/s, train loss "
                   f"{_recent_loss(trainer):.4f} (mean of the last {plural(recent, 'step')})")
            if trainer.val_history:
                v = trainer.val_history[-1]["val_loss"]
                msg += f", validation loss {v:.4f} ({v / math.log(2):.3f} bits/char)"
            print(msg, flush=True)
            for note in self._end_notes(trainer):
                print(note, flush=True)
        if signum is None and self.sample_length > 0 and trainer.model.vocab is not None:
            print("--- sample ---")
            print(trainer.model.sample(self.sample_length,
                                       temperature=self.sample_temperature, seed=self.seed))


#: The training loss the summary and the fit notes give: the mean of this
#: many last steps (the moving average lags a falling loss by about
#: 1 / (1 - ema_decay) steps, 100 by default).
RECENT = 50


def _recent_loss(trainer: Any) -> float:
    """The mean training loss of the last :data:`RECENT` steps (NaN before any)."""
    recent = trainer.history[-min(RECENT, len(trainer.history)):]
    return sum(h["loss"] for h in recent) / len(recent) if recent else math.nan


def _capacity(trainer: Any) -> float:
    """The model's parameters per training character."""
    return trainer.model.num_params / max(1, trainer.batches.ids.size)


def _loss_now(trainer: Any) -> float:
    """The training loss at the current step, without the lag of a mean over
    a falling loss: the least-squares line through the last :data:`RECENT`
    steps' losses, at the last step."""
    recent = trainer.history[-min(RECENT, len(trainer.history)):]
    if len(recent) < 3:
        return _recent_loss(trainer)
    s = [float(h["step"]) for h in recent]
    x = [float(h["loss"]) for h in recent]
    ms, mx = sum(s) / len(s), sum(x) / len(x)
    var = sum((a - ms) ** 2 for a in s)
    slope = sum((a - ms) * (b - mx) for a, b in zip(s, x)) / var if var else 0.0
    return mx + slope * (s[-1] - ms)


class Bar:
    """Progress of one long operation outside training (a validation of a
    large text, a long sample), as a callable ``bar(done, total)``: a tqdm
    bar on stderr (a widget in Jupyter) that appears only once the operation
    has run ``delay`` seconds, so that short ones stay silent; without tqdm
    a line on stderr now and then. A context manager (closes the bar)."""

    def __init__(self, desc: str, unit: str = "char", delay: float = 1.0):
        self.desc, self.unit, self.delay = desc, unit, delay
        self.t0 = time.perf_counter()
        self.bar: Any = None
        self.shown = 0.0  # when the last line was printed (without tqdm)

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if now - self.t0 < self.delay:
            return
        if self.bar is None:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, desc=self.desc, unit=self.unit, unit_scale=True,
                                dynamic_ncols=True, leave=False, file=sys.stderr)
            else:
                self.bar = False
        if self.bar is False:
            if now - self.shown >= 10.0 or done >= total:
                self.shown = now
                print(f"{self.desc}: {done:,} of {plural(total, self.unit)} "
                      f"({100.0 * done / max(total, 1):.0f}%)", file=sys.stderr, flush=True)
            return
        self.bar.total = total
        self.bar.update(done - self.bar.n)

    def __enter__(self) -> "Bar":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar:
            self.bar.close()
