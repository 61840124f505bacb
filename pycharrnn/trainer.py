"""The training loop: B parallel streams over a text, truncated BPTT in chunks
of T, validation, checkpoints, the run directory and exact resume."""

from __future__ import annotations

import math
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from .checks import check_int, check_number, check_optional_int
from .config import TrainConfig
from .data import Batches, fingerprint, read_if_path, split_validation, text_to_ids, training_ids
from .distributed import strategy
from .cpuload import CpuLoad
from .errors import TrainingDiverged
from .evaluation import evaluate
from .model import CharRNN
from .optim import Optimizer, create as create_optimizer
from .progress import Progress
from .rundir import BEST, LATEST, save_training
from .schedule import Schedule

__all__ = ["Trainer", "TrainingDiverged"]

LN2 = math.log(2.0)
_C = TrainConfig  # the defaults
#: About how long one call of the core's K-step loop may run (seconds), so
#: that stops stay prompt.
SECONDS_PER_CALL = 0.05


class Trainer:
    """Trains a CharRNN on a text (or ids) with truncated BPTT.

    The text's last ``val_fraction`` (a contiguous tail) is held out for
    validation; the rest is cut into ``batch_size`` streams read ``seq_length``
    characters at a time. The hidden state is carried (detached) from chunk to
    chunk and reset to zeros when the streams wrap around (a new epoch).
    ``data``: the text (a str), ids, or a path (``pathlib.Path``) to a UTF-8
    file, which the run directory then records. Defaults are
    :class:`pycharrnn.config.TrainConfig`'s; :meth:`from_config` builds
    everything from configs, as ``pycharrnn train`` does.

    Args:
        optimizer: an :class:`pycharrnn.optim.Optimizer` for ``model``
            (default: Adam as :func:`pycharrnn.optim.create` makes it).
        schedule: sets ``optimizer.lr`` before every step (None: leave it).
        eval_every: validate every N steps (None: never by count); also at
            each epoch end, and at the end of every :meth:`run`.
        eval_every_seconds: also validate when this many seconds of the
            training clock (:attr:`clock`) have passed since the last
            validation, or nine times as long as that validation took if that
            is longer (so that these validations take at most a tenth of the
            time): for runs with a time budget.
        run_dir: the run directory (:mod:`pycharrnn.rundir`), the same as
            ``pycharrnn train --out`` makes: ``run.json``, ``metrics.jsonl``,
            ``latest.npz`` (every ``checkpoint_every`` steps and/or each
            epoch end, and at the end of :meth:`run`), ``best.npz`` (lowest
            validation loss) and ``curves.png``, every file written
            atomically, so that every ``pycharrnn`` command works on it. It
            must not hold a run already (:meth:`resume` continues one).
            ``checkpoint_dir`` is an older name for it.
        callbacks: ``f(trainer, event, metrics)`` with event "step", "eval" or
            "checkpoint"; returning False stops :meth:`run` after that step.
            One with ``batched_steps = True`` only records step metrics and
            may be told of several steps after they ran; its ``due(step)``
            returning True asks for its "step" event right after that step;
            ``on_run_start(trainer, until_step, seconds)`` and
            ``on_run_end(trainer, signum)``, if it has them, bracket every run.
        steps_per_call: the most steps one call of the core makes (with the
            bits of as many calls of :meth:`step`) when nothing needs Python
            between them: no validation, checkpoint or callback due, no
            schedule or validation by time; about ``SECONDS_PER_CALL`` of
            work at most. Pays for small models. 1: every step from Python.
        distributed: True to train data-parallel over the processes of an
            MPI job, or a :class:`pycharrnn.distributed.Group`: see
            :mod:`pycharrnn.distributed` (rank r reads its share of the
            streams, one Allreduce per step; only rank 0 writes and prints).
        grad_norms_every: every N steps (None: never) the step metrics add
            ``grad_norms``, {parameter name: L2 norm of its gradient before
            clipping}, which metrics.jsonl keeps.
        progress: True: a :class:`pycharrnn.progress.Progress` (a bar, or
            lines without tqdm); a Progress of your own; False: nothing.
        stop_on_signals: in the main thread, the first Ctrl-C or SIGTERM
            stops :meth:`run` after its step, validated and saved as at any
            end, and then raises :class:`pycharrnn.signals.Interrupted`; a
            second abandons at once (:mod:`pycharrnn.signals`).

    Step metrics: step, loss (nats/char), bpc, ema_loss (an exponential
    moving average with decay ``ema_decay``, bias-corrected as Adam's moments
    are, so that it is the loss's weighted mean from step 1 on), lr,
    grad_norm (before clipping), epoch, chars_per_sec; at validations also
    val_loss and val_bpc (see :meth:`evaluate`).

    A NaN or infinite loss, gradient or parameter raises
    :class:`TrainingDiverged` naming the step; no checkpoint is written from a
    diverged model.
    """

    #: The step metrics the history keeps, and the validation history's.
    HISTORY_KEYS = ("step", "loss", "ema_loss", "lr", "grad_norm", "epoch")
    VAL_KEYS = ("step", "val_loss", "epoch")

    def __init__(self, model: CharRNN, data: Any, batch_size: int = _C.batch_size,
                 seq_length: int = _C.seq_length, optimizer: Optional[Optimizer] = None,
                 schedule: Optional[Schedule] = None, val_fraction: float = _C.val_fraction,
                 eval_every: Optional[int] = _C.eval_every, run_dir: Optional[Any] = None,
                 checkpoint_every: Optional[int] = _C.checkpoint_every,
                 checkpoint_each_epoch: bool = _C.checkpoint_each_epoch,
                 ema_decay: float = _C.ema_decay,
                 callbacks: Optional[Sequence[Callable[..., Any]]] = None,
                 eval_every_seconds: Optional[float] = _C.eval_every_seconds,
                 steps_per_call: int = _C.steps_per_call, distributed: Any = False,
                 grad_norms_every: Optional[int] = _C.grad_norms_every,
                 progress: Any = True, stop_on_signals: bool = True,
                 checkpoint_dir: Optional[Any] = None):
        #: How the work is spread: this process alone, or the ranks of an MPI job.
        self.parallel = strategy(distributed)
        data, self.source = read_if_path(data)  # the source: what run.json records
        ids = training_ids(model, data)
        train_ids, self.val_ids = split_validation(ids, val_fraction)
        self.model = model
        self.data_fingerprint = fingerprint(ids)
        self.val_fraction = float(val_fraction)
        rows = self.parallel.rows(check_int("batch_size", batch_size, 1))
        self.batches = Batches(train_ids, batch_size, seq_length, rows=rows)
        self.optimizer = optimizer if optimizer is not None else \
            create_optimizer(_C.optimizer, model, clip_value=_C.clip_value)
        if self.optimizer.model is not model:
            raise ValueError("the optimizer was made for another model")
        self.schedule = schedule
        self.eval_every = check_optional_int("eval_every", eval_every, 1)
        self.eval_every_seconds = None if eval_every_seconds is None else \
            float(check_number("eval_every_seconds", eval_every_seconds, 0, lo_open=True))
        self.checkpoint_every = check_optional_int("checkpoint_every", checkpoint_every, 1)
        self.checkpoint_each_epoch = bool(checkpoint_each_epoch)
        self.ema_decay = float(check_number("ema_decay", ema_decay, 0, 1, hi_open=True))
        self.steps_per_call = check_int("steps_per_call", steps_per_call, 1)
        self.grad_norms_every = check_optional_int("grad_norms_every", grad_norms_every, 1)
        self.callbacks = list(callbacks or [])
        self.stop_on_signals = bool(stop_on_signals)
        self.progress = Progress.make(progress) if self.is_main else None
        #: Lines the progress prints before the first run (a recipe, a resume).
        self.notes: List[str] = []
        #: The default limits of :meth:`run` (set by :meth:`from_config`).
        self.limits: Dict[str, Any] = {}
        #: The moving average of the loss started at 0 (ema_loss corrects its bias).
        self.ema_sum = 0.0
        self.best_val_loss: Optional[float] = None
        self.state = model.initial_state(self.batches.rows)
        self.step_count = 0
        self.elapsed = 0.0
        #: Wall seconds spent in :meth:`run` over the whole run (resumes
        #: included): the clock of schedules by time.
        self.clock = 0.0
        self.clock_origin = 0.0  # perf_counter() when the clock was 0 (rank 0)
        self.step_start = 0.0
        self.last_eval_clock = 0.0  # the clock at the last validation, and its duration
        self._last_eval_seconds = self._last_save_seconds = 0.0
        self._step_seconds = 0.0  # the last step's duration (sizes the runs of steps)
        self._step_times: deque = deque(maxlen=9)  # the last steps' (see runs.validation_cost)
        #: Other programs' use of the cores, measured at each validation
        #: (:class:`pycharrnn.cpuload.CpuLoad` windows; "cpu" in the eval metrics).
        self.cpu_load: List[Dict[str, float]] = []
        self._load = CpuLoad()
        self.history: List[Dict[str, float]] = []
        self.val_history: List[Dict[str, float]] = []
        self.stopping = self.stop_requested = False  # stop after the step in progress; asked to
        #: The callbacks of the run in progress (``callbacks`` and the run's
        #: own); None between runs, when steps tell ``callbacks`` alone.
        self.run_callbacks: Optional[List[Callable[..., Any]]] = None
        self.metrics_resume: Optional[int] = None  # resumed: the step metrics.jsonl goes back to
        self.run_dir: Optional[Path] = None
        where = run_dir if run_dir is not None else checkpoint_dir
        if where is not None:
            self.attach_run_dir(where, new=True)
        self.parallel.join(self)

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and prints: True alone, and on
        rank 0 of a distributed run."""
        return self.parallel.is_main

    @property
    def group(self) -> Any:
        """The ranks of a data-parallel run (:class:`pycharrnn.distributed.Group`);
        None for this process alone."""
        return self.parallel.group

    @property
    def checkpoint_dir(self) -> Optional[Path]:
        """The run directory (an older name)."""
        return self.run_dir

    def attach_run_dir(self, run_dir: Any, new: bool, info: Optional[Dict[str, Any]] = None
                       ) -> None:
        """Make ``run_dir`` this run's directory (:func:`pycharrnn.runs.attach`)."""
        from .runs import attach

        attach(self, run_dir, new, info)

    @classmethod
    def from_config(cls, data: Any, model: Any, config: TrainConfig = _C(),
                    **options: Any) -> "Trainer":
        """A trainer as ``pycharrnn train`` makes it, from a model (or a
        :class:`pycharrnn.config.ModelConfig`) and a
        :class:`pycharrnn.config.TrainConfig`: see :func:`pycharrnn.runs.from_config`."""
        from .runs import from_config

        return from_config(cls, data, model, config, **options)

    @classmethod
    def resume(cls, path: Any, data: Any = None, **options: Any) -> "Trainer":
        """Continue a run from a checkpoint file or run directory, exactly as
        if it had never stopped; ``data`` None reads the text its run.json
        names. See :func:`pycharrnn.runs.resume`."""
        from .runs import resume

        return resume(cls, path, data, **options)

    # ------------------------------------------------------------ evaluation
    @property
    def ema_loss(self) -> float:
        """The bias-corrected moving average of the training loss (nats/char);
        NaN before the first step."""
        if self.step_count == 0:
            return math.nan
        return self.ema_sum / (1.0 - self.ema_decay ** self.step_count)

    def evaluate(self, ids: Optional[np.ndarray] = None, *, text: Optional[str] = None,
                 progress: Optional[Callable[[int, int], None]] = None) -> float:
        """The validation loss: the mean cross-entropy in nats per character
        over the validation text (or ``ids``, or ``text``), as one pass over
        it with the state carried scores it (only its first character is
        predicted from a zero state); no dropout. Read as up to
        ``batch_size`` streams in chunks of ``seq_length``, each stream warmed
        up on the text before it: see :func:`pycharrnn.evaluation.evaluate`
        (and for ``progress``). Does not change the training state."""
        if text is not None and (ids is not None or not isinstance(text, str)):
            raise (ValueError("give ids or text, not both") if ids is not None else
                   TypeError(f"text must be a str, got {type(text).__name__}"))
        if text is not None or ids is not None:
            ids = text_to_ids(self.model, text if text is not None else np.asarray(ids),
                              "text" if text is not None else "ids", compact=True)
        elif self.val_ids.size < 2:
            raise ValueError("no validation text (val_fraction=0?)")
        else:
            ids = self.val_ids
        return evaluate(self.model, ids, self.batches.batch_size, self.batches.seq_length,
                        group=self.parallel, progress=progress)

    # ------------------------------------------------------------------ steps
    def _diverged(self, what: str, value: float) -> TrainingDiverged:
        return TrainingDiverged.at(self.step_count + 1, what, value, self.optimizer.lr)

    def step(self) -> Dict[str, float]:
        """One chunk: forward, backward, optimizer update; then validation and
        checkpoints when they are due."""
        t0 = self.step_start = time.perf_counter()
        b = self.batches
        x, y, wrapped = b.next()
        if wrapped:
            self.state = self.model.initial_state(b.rows)
        if self.schedule is not None:
            args = (self.clock,) if getattr(self.schedule, "by_time", False) else ()
            self.optimizer.lr = self.schedule.lr(self.step_count + 1, b.epoch_float, *args)
        # A rank's rows get their dropout masks of the whole batch.
        loss, state = self.model.forward_backward(x, y, self.state,
                                                  rows=self.parallel.mask_rows(b))
        loss = self.parallel.reduce_step(self, loss)
        if not math.isfinite(loss):
            raise self._diverged("loss", loss)
        gnorm = self.optimizer.grad_norm()
        if not math.isfinite(gnorm):
            raise self._diverged("gradient norm", gnorm)
        self.optimizer.step(grad_norm=gnorm)
        if not math.isfinite(self.model.param_norm()):
            raise self._diverged("parameter norm after the update", math.inf)
        self.state = state
        dt = time.perf_counter() - t0
        self.elapsed += dt
        self._step_seconds = dt
        m = self._record(loss, gnorm, self.optimizer.lr, b.epoch_float,
                         b.batch_size * b.seq_length, dt)
        return self._after_step(m, dt, self._emit("step", m))

    def _record(self, loss: float, gnorm: float, lr: float, epoch: float, chars: int,
                dt: float) -> Dict[str, float]:
        """Count a step made: EMA, its metrics, the history."""
        self.step_count += 1
        self.ema_sum = self.ema_decay * self.ema_sum + (1 - self.ema_decay) * loss
        m: Dict[str, Any] = {
            "step": self.step_count, "loss": loss, "bpc": loss / LN2,
            "ema_loss": self.ema_loss, "lr": lr, "grad_norm": gnorm, "epoch": epoch,
            "chars_per_sec": chars / dt if dt > 0 else math.inf,
        }
        self.history.append({k: m[k] for k in self.HISTORY_KEYS})
        self._step_times.append(dt)
        if self.grad_norms_every and self.step_count % self.grad_norms_every == 0:
            # model.grads still hold this step's gradient (the last of a run of
            # steps in the core, which ends at such a step: see _steps_fusable)
            m["grad_norms"] = self.model.grad_norms()
        return m

    def eval_by_time(self, clock: float) -> bool:
        """Whether validation by time is due at ``clock`` (:func:`pycharrnn.runs.eval_by_time`)."""
        from .runs import eval_by_time

        return eval_by_time(self, clock)

    def _after_step(self, m: Dict[str, float], dt: float, stop: bool) -> Dict[str, float]:
        """Validation and checkpoints due after the step of metrics ``m``."""
        epoch_end = self.batches.at_epoch_end
        by_time = self.parallel.validation_due(self, dt)
        if self.val_ids.size and ((self.eval_every and self.step_count % self.eval_every == 0)
                                  or epoch_end or by_time):
            stop = self._validate(m, scheduled=True) or stop
        if self.run_dir is not None and (
                (self.checkpoint_every and self.step_count % self.checkpoint_every == 0)
                or (epoch_end and self.checkpoint_each_epoch)):
            self.save_checkpoint(self.run_dir / LATEST)
            stop = self._emit("checkpoint", m) or stop
        self.parallel.after_step(self, stop)
        return m

    def _steps_fusable(self, limit: int) -> int:
        """How many steps (up to ``limit``) the next call of the core may
        make: 0 or 1 when the next step needs Python around it."""
        if self.steps_per_call < 2 or limit < 2 or self.eval_every_seconds is not None or \
                getattr(self.schedule, "by_time", False) or not self.parallel.fusable:
            return 0
        if any(not getattr(cb, "batched_steps", False) for cb in self.run_callbacks):
            return 0
        if self._step_seconds <= 0:  # first measure a step (a big model's may take seconds)
            return 1
        k = min(limit, self.steps_per_call, self.batches.chunks_left,
                max(1, int(SECONDS_PER_CALL / self._step_seconds)))
        s = self.step_count
        for every in (self.eval_every if self.val_ids.size else None,
                      self.checkpoint_every if self.run_dir is not None else None,
                      self.grad_norms_every):
            if every:
                k = min(k, every - s % every)
        for cb in self.run_callbacks:
            due = getattr(cb, "due", None)
            if due is not None:
                for j in range(1, k):
                    if due(s + j):
                        k = j
                        break
        return k if self.optimizer.fusable else 0

    def _steps(self, k: int) -> List[Dict[str, float]]:
        """``k`` steps in one call of the core (:meth:`CharRNN.train_steps`),
        with the bits and the metrics of ``k`` calls of :meth:`step`; then
        what is due after the last."""
        t0 = self.step_start = time.perf_counter()
        b, model, opt = self.batches, self.model, self.optimizer
        if b.wrap():
            self.state = model.initial_state(b.rows)
        xs, ys, epochs = b.peek(k)
        lrs = np.full(k, opt.lr)
        if self.schedule is not None:
            lrs[:] = [self.schedule.lr(self.step_count + 1 + j, epochs[j]) for j in range(k)]
        state = model.pack_state(self.state, b.rows)
        losses, norms, done, status = model.train_steps(xs, ys, state, lrs, opt)
        made = done + (status == 3)  # the parameter check follows the update
        if made:
            opt.lr = float(lrs[made - 1])
        b.advance(done)
        self.state = model.unpack_state(state)
        dt_all = time.perf_counter() - t0
        dt = dt_all / max(done, 1)
        self.elapsed += dt_all
        self._step_seconds = dt
        out, stop = [], False
        for j in range(done):
            m = self._record(float(losses[j]), float(norms[j]), float(lrs[j]), epochs[j],
                             xs[j].size, dt)
            out.append(m)
            stop = self._emit("step", m) or stop
        if status:  # the failing step had read its chunk and set its rate, as step() does
            b.advance(1)
            opt.lr = float(lrs[done])
            what, value = {1: ("loss", losses[done]), 2: ("gradient norm", norms[done]),
                           3: ("parameter norm after the update", math.inf)}[status]
            raise self._diverged(what, float(value))
        self._after_step(out[-1], dt, stop)
        return out

    def _validate(self, m: Dict[str, float], scheduled: bool) -> bool:
        """Validate now: add val_loss/val_bpc to the step metrics ``m``, record
        the point, save ``best.npz`` when it is the lowest, emit "eval".
        Only a scheduled validation (eval_every, epoch end) informs the
        schedule, so that a run stopped early and resumed keeps the learning
        rates of an uninterrupted one. Returns whether a callback asked to stop."""
        t0 = time.perf_counter()
        v = self.evaluate(progress=getattr(self.progress, "validating", None))
        self._last_eval_seconds = time.perf_counter() - t0
        self.last_eval_clock = self.parallel.clock_at(self, t0)
        self._load.record(m, self.cpu_load)
        m["val_loss"], m["val_bpc"] = v, v / LN2
        self.val_history.append({"step": self.step_count, "val_loss": v,
                                 "epoch": self.batches.epoch_float})
        if scheduled and self.schedule is not None:
            self.schedule.on_validation(v)
        if self.best_val_loss is None or v < self.best_val_loss:
            self.best_val_loss = v
            if self.run_dir is not None:
                self.save_checkpoint(self.run_dir / BEST)
        return self._emit("eval", m)

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop after the step in progress (then it
        validates and writes ``latest.npz`` as at any end). Safe to call from a
        signal handler or another thread."""
        self.stop_requested = True

    def _emit(self, event: str, m: Dict[str, float]) -> bool:
        stop = False
        for cb in self.callbacks if self.run_callbacks is None else self.run_callbacks:
            if cb(self, event, m) is False:
                stop = True
        return stop

    # -------------------------------------------------------------------- run
    def run(self, steps: Optional[int] = None, seconds: Optional[float] = None,
            until_step: Optional[int] = None, validate_at_end: bool = True,
            until_epoch: Optional[float] = None) -> List[Dict[str, float]]:
        """Train for ``steps`` more steps, until the total step count reaches
        ``until_step`` or the run has made ``until_epoch`` passes over the
        text, or for ``seconds`` of wall time, whichever comes first (give at
        least one, or none for the limits :meth:`from_config` set). A
        callback returning False or :meth:`request_stop` stops the run after
        the step in progress; so does a signal (see ``stop_on_signals``).

        However it stops (but by an exception), a run that made a step ends
        with a validation at its last step, unless that step was just
        validated or ``validate_at_end`` is False (so ``val_history``,
        ``best_val_loss`` and ``best.npz`` always hold the final model), and
        with a run directory ``latest.npz`` is written."""
        from .runs import session, target_step

        target, seconds = target_step(self, steps, until_step, until_epoch, seconds)
        done: List[Dict[str, float]] = []
        with session(self, target, seconds) as run:
            self._loop(done, target, seconds)
            last_val = self.val_history[-1]["step"] if self.val_history else None
            if done and validate_at_end and self.val_ids.size and last_val != self.step_count:
                self._validate(done[-1], scheduled=False)
            if self.run_dir is not None and done:
                self.save_checkpoint(self.run_dir / LATEST)
            run.end()
        return done

    def _loop(self, done: List[Dict[str, float]], target: float,
              seconds: Optional[float]) -> None:
        from .runs import end_cost  # a run for `seconds` ends validated and saved within them
        start = time.perf_counter()
        clock0 = self.clock
        self.clock_origin = start - clock0
        self.stopping = False
        self.parallel.reset()
        while self.step_count < target and not self.stopping:
            now = time.perf_counter() - start
            left = None if seconds is None else seconds - end_cost(self, seconds)
            if self.parallel.before_step(self, clock0, now, left):
                break
            limit = target - self.step_count
            if left is not None and self._step_seconds > 0:
                limit = min(limit, max(1, int((left - now) / self._step_seconds)))
            k = self._steps_fusable(int(min(limit, 1 << 30)))
            if k > 1:
                done.extend(self._steps(k))
            else:
                done.append(self.step())
        self.clock = self.parallel.end_clock(clock0 + time.perf_counter() - start)
        self.stop_requested = False

    # ------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: Any) -> None:
        """Everything exact resume needs, in one file, written atomically:
        parameters, optimizer and schedule state, step, epoch, data position,
        carried hidden state, RNG state, histories, vocab and config
        (:func:`pycharrnn.runs.training_state`, :func:`pycharrnn.rundir.save_training`)."""
        from .runs import training_state

        if not math.isfinite(self.model.param_norm()):
            raise TrainingDiverged("refusing to checkpoint a model with NaN or infinite "
                                   "parameters")
        t0 = time.perf_counter()
        ts = training_state(self)
        if ts is not None:  # else another rank writes the files
            save_training(path, self.model, ts)
        self._last_save_seconds = time.perf_counter() - t0
