"""The training loop: B parallel streams over a text, truncated BPTT in chunks
of T, validation, checkpoints and exact resume."""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core
from .errors import CheckpointError, PyCharRNNError, count
from .checks import as_ids, check_int
from .model import CharRNN
from .optim import AdaGrad, Optimizer, from_state_dict
from .rundir import (BEST, LATEST, TrainingState, load_training, remove_temporaries,
                     resolve, save_training)
from .schedule import Schedule, from_config
from . import vocab as _vocab
from .vocab import compact_dtype

__all__ = ["Batches", "Trainer", "TrainingDiverged", "evaluate", "split_validation", "fingerprint",
           "EVAL_WARMUP"]

LN2 = math.log(2.0)
#: Characters each validation stream but the first reads before its own
#: part of the text, its loss not counted (see :func:`evaluate`).
EVAL_WARMUP = 256
_HISTORY_KEYS = ("step", "loss", "ema_loss", "lr", "grad_norm", "epoch")
#: The default most steps one C++ call of :meth:`Trainer.run` makes.
STEPS_PER_CALL = 256
#: About how long one such call may run (seconds).
SECONDS_PER_CALL = 0.05
_VAL_KEYS = ("step", "val_loss", "epoch")
# Resume options: those fixed by the checkpoint, and those that may change.
_FIXED = {"batch_size", "seq_length", "val_fraction"}
_FREE = {"eval_every", "eval_every_seconds", "checkpoint_every", "checkpoint_each_epoch",
         "steps_per_call"}


class TrainingDiverged(PyCharRNNError):
    """The loss, a gradient or a parameter became NaN or infinite."""


class Batches:
    """Cuts ids into ``batch_size`` contiguous streams, read in chunks of
    ``seq_length``: x[b] = ids[b*n + p : b*n + p + T], y = the next
    character of each (n = (len(ids) - 1) // B streams' length, p the
    position). When a chunk would run past the end of a stream the position
    wraps to 0 and ``next()`` reports it, so the caller resets its state.

    ``rows=(first, count)`` reads only streams ``first .. first + count`` (one
    process's share in data-parallel training); x and y then have ``count``
    rows.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_length: int,
                 rows: Optional[Tuple[int, int]] = None):
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.seq_length = check_int("seq_length", seq_length, 1)
        self.first_row, self.rows = (0, self.batch_size) if rows is None else rows
        if not (0 <= self.first_row and 1 <= self.rows and
                self.first_row + self.rows <= self.batch_size):
            raise ValueError(f"rows={rows!r} are not streams of batch_size={batch_size}")
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"ids must be integers, got dtype {ids.dtype}")
        ids = ids.reshape(-1)
        # uint8, uint16 and int32 ids are used as they are (a memory-mapped
        # file stays one); chunks are converted to int32 as they are read.
        if ids.dtype not in _COMPACT or not ids.flags.c_contiguous:
            if ids.size and (int(ids.min()) < 0 or int(ids.max()) > np.iinfo(np.int32).max):
                raise ValueError("ids must be in [0, 2**31)")
            ids = np.ascontiguousarray(ids, dtype=np.int32)
        elif ids.dtype == np.int32 and ids.size and int(ids.min()) < 0:
            raise ValueError("ids must be in [0, 2**31)")
        need = self.batch_size * self.seq_length + 1
        if ids.size < need:
            raise ValueError(
                f"the training text has {count(ids.size, 'character')}; "
                f"batch_size={self.batch_size} and seq_length={self.seq_length} need at "
                f"least {need:,} "
                "(batch_size * seq_length + 1): use a longer text or smaller sizes")
        self.ids = ids
        self.stream_length = (ids.size - 1) // self.batch_size
        self.position = 0
        self.epoch = 0
        # 64-bit offsets: texts beyond 2**31 characters work.
        self._offsets = (np.arange(self.first_row, self.first_row + self.rows,
                                   dtype=np.int64) * self.stream_length)[:, None] + \
            np.arange(self.seq_length + 1, dtype=np.int64)[None, :]

    @property
    def chunks_per_epoch(self) -> int:
        return self.stream_length // self.seq_length

    @property
    def at_epoch_end(self) -> bool:
        """True when the next chunk starts a new pass."""
        return self.position + self.seq_length > self.stream_length

    @property
    def epoch_float(self) -> float:
        return self.epoch + self.position / (self.chunks_per_epoch * self.seq_length)

    def next(self):
        """(x, y, wrapped): int32 [B, T] inputs and targets; wrapped is True when
        this chunk starts a new pass over the text."""
        wrapped = False
        if self.at_epoch_end:
            self.position = 0
            self.epoch += 1
            wrapped = True
        chunk = self.ids[self._offsets + self.position]
        self.position += self.seq_length
        return (np.ascontiguousarray(chunk[:, :-1], dtype=np.int32),
                np.ascontiguousarray(chunk[:, 1:], dtype=np.int32), wrapped)


_COMPACT = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.int32))


def fingerprint(ids: np.ndarray) -> Dict[str, Any]:
    """Length and SHA-256 of the ids as little-endian int32 (whatever their
    dtype), hashed in blocks."""
    h = hashlib.sha256()
    step = _vocab.CHUNK
    for i in range(0, ids.size, step):
        h.update(np.ascontiguousarray(ids[i:i + step], "<i4").data)
    return {"length": int(ids.size), "sha256": h.hexdigest()}


def _finite(x: float) -> bool:
    return math.isfinite(x)


def split_validation(ids: np.ndarray, val_fraction: float) -> Tuple[np.ndarray, np.ndarray]:
    """(training ids, validation ids): the validation text is the contiguous
    tail of ``round(len(ids) * val_fraction)`` ids (none when 0)."""
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or \
            not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    n_val = int(round(ids.size * val_fraction))
    if val_fraction > 0 and n_val < 2:
        raise ValueError(f"val_fraction={val_fraction} of {count(ids.size, 'character')} "
                         "leaves fewer than 2 for validation")
    return ids[:ids.size - n_val], (ids[ids.size - n_val:] if n_val else ids[:0])


def evaluate(model: CharRNN, ids: np.ndarray, streams: int = 32, seq_length: int = 64,
             warmup: int = EVAL_WARMUP, group: Any = None) -> float:
    """The mean cross-entropy (nats/char) of predicting ``ids[1:]``, each id
    from all the ids before it, as one pass over the text with the state
    carried computes it: no id is predicted from a zero state except
    ``ids[1]`` (from ``ids[0]``). No dropout.

    For speed the ``len(ids) - 1`` predictions are cut into up to ``streams``
    contiguous parts, read side by side in chunks of ``seq_length``. A part's
    true starting state is the one the part before it ends in, which is only
    known once that part is read; so each part but the first starts from the
    state left by reading the ``warmup`` ids before it (their loss not
    counted), and after the pass every part whose starting state differs
    from where the part before it ended is read again from there, until none
    does. "Differs" means by more than 1e-4 in float32 (1e-10 in float64),
    relative: a start that close moves the loss of the characters just after
    it by about as much, and float32's rounding alone moves states by 1e-6
    between one batch size and another. On ordinary text the warm-up
    converges and one pass does; on text the model has long memory of (a run
    of hundreds of spaces) the passes that follow make the result the single
    pass's all the same, at the cost of reading the parts that were off
    again (at worst ``streams`` passes). Parts are never shorter than
    ``warmup``.

    Float rounding: where a model's state dynamics are chaotic (an untrained
    or barely trained model on a repetitive text can be), a difference in the
    last bit grows along the text, and any two ways of ordering the float
    operations, one stream or several, give numbers that agree only
    statistically (0.6% apart in one such float32 case). GRUs trained on
    Shakespeare agree with the single pass to 1e-7 relative or better.

    ``group`` (a :class:`pycharrnn.distributed.Group`): the ranks share the
    parts, exchange the states where parts meet, and all return the same
    result as one process reading every part (every rank must call).
    """
    streams = check_int("streams", streams, 1)
    T = check_int("seq_length", seq_length, 1)
    W = check_int("warmup", warmup, 0)
    N = ids.size - 1  # predictions
    if N < 1:
        raise ValueError(f"evaluation needs at least 2 characters, got {ids.size}")
    B = max(1, min(streams, N // max(W, T)))
    n = N // B  # the last part also takes the N - B*n left over, read on alone
    tol = 1e-4 if model.dtype == np.float32 else 1e-10
    lo, hi = (0, B) if group is None else group.parts(B)  # the parts read here
    starts = model.pack_state(None, B)  # [S, L, B, H]
    if B > 1 and W > 0:
        # Part b (b >= 1) is preceded by ids[b*n - W : b*n].
        first = max(lo, 1)
        if first < hi:
            idx = (np.arange(first, hi, dtype=np.int64) * n - W)[:, None] + \
                np.arange(W + 1, dtype=np.int64)[None, :]
            state = None
            for p in range(0, W, T):
                chunk = ids[idx[:, p:min(p + T, W) + 1]]
                _, state = model.loss(chunk[:, :-1], chunk[:, 1:], state)
            starts[:, :, first:hi] = model.pack_state(state, hi - first)
        if group is not None:  # every rank wrote only its parts: the sum joins them
            group.sum(starts)
    sums = np.zeros(B)
    ends = np.empty_like(starts)
    todo = np.arange(B)
    while todo.size:
        mine = todo[(todo >= lo) & (todo < hi)]
        fresh = None if group is None else \
            np.zeros(starts.shape[:2] + (todo.size,) + starts.shape[3:], starts.dtype)
        if mine.size:
            state = model.unpack_state(starts[:, :, mine])
            part = np.zeros(mine.size)
            for p in range(0, n, T):
                t = min(T, n - p)
                chunk = ids[(mine.astype(np.int64) * n)[:, None] + p +
                            np.arange(t + 1, dtype=np.int64)[None, :]]
                rows, state = model.loss(chunk[:, :-1], chunk[:, 1:], state, reduce=False)
                part += rows * t
            sums[mine] = part
            if fresh is None:
                ends[:, :, mine] = model.pack_state(state, mine.size)
            else:
                fresh[:, :, np.searchsorted(todo, mine)] = model.pack_state(state, mine.size)
        if fresh is not None:
            ends[:, :, todo] = group.sum(fresh)
        # Part b is right when it started where part b - 1 ended (part 0 always is).
        off = ~np.isclose(starts[:, :, 1:], ends[:, :, :-1], rtol=tol, atol=tol).all(
            axis=(0, 1, 3))
        todo = np.flatnonzero(off) + 1
        starts[:, :, todo] = ends[:, :, todo - 1]
    if group is not None:
        group.sum(sums)  # each part's sum is on its rank only, zeros elsewhere
    total = float(sums.sum())
    rest = N - B * n
    if rest:
        chunk = ids[None, B * n:]
        loss, _ = model.loss(chunk[:, :-1], chunk[:, 1:], model.unpack_state(ends[:, :, B - 1:]))
        total += loss * rest
    return total / N


class Trainer:
    """Trains a CharRNN on a text (or ids) with truncated BPTT.

    The text's last ``val_fraction`` (a contiguous tail) is held out for
    validation; the rest is cut into ``batch_size`` streams read ``seq_length``
    characters at a time. The hidden state is carried (detached) from chunk to
    chunk and reset to zeros when the streams wrap around (a new epoch).

    Args:
        optimizer: default min-char-rnn's AdaGrad (eps 1e-8 inside the square
            root, every gradient element clipped to [-5, 5]) with lr 0.02:
            min-char-rnn's lr 0.1 suits a loss summed over 25 characters; this
            loss is a mean over B*T, so gradients are far smaller (on
            tinyshakespeare, H=128, B=32, T=50, 300 steps: lr 0.1 stalls at
            3.2 nats, 0.02 reaches 2.25).
        schedule: sets ``optimizer.lr`` before every step (None: leave it).
        eval_every: validate every N steps (also at each epoch end, and at the
            end of every :meth:`run`).
        eval_every_seconds: also validate when this many seconds of the
            training clock (:attr:`clock`) have passed since the last
            validation, or nine times as long as that validation took if that
            is longer (so that these validations take at most a tenth of the
            time): for runs with a time budget.
        checkpoint_dir: where ``latest.npz`` (every ``checkpoint_every`` steps
            and/or each epoch end, and at the end of :meth:`run`) and
            ``best.npz`` (lowest validation loss) are written, atomically.
        callbacks: ``f(trainer, event, metrics)`` with event "step", "eval" or
            "checkpoint"; returning False stops :meth:`run` after that step.
            A callback with ``batched_steps = True`` only records step
            metrics: it may be told of several steps after they ran (see
            ``steps_per_call``); its optional ``due(step)`` returning True
            asks for its "step" event right after that step.
        steps_per_call: the most steps one C++ call makes (forward, BPTT,
            clipping and update, K times, with the same bits as K calls of
            :meth:`step`) when nothing needs Python between them: no
            validation, checkpoint or callback due, no schedule by time and
            no validation by time. Pays for small models, where a step takes
            tens of microseconds. 1: every step from Python. Default
            ``STEPS_PER_CALL``; a run of steps is also kept to about
            ``SECONDS_PER_CALL`` of work, so that stops stay prompt.
        distributed: True to train data-parallel over the processes of an
            MPI job (``mpiexec -n N python -m mpi4py script.py``), or a
            :class:`pycharrnn.distributed.Group`. Rank r reads streams
            ``r*B/N .. (r+1)*B/N`` (``batch_size`` must be a multiple of
            the number of ranks) and the gradients are averaged with one
            Allreduce per step, so N ranks make the steps one process makes
            with the whole batch. Rank 0's parameters, optimizer state and
            dropout generator are given to every rank at the start; the
            validation text is shared out and the result reduced; only
            rank 0 writes checkpoints; decisions by time (``seconds``,
            ``eval_every_seconds``, schedules by time) follow rank 0's
            clock, and a stop asked on any rank (a callback, a signal) stops
            every rank after the next step. See :mod:`pycharrnn.distributed`.
        grad_norms_every: every N steps (default 50; None: never) the step
            metrics add ``grad_norms``, {parameter name: L2 norm of its
            gradient before clipping}, which MetricsLog writes to
            metrics.jsonl: which layers learn, and which vanish.

    Step metrics: step, loss (nats/char), bpc, ema_loss (an exponential
    moving average with decay ``ema_decay``, bias-corrected as Adam's moments
    are, so that it is the loss's weighted mean from step 1 on), lr,
    grad_norm (before clipping), epoch, chars_per_sec; at validations also
    val_loss and val_bpc (see :meth:`evaluate`).

    A NaN or infinite loss, gradient or parameter raises
    :class:`TrainingDiverged` naming the step; no checkpoint is written from a
    diverged model.
    """

    def __init__(self, model: CharRNN, data: Union[str, np.ndarray], batch_size: int = 32,
                 seq_length: int = 50, optimizer: Optional[Optimizer] = None,
                 schedule: Optional[Schedule] = None, val_fraction: float = 0.1,
                 eval_every: Optional[int] = None, checkpoint_dir: Optional[Any] = None,
                 checkpoint_every: Optional[int] = None, checkpoint_each_epoch: bool = True,
                 ema_decay: float = 0.99,
                 callbacks: Optional[Sequence[Callable[..., Any]]] = None,
                 eval_every_seconds: Optional[float] = None,
                 steps_per_call: Optional[int] = None, distributed: Any = False,
                 grad_norms_every: Optional[int] = 50):
        from .distributed import as_group

        #: The ranks of a data-parallel run (None: this process alone).
        self.group = as_group(distributed)
        ids = self._encode(model, data)
        train_ids, self.val_ids = split_validation(ids, val_fraction)
        self.model = model
        self.data_fingerprint = fingerprint(ids)
        self.val_fraction = float(val_fraction)
        rows = None
        if self.group is not None:
            rows = self.group.rows(check_int("batch_size", batch_size, 1))
        self.batches = Batches(train_ids, batch_size, seq_length, rows=rows)
        self.optimizer = optimizer if optimizer is not None else AdaGrad(
            model, lr=0.02, eps=1e-8, clip_value=5.0, eps_inside_sqrt=True)
        if self.optimizer.model is not model:
            raise ValueError("the optimizer was made for another model")
        self.schedule = schedule
        self.eval_every = None if eval_every is None else check_int("eval_every", eval_every, 1)
        if eval_every_seconds is not None and (
                isinstance(eval_every_seconds, bool)
                or not isinstance(eval_every_seconds, (int, float))
                or not (math.isfinite(eval_every_seconds) and eval_every_seconds > 0)):
            raise ValueError(f"eval_every_seconds must be a positive number, got "
                             f"{eval_every_seconds!r}")
        self.eval_every_seconds = None if eval_every_seconds is None else \
            float(eval_every_seconds)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.checkpoint_every = None if checkpoint_every is None else \
            check_int("checkpoint_every", checkpoint_every, 1)
        self.checkpoint_each_epoch = bool(checkpoint_each_epoch)
        if isinstance(ema_decay, bool) or not isinstance(ema_decay, (int, float)) or \
                not 0 <= ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay!r}")
        self.ema_decay = float(ema_decay)
        # Exponential moving average of the loss from 0, and its bias
        # correction (as Adam's moments): meaningful from the first step.
        self._ema_sum = 0.0
        self.best_val_loss: Optional[float] = None
        self.state = model.initial_state(self.batches.rows)
        self.step_count = 0
        self.elapsed = 0.0
        #: Wall seconds spent in :meth:`run` over the whole run (resumes
        #: included): the clock of schedules by time.
        self.clock = 0.0
        self._step_start = 0.0
        self._last_eval_clock = 0.0  # the clock at the last validation, and its duration
        self._last_eval_seconds = 0.0
        self.history: List[Dict[str, float]] = []
        self.val_history: List[Dict[str, float]] = []
        self.callbacks = list(callbacks or [])
        self.steps_per_call = STEPS_PER_CALL if steps_per_call is None else \
            check_int("steps_per_call", steps_per_call, 1)
        self.grad_norms_every = None if grad_norms_every is None else \
            check_int("grad_norms_every", grad_norms_every, 1)
        self._step_seconds = 0.0  # the last step's duration (sizes the runs of steps)
        self._stop = False
        self._stop_requested = False
        # Distributed: a stop this rank wants (told to the others with the
        # next step), rank 0's "validate now" by time, the step's scalars.
        self._wish_stop = False
        self._eval_due = False
        self._clock_origin = 0.0  # perf_counter() when self.clock was 0 (rank 0)
        self._scalars = np.zeros(4)
        if self.group is not None:
            self._join()

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and prints: True alone, and on
        rank 0 of a distributed run."""
        return self.group is None or self.group.is_main

    def _join(self) -> None:
        """Start a distributed run: check that every rank has the same data
        and settings, then give everyone rank 0's parameters, optimizer state
        and dropout generator."""
        g, model, opt = self.group, self.model, self.optimizer
        g.check_same("training setup", {
            "data": self.data_fingerprint, "model": model.config(),
            "num_params": model.num_params, "batch_size": self.batches.batch_size,
            "seq_length": self.batches.seq_length, "val_fraction": self.val_fraction,
            "optimizer": type(opt).__name__, "hparams": opt.hparams(),
            "schedule": None if self.schedule is None else self.schedule.state_dict(),
            "eval_every": self.eval_every, "eval_every_seconds": self.eval_every_seconds,
            "checkpoint_every": self.checkpoint_every,
            "checkpoint_each_epoch": self.checkpoint_each_epoch,
            "checkpoint_dir": self.checkpoint_dir is not None, "step": self.step_count})
        g.broadcast(model.flat_params)
        for buf in opt.buffers.values():
            g.broadcast(buf)
        opt.step_count, model.rng_state = g.broadcast_object((opt.step_count, model.rng_state))

    @staticmethod
    def _encode(model: CharRNN, data: Union[str, np.ndarray]) -> np.ndarray:
        if isinstance(data, str):
            if model.vocab is None:
                raise ValueError("reading text needs a model built with a Vocab")
            if not data:
                raise ValueError("the text is empty")
            return model.vocab.encode(data, compact_dtype(model.vocab_size))
        a = np.asarray(data)
        if a.dtype in _COMPACT and a.ndim == 1 and a.flags.c_contiguous and a.size:
            # Kept as it is (no int32 copy of a long text): check in blocks.
            for i in range(0, a.size, _vocab.CHUNK):
                block = a[i:i + _vocab.CHUNK]
                lo, hi = int(block.min()), int(block.max())
                if lo < 0 or hi >= model.vocab_size:
                    raise ValueError(f"data holds id {lo if lo < 0 else hi}, outside "
                                     f"[0, {model.vocab_size})")
            return a
        return as_ids(a.reshape(1, -1), model.vocab_size, "data")[0]

    # ------------------------------------------------------------ evaluation
    @property
    def ema_loss(self) -> float:
        """The bias-corrected moving average of the training loss (nats/char);
        NaN before the first step."""
        if self.step_count == 0:
            return math.nan
        return self._ema_sum / (1.0 - self.ema_decay ** self.step_count)

    def evaluate(self, ids: Optional[np.ndarray] = None, *, text: Optional[str] = None
                 ) -> float:
        """The validation loss: the mean cross-entropy in nats per character
        over the validation text (or ``ids``, or ``text``), as one pass over
        it with the state carried scores it (only its first character is
        predicted from a zero state); no dropout. Read as up to
        ``batch_size`` streams in chunks of ``seq_length``, each stream warmed
        up on the text before it: see :func:`pycharrnn.train.evaluate`.
        Does not change the training state."""
        if text is not None:
            if ids is not None:
                raise ValueError("give ids or text, not both")
            if not isinstance(text, str):
                raise TypeError(f"text must be a str, got {type(text).__name__}")
            ids = self._encode(self.model, text)
        elif ids is None:
            ids = self.val_ids
            if ids.size < 2:
                raise ValueError("no validation text (val_fraction=0?)")
        else:
            ids = as_ids(np.asarray(ids).reshape(1, -1), self.model.vocab_size, "ids")[0]
        return evaluate(self.model, ids, self.batches.batch_size, self.batches.seq_length,
                        group=self.group)

    # ------------------------------------------------------------------ steps
    def _diverged(self, what: str, value: float) -> TrainingDiverged:
        return TrainingDiverged(
            f"training diverged at step {self.step_count + 1}: the {what} is {value}. "
            f"No checkpoint was written from it (the last is from step {self.step_count} "
            "or earlier). "
            f"Lower the learning rate (now {self.optimizer.lr:g}) or clip the gradients "
            "(clip_norm / clip_value).")

    def step(self) -> Dict[str, float]:
        """One chunk: forward, backward, optimizer update; then validation and
        checkpoints when they are due."""
        t0 = self._step_start = time.perf_counter()
        b = self.batches
        x, y, wrapped = b.next()
        if wrapped:
            self.state = self.model.initial_state(b.rows)
        if self.schedule is not None:
            if getattr(self.schedule, "by_time", False):
                self.optimizer.lr = self.schedule.lr(self.step_count + 1, b.epoch_float,
                                                     self.clock)
            else:
                self.optimizer.lr = self.schedule.lr(self.step_count + 1, b.epoch_float)
        # A rank's rows get their dropout masks of the whole batch.
        loss, state = self.model.forward_backward(
            x, y, self.state, rows=None if self.group is None else (b.first_row, b.batch_size))
        if self.group is not None:
            loss = self._reduce(loss)
        if not _finite(loss):
            raise self._diverged("loss", loss)
        gnorm = self.optimizer.grad_norm()
        if not _finite(gnorm):
            raise self._diverged("gradient norm", gnorm)
        self.optimizer.step(grad_norm=gnorm)
        if not _finite(_core.sum_squares(self.model.flat_params)):
            raise self._diverged("parameter norm after the update", math.inf)
        self.state = state
        dt = time.perf_counter() - t0
        self.elapsed += dt
        self._step_seconds = dt
        m = self._record(loss, gnorm, self.optimizer.lr, b.epoch_float,
                         b.batch_size * b.seq_length, dt)
        return self._after_step(m, dt, self._emit("step", m))

    def _reduce(self, loss: float) -> float:
        """Distributed: average the gradients over the ranks and agree on the
        step's loss (the whole batch's mean), on whether to stop after it
        (any rank's wish), on the clock and on a validation by time (rank
        0's). Returns the loss."""
        g, s = self.group, self._scalars
        now = time.perf_counter() - self._clock_origin
        s[:] = 0.0
        s[0] = loss
        s[1] = 1.0 if self._wish_stop else 0.0
        if g.is_main:
            s[2] = now
            s[3] = 1.0 if self._eval_by_time(now) else 0.0
        g.average(self.model.flat_grads, s)
        self._stop = bool(s[1] > 0)
        self.clock = float(s[2])
        self._eval_due = bool(s[3] > 0)
        return float(s[0]) / g.size

    def _record(self, loss: float, gnorm: float, lr: float, epoch: float, chars: int,
                dt: float) -> Dict[str, float]:
        """Count a step made: EMA, its metrics, the history."""
        self.step_count += 1
        self._ema_sum = self.ema_decay * self._ema_sum + (1 - self.ema_decay) * loss
        m: Dict[str, float] = {
            "step": self.step_count, "loss": loss, "bpc": loss / LN2,
            "ema_loss": self.ema_loss, "lr": lr, "grad_norm": gnorm, "epoch": epoch,
            "chars_per_sec": chars / dt if dt > 0 else math.inf,
        }
        self.history.append({k: m[k] for k in _HISTORY_KEYS})
        if self.grad_norms_every and self.step_count % self.grad_norms_every == 0:
            # model.grads still hold this step's gradient (the last of a C++ run of
            # steps, which ends at such a step: see _steps_fusable)
            m["grad_norms"] = {k: math.sqrt(_core.sum_squares(g.reshape(-1)))
                               for k, g in self.model.grads.items()}
        return m

    def _eval_by_time(self, clock: float) -> bool:
        """Whether ``eval_every_seconds`` asks for a validation at ``clock``
        (never sooner than 9 validations' time after the last)."""
        return self.eval_every_seconds is not None and clock >= \
            self._last_eval_clock + max(self.eval_every_seconds, 9 * self._last_eval_seconds)

    def _after_step(self, m: Dict[str, float], dt: float, stop: bool) -> Dict[str, float]:
        """Validation and checkpoints due after the step of metrics ``m``."""
        b = self.batches
        epoch_end = b.at_epoch_end
        by_time = self._eval_due if self.group is not None else \
            self._eval_by_time(self.clock + dt)
        if self.val_ids.size and ((self.eval_every and self.step_count % self.eval_every == 0)
                                  or epoch_end or by_time):
            stop = self._validate(m, scheduled=True) or stop
        if self.checkpoint_dir is not None and (
                (self.checkpoint_every and self.step_count % self.checkpoint_every == 0)
                or (epoch_end and self.checkpoint_each_epoch)):
            self.save_checkpoint(self.checkpoint_dir / LATEST)
            stop = self._emit("checkpoint", m) or stop
        if self.group is None:
            self._stop = stop
        elif stop:  # stops every rank after the next step (see _reduce)
            self._wish_stop = True
        return m

    def _steps_fusable(self, limit: int) -> int:
        """How many steps (up to ``limit``) the next C++ call may make: 0 or
        1 when the next step needs Python around it."""
        if self.steps_per_call < 2 or limit < 2 or self.eval_every_seconds is not None or \
                getattr(self.schedule, "by_time", False) or self.group is not None:
            return 0
        if any(not getattr(cb, "batched_steps", False) for cb in self.callbacks):
            return 0
        if self._step_seconds <= 0:  # first measure a step (a big model's may take seconds)
            return 1
        b = self.batches
        if b.at_epoch_end:  # the next step starts a new pass: the state is reset first
            chunks = b.chunks_per_epoch
        else:
            chunks = (b.stream_length - b.position) // b.seq_length
        k = min(limit, self.steps_per_call, chunks,
                max(1, int(SECONDS_PER_CALL / self._step_seconds)))
        s = self.step_count
        for every in (self.eval_every if self.val_ids.size else None,
                      self.checkpoint_every if self.checkpoint_dir is not None else None,
                      self.grad_norms_every):
            if every:
                k = min(k, every - s % every)
        for cb in self.callbacks:
            due = getattr(cb, "due", None)
            if due is not None:
                for j in range(1, k):
                    if due(s + j):
                        k = j
                        break
        return k if self.optimizer.fusable else 0

    def _steps(self, k: int) -> List[Dict[str, float]]:
        """``k`` steps in one C++ call (``model._core.train_steps``), with the
        bits and the metrics of ``k`` calls of :meth:`step`; then what is due
        after the last."""
        t0 = self._step_start = time.perf_counter()
        b, model, opt = self.batches, self.model, self.optimizer
        if b.at_epoch_end:
            b.position = 0
            b.epoch += 1
            self.state = model.initial_state(b.rows)
        T = b.seq_length
        pos = b.position + T * np.arange(k, dtype=np.int64)
        chunk = b.ids[b._offsets[None] + pos[:, None, None]]
        xs = np.ascontiguousarray(chunk[:, :, :-1], dtype=np.int32)
        ys = np.ascontiguousarray(chunk[:, :, 1:], dtype=np.int32)
        epochs = [b.epoch + (p + T) / (b.chunks_per_epoch * T) for p in pos.tolist()]
        lrs = np.full(k, opt.lr)
        if self.schedule is not None:
            lrs[:] = [self.schedule.lr(self.step_count + 1 + j, epochs[j]) for j in range(k)]
        train = model.training and model.regularized
        seeds = np.array([model._dropout_seed() for _ in range(k)], np.uint64) if train \
            else None
        state = model.pack_state(self.state, b.rows)
        losses, norms = np.empty(k), np.empty(k)
        done, status = model._core.train_steps(model.flat_params, model.flat_grads, xs, ys,
                                               state, seeds, lrs, losses, norms,
                                               opt._fused_spec())
        made = done + (status == 3)  # the parameter check follows the update
        opt._fused_done(made, float(norms[made - 1]) if made else None)
        if made:
            opt.lr = float(lrs[made - 1])
        b.position += T * done
        self.state = model.unpack_state(state)
        model.state_grad = None  # only forward_backward fills it
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
            b.position += T
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
        v = self.evaluate()
        self._last_eval_seconds = time.perf_counter() - t0
        self._last_eval_clock = self.clock + (t0 - self._step_start) if self.group is None \
            else t0 - self._clock_origin
        m["val_loss"], m["val_bpc"] = v, v / LN2
        self.val_history.append({"step": self.step_count, "val_loss": v,
                                 "epoch": self.batches.epoch_float})
        if scheduled and self.schedule is not None:
            self.schedule.on_validation(v)
        if self.best_val_loss is None or v < self.best_val_loss:
            self.best_val_loss = v
            if self.checkpoint_dir is not None:
                self.save_checkpoint(self.checkpoint_dir / BEST)
        return self._emit("eval", m)

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop after the step in progress (then it
        validates and writes ``latest.npz`` as at any end). Safe to call from a
        signal handler or another thread."""
        self._stop_requested = True

    def _emit(self, event: str, m: Dict[str, float]) -> bool:
        stop = False
        for cb in self.callbacks:
            if cb(self, event, m) is False:
                stop = True
        return stop

    def run(self, steps: Optional[int] = None, seconds: Optional[float] = None,
            until_step: Optional[int] = None, validate_at_end: bool = True
            ) -> List[Dict[str, float]]:
        """Train for ``steps`` more steps, until the total step count reaches
        ``until_step``, or for ``seconds`` of wall time, whichever comes first
        (give at least one). A callback returning False or
        :meth:`request_stop` stops the run after the step in progress.

        However it stops (but by an exception), a run that made a step ends
        with a validation at its last step, unless that step was just
        validated or ``validate_at_end`` is False (so ``val_history``,
        ``best_val_loss`` and ``best.npz`` always hold the final model), and
        with a checkpoint_dir ``latest.npz`` is written."""
        if steps is None and seconds is None and until_step is None:
            raise ValueError("give steps, until_step, seconds, or a combination")
        target = math.inf
        if steps is not None:
            target = self.step_count + check_int("steps", steps, 0)
        if until_step is not None:
            target = min(target, check_int("until_step", until_step, 0))
        start = time.perf_counter()
        clock0 = self.clock
        self._clock_origin = start - clock0
        done: List[Dict[str, float]] = []
        self._stop = self._wish_stop = False
        alone = self.group is None
        while self.step_count < target and not self._stop and \
                not (alone and self._stop_requested):
            now = time.perf_counter() - start
            if alone:
                self.clock = clock0 + now
                if seconds is not None and now >= seconds:
                    break
            elif self._stop_requested or (seconds is not None and now >= seconds):
                self._wish_stop = True  # every rank makes one more step, then stops
            limit = target - self.step_count
            if seconds is not None and self._step_seconds > 0:
                limit = min(limit, max(1, int((seconds - now) / self._step_seconds)))
            k = self._steps_fusable(int(min(limit, 1 << 30)))
            if k > 1:
                done.extend(self._steps(k))
            else:
                done.append(self.step())
        self.clock = clock0 + time.perf_counter() - start
        if not alone:  # rank 0's (the by-time schedule's clock must agree)
            self.clock = float(self.group.broadcast(np.array([self.clock]))[0])
        self._stop_requested = self._wish_stop = False
        last_val = self.val_history[-1]["step"] if self.val_history else None
        if done and validate_at_end and self.val_ids.size and last_val != self.step_count:
            self._validate(done[-1], scheduled=False)
        if self.checkpoint_dir is not None and done:
            self.save_checkpoint(self.checkpoint_dir / LATEST)
        return done

    # ------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: Any) -> None:
        """Everything exact resume needs, in one file, written atomically:
        parameters, optimizer and schedule state, step, epoch, data position,
        carried hidden state, RNG state, histories, vocab and config
        (:func:`pycharrnn.rundir.save_training`)."""
        if not _finite(_core.sum_squares(self.model.flat_params)):
            raise TrainingDiverged("refusing to checkpoint a model with NaN or infinite "
                                   "parameters")
        b = self.batches
        state = self.model.pack_state(self.state, b.rows)
        if self.group is not None:
            state = self.group.gather_rows(state)  # the whole batch's, on rank 0
            if not self.group.is_main:
                return
        trainer = {
            "step": self.step_count, "epoch": b.epoch, "position": b.position,
            "batch_size": b.batch_size, "seq_length": b.seq_length,
            "val_fraction": self.val_fraction, "eval_every": self.eval_every,
            "eval_every_seconds": self.eval_every_seconds,
            "checkpoint_every": self.checkpoint_every,
            "checkpoint_each_epoch": self.checkpoint_each_epoch,
            "ema_decay": self.ema_decay, "ema_sum": self._ema_sum,
            "ema_loss": self.ema_loss if self.step_count else None,
            "best_val_loss": self.best_val_loss, "elapsed": self.elapsed,
            "clock": self.clock, "data": self.data_fingerprint,
        }
        save_training(path, self.model, TrainingState(
            trainer=trainer, optimizer=self.optimizer.state_dict(),
            schedule=self.schedule.state_dict() if self.schedule is not None else None,
            rng=self.model.rng_state, state=state,
            history={k: [h[k] for h in self.history] for k in _HISTORY_KEYS},
            val_history={k: [h[k] for h in self.val_history] for k in _VAL_KEYS}))

    @classmethod
    def resume(cls, path: Any, data: Union[str, np.ndarray],
               callbacks: Optional[Sequence[Callable[..., Any]]] = None,
               checkpoint_dir: Optional[Any] = "auto", distributed: Any = False,
               **overrides: Any) -> "Trainer":
        """Continue a run from a checkpoint file or run directory, exactly as if
        it had never stopped. ``data`` must be the same text (checked by length
        and hash). ``overrides`` may change eval_every, checkpoint_every and
        checkpoint_each_epoch; anything else that differs from the checkpoint
        raises ValueError naming it. checkpoint_dir defaults to the
        checkpoint's directory; resuming into it removes the temporary files
        a killed write left there.

        ``distributed``: as for :class:`Trainer`; rank 0 reads the checkpoint
        and sends it to the others, so only rank 0 needs to see the run
        directory. A run may resume on any number of ranks (each takes its
        streams' part of the saved state)."""
        from .distributed import as_group

        bad = [k for k in overrides if k not in _FIXED | _FREE]
        if bad:
            raise TypeError(f"unknown resume options: {bad}")
        group = as_group(distributed)
        if group is None:
            src = resolve(path)
            model, ts = load_training(src)
        else:  # only rank 0 need see the file
            src = Path(group.on_main(lambda: str(resolve(path))))
            model, ts = load_training(src, blob=group.on_main(src.read_bytes))
        t = ts.trainer
        clash = [f"{k}={overrides[k]!r} (checkpoint: {t[k]!r})" for k in _FIXED & set(overrides)
                 if overrides[k] != t[k]]
        if clash:
            raise ValueError("cannot resume with a different " + ", ".join(clash))
        ids = cls._encode(model, data)
        fp = fingerprint(ids)
        if fp != t["data"]:
            raise ValueError(f"the training data differs from the checkpoint's: "
                             f"{count(fp['length'], 'character')} (sha256 "
                             f"{fp['sha256'][:12]}...) vs {t['data']['length']:,} (sha256 "
                             f"{t['data']['sha256'][:12]}...)")
        try:
            opt = from_state_dict(model, ts.optimizer)
        except ValueError as e:
            raise CheckpointError(f"{src}: {e}") from None
        schedule = None
        if ts.schedule is not None:
            schedule = from_config(ts.schedule["config"])
            schedule.load_state_dict(ts.schedule)
        if checkpoint_dir == "auto":
            checkpoint_dir = src.parent
        if checkpoint_dir is not None and (group is None or group.is_main):
            remove_temporaries(checkpoint_dir)  # this process owns the directory now
        kw = {k: overrides.get(k, t.get(k)) for k in _FREE}
        tr = cls(model, ids, batch_size=t["batch_size"], seq_length=t["seq_length"],
                 optimizer=opt, schedule=schedule, val_fraction=t["val_fraction"],
                 checkpoint_dir=checkpoint_dir, ema_decay=t["ema_decay"], callbacks=callbacks,
                 distributed=group, **kw)
        tr.step_count = int(t["step"])
        tr.batches.epoch, tr.batches.position = int(t["epoch"]), int(t["position"])
        if "ema_sum" in t:
            tr._ema_sum = float(t["ema_sum"])
        else:  # written before the bias correction: an average started at ln(V)
            tr._ema_sum = float(t["ema_loss"]) - \
                tr.ema_decay ** tr.step_count * math.log(model.vocab_size)
        tr.best_val_loss = t["best_val_loss"]
        tr.elapsed = float(t["elapsed"])
        tr.clock = float(t.get("clock", t["elapsed"]))  # older checkpoints: step time only
        tr._last_eval_clock = tr.clock
        b = tr.batches
        if ts.state.ndim != 4 or ts.state.shape[2] != b.batch_size:
            raise CheckpointError(f"{path}: the carried state has shape "
                                  f"{ts.state.shape}, not that of batch_size={b.batch_size}")
        tr.state = model.unpack_state(
            np.ascontiguousarray(ts.state[:, :, b.first_row:b.first_row + b.rows]))
        tr.history = _rows(ts.history, _HISTORY_KEYS)
        tr.val_history = _rows(ts.val_history, _VAL_KEYS)
        model.rng_state = ts.rng
        return tr


def _rows(columns: Dict[str, np.ndarray], keys: Sequence[str]) -> List[Dict[str, Any]]:
    """Per-metric arrays as one dict per step ("step" as an int)."""
    n = len(columns["step"])
    rows = [{k: float(columns[k][i]) for k in keys} for i in range(n)]
    for r in rows:
        r["step"] = int(r["step"])
    return rows


def check_compatible(saved: Dict[str, Any], requested: Dict[str, Any]) -> None:
    """Raise ValueError naming every key whose requested value differs from
    the saved one (keys absent from ``requested`` or set to None are ignored)."""
    diff = [f"{k}: checkpoint has {saved.get(k)!r}, asked for {v!r}"
            for k, v in requested.items() if v is not None and saved.get(k) != v]
    if diff:
        raise ValueError("the checkpoint's configuration does not match: " + "; ".join(diff))
