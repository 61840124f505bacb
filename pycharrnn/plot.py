"""Training-curve plots (needs matplotlib: ``pip install "pycharrnn[plot]"``).

:func:`plot_curves` draws one or more runs in one figure: for each run the
per-step training loss (thin, light), its centred rolling mean (solid) and the
validation losses (markers), loss in nats per character against the step,
with bits per character on the right-hand axis. :func:`plot_run` plots a run
directory's ``metrics.jsonl`` (written by :class:`pycharrnn.metrics.MetricsLog`).

matplotlib is imported only when a plot is made, and only through its Agg
canvas: no window opens and pyplot's global state (the backend a notebook
uses) is left alone.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Tuple, Union

from .checks import check_int
from .files import atomic_write
from .metrics import SMOOTHING, read_metrics, rolling_mean
from .rundir import CURVES_FILE

__all__ = ["plot_curves", "plot_run", "rolling_mean", "CURVES_FILE", "CurvesPlot"]


PathLike = Union[str, "os.PathLike[str]"]
Records = Sequence[Mapping[str, Any]]
LN2 = math.log(2.0)


def _matplotlib():
    """(Figure, FigureCanvasAgg), or ImportError telling how to install."""
    try:
        import matplotlib  # noqa: F401  (first: a cached submodule must not hide its absence)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError('plotting needs matplotlib, which is not installed: '
                          'pip install "pycharrnn[plot]" (or pip install matplotlib)') from e
    return Figure, FigureCanvasAgg


def _series(records: Records, key: str) -> Tuple[List[float], List[float]]:
    xs, ys = [], []
    for r in records:
        s, v = r.get("step"), r.get(key)
        if s is None or v is None:
            continue
        v = float(v)
        if math.isfinite(v):
            xs.append(float(s))
            ys.append(v)
    return xs, ys


def _normalize(runs: Any) -> List[Tuple[str, Records, Records]]:
    """runs -> [(label, steps, evals)]. Accepts a dict label -> run directory
    (or metrics file, or (steps, evals)), or a list of (label, steps, evals) or
    (label, run directory)."""
    items: List[Tuple[Any, ...]]
    if isinstance(runs, Mapping):
        items = [(label, value) for label, value in runs.items()]
    elif isinstance(runs, (str, os.PathLike)):
        raise TypeError("runs must be a list of (label, steps, evals) or a dict label -> "
                        "run directory; for one run directory use plot_run")
    else:
        items = [tuple(item) for item in runs]
    out = []
    for item in items:
        if len(item) == 3:
            label, steps, evals = item
        elif len(item) == 2:
            label, value = item
            if isinstance(value, (str, os.PathLike)):
                steps, evals = read_metrics(value)
            elif isinstance(value, (tuple, list)) and len(value) == 2:
                steps, evals = value
            else:
                raise TypeError(f"run {label!r}: expected a run directory or (steps, evals), "
                                f"got {type(value).__name__}")
        else:
            raise TypeError("each run must be (label, steps, evals) or (label, run_dir), "
                            f"got {len(item)} items")
        out.append((str(label), list(steps or []), list(evals or [])))
    return out


def plot_curves(runs: Any, out_png: PathLike, title: Optional[str] = None,
                window: int = SMOOTHING) -> Path:
    """Plot training curves of one or more runs into one PNG.

    Args:
        runs: a list of ``(label, steps, evals)``, where ``steps`` are dicts with
            "step" and "loss" and ``evals`` dicts with "step" and "val_loss"
            (as :func:`pycharrnn.metrics.read_metrics` returns, or a Trainer's
            ``history`` and ``val_history``); or a dict label -> run directory.
        out_png: the file to write (its directory must exist). It is written
            to a temporary file beside it and renamed, so a reader never sees
            a half-written image.
        title: the figure title (none by default).
        window: steps in the rolling mean of the training loss.

    Returns:
        ``out_png`` as a Path.
    """
    window = check_int("window", window, 1)
    data = _normalize(runs)
    if not data:
        raise ValueError("no runs to plot")
    if not any(s or e for _, s, e in data):
        raise ValueError("nothing to plot: every run is empty (no steps or validations)")
    Figure, FigureCanvasAgg = _matplotlib()
    out_png = Path(out_png)
    if not out_png.parent.is_dir():
        raise FileNotFoundError(f"no such directory: {out_png.parent}")

    fig = Figure(figsize=(9, 5.5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for i, (label, steps, evals) in enumerate(data):
        color = f"C{i % 10}"
        xs, ys = _series(steps, "loss")
        if xs:
            ax.plot(xs, ys, color=color, linewidth=0.6, alpha=0.3)
            w = min(window, len(ys))
            ax.plot(xs, rolling_mean(ys, w), color=color, linewidth=1.8,
                    label=f"{label}: training (rolling mean, {w} steps)")
        vx, vy = _series(evals, "val_loss")
        if vx:
            ax.plot(vx, vy, color=color, linestyle=":", linewidth=1.0, marker="o",
                    markersize=5, markeredgecolor="black", markeredgewidth=0.6,
                    label=f"{label}: validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per character)")
    right = ax.secondary_yaxis("right", functions=(lambda v: v / LN2, lambda v: v * LN2))
    right.set_ylabel("bits per character")
    ax.grid(True, which="major", alpha=0.4)
    ax.minorticks_on()
    ax.grid(True, which="minor", alpha=0.12)
    ax.set_xlim(left=0)
    ax.legend(loc="upper right", fontsize="small")
    if title:
        ax.set_title(title)

    atomic_write(out_png, lambda f: fig.savefig(f, format="png"))
    return out_png


def plot_run(run_dir: PathLike, out_png: Optional[PathLike] = None,
             title: Optional[str] = None, window: int = SMOOTHING) -> Path:
    """Plot ``RUN_DIR/metrics.jsonl`` to ``out_png`` (default
    ``RUN_DIR/curves.png``); returns the path written."""
    run_dir = Path(run_dir)
    steps, evals = read_metrics(run_dir)
    name = run_dir.name if run_dir.suffix != ".jsonl" else run_dir.parent.name
    if out_png is None:
        out_png = (run_dir if run_dir.suffix != ".jsonl" else run_dir.parent) / CURVES_FILE
    return plot_curves([(name or "run", steps, evals)], out_png,
                       title=title if title is not None else name or None, window=window)


#: Seconds a run with a time budget expects its first drawing to take, until
#: one is timed (a drawing took 0.4-0.6 s on a 2-core AVX2 EPYC).
FIRST_DRAWING = 0.5


class CurvesPlot:
    """Trainer callback that keeps ``RUN_DIR/curves.png`` drawn from the
    trainer's histories (which a resumed run restores in full): after a
    validation, at most every ``every`` seconds, at the next event (so that
    the checkpoint due at the validated step is written first: the first
    drawing in a process imports matplotlib, which can take a second), and
    at the end of every run. A picture that cannot be drawn never ends the
    run: without matplotlib a hint is printed once, any other failure a
    warning once; but a signal's exception raised while drawing (it may come
    as an ImportError from inside matplotlib's import) stops it.

    In a run with a time budget every second spent drawing is one less of
    training (on an AVX2 EPYC matplotlib's import took 1.1 s, a drawing
    0.4-0.6 s; a 1-second run drew after its first step and made no other).
    So such a run imports matplotlib when it starts, before its clock runs,
    as the program's other imports; draws its first picture ``every``
    seconds into the run, not after the first validation; and budgets the
    drawing at its end: :meth:`end_seconds` (the last drawing's time) is
    part of :func:`pycharrnn.runs.end_cost`. A run too short for a drawing
    before its end ends that drawing's time (0.4-0.6 s there) after its
    budget."""

    #: It only draws what the histories hold: the Trainer may report several steps at once.
    batched_steps = True
    #: What the end of a run spends in :meth:`end_seconds`, for a run over its budget.
    what = "drawing curves.png"

    def __init__(self, run_dir: PathLike, every: float = 30.0, log=print):
        self.path = Path(run_dir) / CURVES_FILE
        self.every, self.log = every, log
        self._drawn = -math.inf
        self._due = False
        self._failed = False
        self.seconds = 0.0  # the last drawing's time, matplotlib's import left out

    def on_run_start(self, trainer: Any, until: Any, seconds: Optional[float]) -> None:
        if seconds is not None:
            self._drawn = time.perf_counter()  # the first picture `every` seconds in
            try:
                _matplotlib()
            except ImportError:  # said once, at the first drawing
                return
            self.seconds = self.seconds or min(FIRST_DRAWING, 0.1 * seconds)

    def end_seconds(self) -> float:
        """Seconds the drawing at the end of a run is expected to take: the
        last drawing's; before the first, in a run with a time budget where
        matplotlib imports, :data:`FIRST_DRAWING` or a tenth of the budget
        if less (a guess must not end a short run at once), else 0."""
        return self.seconds

    def __call__(self, trainer: Any, event: str, metrics: Any) -> None:
        if self._due:
            self._due = False
            self.draw(trainer)
            self._drawn = time.perf_counter()
        if event == "eval":
            self._due = time.perf_counter() - self._drawn >= self.every

    def on_run_end(self, trainer: Any, signum: Optional[int]) -> None:
        self.draw(trainer)

    def draw(self, trainer: Any) -> None:
        if not trainer.history:
            return
        try:
            _matplotlib()  # its import is not the drawing's time
            t0 = time.perf_counter()
            plot_curves([(trainer.model.cell, trainer.history, trainer.val_history)], self.path)
            self.seconds = time.perf_counter() - t0
        except Exception as e:  # a picture that cannot be drawn must not end the run
            from .signals import Interrupted, interrupted_by

            signum = interrupted_by(e)  # but a signal must: it may come as any exception here
            if signum is not None:
                raise Interrupted(signum) from e
            if isinstance(e, ImportError):
                if not _HINTED:
                    _HINTED.append(True)
                    self.log('(curves.png needs matplotlib: pip install "pycharrnn[plot]")')
                return
            if not self._failed:
                self._failed = True
                import sys

                print(f"pycharrnn: warning: curves.png not drawn: {type(e).__name__}: {e}",
                      file=sys.stderr)


#: Whether this process has said that curves.png needs matplotlib.
_HINTED: List[bool] = []
