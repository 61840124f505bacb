"""The training loop: B parallel streams over a text, truncated BPTT in chunks
of T, validation, checkpoints and exact resume."""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from . import _core
from .checkpoint import (LATEST, CheckpointError, model_from, read_arrays,
                         remove_stale_temporaries, resolve, save_model)
from .errors import PyCharRNNError
from .model import CharRNN, _check_int, as_ids
from .optim import OPTIMIZERS, AdaGrad, Optimizer
from .schedule import Schedule, from_config
from . import vocab as _vocab
from .vocab import compact_dtype

__all__ = ["Batches", "Trainer", "TrainingDiverged", "BEST"]

LN2 = math.log(2.0)
#: The file a run directory's best checkpoint (lowest validation loss) is saved as.
BEST = "best.npz"
_HISTORY_KEYS = ("step", "loss", "ema_loss", "lr", "grad_norm", "epoch")


class TrainingDiverged(PyCharRNNError):
    """The loss, a gradient or a parameter became NaN or infinite."""


class Batches:
    """Cuts ids into ``batch_size`` contiguous streams, read in chunks of
    ``seq_length``: x[b] = ids[b*n + p : b*n + p + T], y = the next
    character of each (n = (len(ids) - 1) // B streams' length, p the
    position). When a chunk would run past the end of a stream the position
    wraps to 0 and ``next()`` reports it, so the caller resets its state.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_length: int):
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.seq_length = _check_int("seq_length", seq_length, 1)
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
                f"the training text has {ids.size} characters; batch_size={self.batch_size} "
                f"and seq_length={self.seq_length} need at least {need} "
                "(batch_size * seq_length + 1): use a longer text or smaller sizes")
        self.ids = ids
        self.stream_length = (ids.size - 1) // self.batch_size
        self.position = 0
        self.epoch = 0
        # 64-bit offsets: texts beyond 2**31 characters work.
        self._offsets = (np.arange(self.batch_size, dtype=np.int64) *
                         self.stream_length)[:, None] + \
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


def _fingerprint(ids: np.ndarray) -> Dict[str, Any]:
    """Length and SHA-256 of the ids as little-endian int32 (whatever their
    dtype), hashed in blocks."""
    h = hashlib.sha256()
    step = _vocab.CHUNK
    for i in range(0, ids.size, step):
        h.update(np.ascontiguousarray(ids[i:i + step], "<i4").data)
    return {"length": int(ids.size), "sha256": h.hexdigest()}


def _finite(x: float) -> bool:
    return math.isfinite(x)


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
        eval_every: validate every N steps (also at each epoch end).
        checkpoint_dir: where ``latest.npz`` (every ``checkpoint_every`` steps
            and/or each epoch end, and at the end of :meth:`run`) and
            ``best.npz`` (lowest validation loss) are written, atomically.
        callbacks: ``f(trainer, event, metrics)`` with event "step", "eval" or
            "checkpoint"; returning False stops :meth:`run` after that step.

    Step metrics: step, loss (nats/char), bpc, ema_loss (min-char-rnn's
    smoothing, 0.999), lr, grad_norm (before clipping), epoch, chars_per_sec;
    at validations also val_loss and val_bpc.

    A NaN or infinite loss, gradient or parameter raises
    :class:`TrainingDiverged` naming the step; no checkpoint is written from a
    diverged model.
    """

    def __init__(self, model: CharRNN, data: Union[str, np.ndarray], batch_size: int = 32,
                 seq_length: int = 50, optimizer: Optional[Optimizer] = None,
                 schedule: Optional[Schedule] = None, val_fraction: float = 0.1,
                 eval_every: Optional[int] = None, checkpoint_dir: Optional[Any] = None,
                 checkpoint_every: Optional[int] = None, checkpoint_each_epoch: bool = True,
                 ema_decay: float = 0.999,
                 callbacks: Optional[Sequence[Callable[..., Any]]] = None):
        ids = self._encode(model, data)
        if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or \
                not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
        n_val = int(round(ids.size * val_fraction))
        if val_fraction > 0 and n_val < 2:
            raise ValueError(f"val_fraction={val_fraction} of {ids.size} characters leaves "
                             "fewer than 2 for validation")
        self.model = model
        self.data_fingerprint = _fingerprint(ids)
        self.val_fraction = float(val_fraction)
        self.val_ids = ids[ids.size - n_val:] if n_val else ids[:0]
        self.batches = Batches(ids[:ids.size - n_val], batch_size, seq_length)
        self.optimizer = optimizer if optimizer is not None else AdaGrad(
            model, lr=0.02, eps=1e-8, clip_value=5.0, eps_inside_sqrt=True)
        if self.optimizer.model is not model:
            raise ValueError("the optimizer was made for another model")
        self.schedule = schedule
        self.eval_every = None if eval_every is None else _check_int("eval_every", eval_every, 1)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.checkpoint_every = None if checkpoint_every is None else \
            _check_int("checkpoint_every", checkpoint_every, 1)
        self.checkpoint_each_epoch = bool(checkpoint_each_epoch)
        self.ema_decay = float(ema_decay)
        self.ema_loss = math.log(model.vocab_size)
        self.best_val_loss: Optional[float] = None
        self.state = model.initial_state(self.batches.batch_size)
        self.step_count = 0
        self.elapsed = 0.0
        self.history: List[Dict[str, float]] = []
        self.val_history: List[Dict[str, float]] = []
        self.callbacks = list(callbacks or [])
        self._stop = False

    @staticmethod
    def _encode(model: CharRNN, data: Union[str, np.ndarray]) -> np.ndarray:
        if isinstance(data, str):
            if model.vocab is None:
                raise ValueError("training on text needs a model built with a Vocab")
            if not data:
                raise ValueError("the training text is empty")
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
    def evaluate(self, ids: Optional[np.ndarray] = None) -> float:
        """Mean loss (nats/char) over the validation text (or ``ids``), read as
        up to ``batch_size`` streams in chunks of ``seq_length``, state carried;
        no dropout. Does not change the training state."""
        if ids is None:
            ids = self.val_ids
        else:
            ids = as_ids(np.asarray(ids).reshape(1, -1), self.model.vocab_size, "ids")[0]
        if ids.size < 2:
            raise ValueError("no validation text (val_fraction=0?)")
        T = self.batches.seq_length
        B = max(1, min(self.batches.batch_size, (ids.size - 1) // T))
        n = (ids.size - 1) // B
        streams = ids[:B * n + 1]
        state = None
        total, count = 0.0, 0
        for p in range(0, n, T):
            t = min(T, n - p)
            idx = (np.arange(B, dtype=np.int64) * n)[:, None] + p + \
                np.arange(t + 1, dtype=np.int64)[None, :]
            chunk = streams[idx]  # compact ids: loss() converts them losslessly
            loss, state = self.model.loss(chunk[:, :-1], chunk[:, 1:], state)
            total += loss * B * t
            count += B * t
        return total / count

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
        t0 = time.perf_counter()
        b = self.batches
        x, y, wrapped = b.next()
        if wrapped:
            self.state = self.model.initial_state(b.batch_size)
        if self.schedule is not None:
            self.optimizer.lr = self.schedule.lr(self.step_count + 1, b.epoch_float)
        loss, state = self.model.forward_backward(x, y, self.state)
        if not _finite(loss):
            raise self._diverged("loss", loss)
        gnorm = self.optimizer.grad_norm()
        if not _finite(gnorm):
            raise self._diverged("gradient norm", gnorm)
        self.optimizer.step(grad_norm=gnorm)
        if not _finite(_core.sum_squares(self.model.flat_params)):
            raise self._diverged("parameter norm after the update", math.inf)
        self.state = state
        self.step_count += 1
        self.ema_loss = self.ema_decay * self.ema_loss + (1 - self.ema_decay) * loss
        dt = time.perf_counter() - t0
        self.elapsed += dt
        m: Dict[str, float] = {
            "step": self.step_count, "loss": loss, "bpc": loss / LN2,
            "ema_loss": self.ema_loss, "lr": self.optimizer.lr, "grad_norm": gnorm,
            "epoch": b.epoch_float, "chars_per_sec": x.size / dt if dt > 0 else math.inf,
        }
        self.history.append({k: m[k] for k in _HISTORY_KEYS})
        epoch_end = b.at_epoch_end
        stop = self._emit("step", m)
        if self.val_ids.size and ((self.eval_every and self.step_count % self.eval_every == 0)
                                  or epoch_end):
            v = self.evaluate()
            m["val_loss"], m["val_bpc"] = v, v / LN2
            self.val_history.append({"step": self.step_count, "val_loss": v,
                                     "epoch": b.epoch_float})
            if self.schedule is not None:
                self.schedule.on_validation(v)
            if self.best_val_loss is None or v < self.best_val_loss:
                self.best_val_loss = v
                if self.checkpoint_dir is not None:
                    self.save_checkpoint(self.checkpoint_dir / BEST)
            stop = self._emit("eval", m) or stop
        if self.checkpoint_dir is not None and (
                (self.checkpoint_every and self.step_count % self.checkpoint_every == 0)
                or (epoch_end and self.checkpoint_each_epoch)):
            self.save_checkpoint(self.checkpoint_dir / LATEST)
            stop = self._emit("checkpoint", m) or stop
        self._stop = stop
        return m

    def _emit(self, event: str, m: Dict[str, float]) -> bool:
        stop = False
        for cb in self.callbacks:
            if cb(self, event, m) is False:
                stop = True
        return stop

    def run(self, steps: Optional[int] = None, seconds: Optional[float] = None,
            until_step: Optional[int] = None) -> List[Dict[str, float]]:
        """Train for ``steps`` more steps, until the total step count reaches
        ``until_step``, or for ``seconds`` of wall time, whichever comes first
        (give at least one). A callback returning False stops the run. With a
        checkpoint_dir, ``latest.npz`` is written at the end."""
        if steps is None and seconds is None and until_step is None:
            raise ValueError("give steps, until_step, seconds, or a combination")
        target = math.inf
        if steps is not None:
            target = self.step_count + _check_int("steps", steps, 0)
        if until_step is not None:
            target = min(target, _check_int("until_step", until_step, 0))
        start = time.perf_counter()
        done: List[Dict[str, float]] = []
        self._stop = False
        while self.step_count < target and not self._stop:
            if seconds is not None and time.perf_counter() - start >= seconds:
                break
            done.append(self.step())
        if self.checkpoint_dir is not None and done:
            self.save_checkpoint(self.checkpoint_dir / LATEST)
        return done

    # ------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: Any) -> None:
        """Everything exact resume needs, in one file, written atomically:
        parameters, optimizer and schedule state, step, epoch, data position,
        carried hidden state, RNG state, histories, vocab and config."""
        if not _finite(_core.sum_squares(self.model.flat_params)):
            raise TrainingDiverged("refusing to checkpoint a model with NaN or infinite "
                                   "parameters")
        b = self.batches
        opt = self.optimizer.state_dict()
        trainer = {
            "step": self.step_count, "epoch": b.epoch, "position": b.position,
            "batch_size": b.batch_size, "seq_length": b.seq_length,
            "val_fraction": self.val_fraction, "eval_every": self.eval_every,
            "checkpoint_every": self.checkpoint_every,
            "checkpoint_each_epoch": self.checkpoint_each_epoch,
            "ema_decay": self.ema_decay, "ema_loss": self.ema_loss,
            "best_val_loss": self.best_val_loss, "elapsed": self.elapsed,
            "data": self.data_fingerprint,
        }
        extra = {
            "trainer": trainer,
            "optimizer": {"type": opt["type"], "step_count": opt["step_count"],
                          "hparams": opt["hparams"]},
            "schedule": self.schedule.state_dict() if self.schedule is not None else None,
            "rng": self.model._rng.bit_generator.state,
        }
        arrays = {f"optim/{k}": v for k, v in opt["buffers"].items()}
        arrays["train/state"] = self.model._pack_state(self.state, b.batch_size)
        for k in _HISTORY_KEYS:
            arrays[f"history/{k}"] = np.array([h[k] for h in self.history], np.float64)
        for k in ("step", "val_loss", "epoch"):
            arrays[f"val_history/{k}"] = np.array([h[k] for h in self.val_history], np.float64)
        save_model(self.model, path, extra=extra, extra_arrays=arrays)

    @classmethod
    def resume(cls, path: Any, data: Union[str, np.ndarray],
               callbacks: Optional[Sequence[Callable[..., Any]]] = None,
               checkpoint_dir: Optional[Any] = "auto", **overrides: Any) -> "Trainer":
        """Continue a run from a checkpoint file or run directory, exactly as if
        it had never stopped. ``data`` must be the same text (checked by length
        and hash). ``overrides`` may change eval_every, checkpoint_every and
        checkpoint_each_epoch; anything else that differs from the checkpoint
        raises ValueError naming it. checkpoint_dir defaults to the
        checkpoint's directory."""
        p = resolve(path)
        header, arrays = read_arrays(p)
        extra = header.get("extra") or {}
        if "trainer" not in extra:
            raise CheckpointError(f"{p} holds a model but no training state: it cannot be "
                                  "resumed (load it with pycharrnn.load)")
        t = extra["trainer"]
        fixed = {"batch_size", "seq_length", "val_fraction"}
        free = {"eval_every", "checkpoint_every", "checkpoint_each_epoch"}
        bad = [k for k in overrides if k not in fixed | free]
        if bad:
            raise TypeError(f"unknown resume options: {bad}")
        clash = [f"{k}={overrides[k]!r} (checkpoint: {t[k]!r})" for k in fixed & set(overrides)
                 if overrides[k] != t[k]]
        if clash:
            raise ValueError("cannot resume with a different " + ", ".join(clash))
        model = model_from(header, arrays, p)
        ids = cls._encode(model, data)
        fp = _fingerprint(ids)
        if fp != t["data"]:
            raise ValueError(f"the training data differs from the checkpoint's: "
                             f"{fp['length']} characters (sha256 {fp['sha256'][:12]}...) vs "
                             f"{t['data']['length']} (sha256 {t['data']['sha256'][:12]}...)")
        o = extra["optimizer"]
        opt_cls = {c.__name__: c for c in OPTIMIZERS.values()}.get(o["type"])
        if opt_cls is None:
            raise CheckpointError(f"{p}: unknown optimizer {o['type']!r}")
        hp = dict(o["hparams"])
        opt = opt_cls(model, **hp)
        opt.load_state_dict({"type": o["type"], "step_count": o["step_count"], "hparams": hp,
                             "buffers": {k[len("optim/"):]: v for k, v in arrays.items()
                                         if k.startswith("optim/")}})
        schedule = None
        if extra.get("schedule") is not None:
            schedule = from_config(extra["schedule"]["config"])
            schedule.load_state_dict(extra["schedule"])
        if checkpoint_dir == "auto":
            checkpoint_dir = p.parent
        if checkpoint_dir is not None:
            # A run killed while writing a checkpoint leaves its temporary file.
            remove_stale_temporaries(checkpoint_dir, (LATEST, BEST), p.stat().st_mtime)
        kw = {k: overrides.get(k, t[k]) for k in free}
        tr = cls(model, ids, batch_size=t["batch_size"], seq_length=t["seq_length"],
                 optimizer=opt, schedule=schedule, val_fraction=t["val_fraction"],
                 checkpoint_dir=checkpoint_dir, ema_decay=t["ema_decay"], callbacks=callbacks,
                 **kw)
        tr.step_count = int(t["step"])
        tr.batches.epoch, tr.batches.position = int(t["epoch"]), int(t["position"])
        tr.ema_loss = float(t["ema_loss"])
        tr.best_val_loss = t["best_val_loss"]
        tr.elapsed = float(t["elapsed"])
        tr.state = model._unpack_state(np.array(arrays["train/state"], dtype=model.dtype))
        n = len(arrays["history/step"])
        tr.history = [{k: float(arrays[f"history/{k}"][i]) for k in _HISTORY_KEYS}
                      for i in range(n)]
        for h in tr.history:
            h["step"] = int(h["step"])
        nv = len(arrays["val_history/step"])
        tr.val_history = [{"step": int(arrays["val_history/step"][i]),
                           "val_loss": float(arrays["val_history/val_loss"][i]),
                           "epoch": float(arrays["val_history/epoch"][i])} for i in range(nv)]
        model._rng.bit_generator.state = extra["rng"]
        return tr


def check_compatible(saved: Dict[str, Any], requested: Dict[str, Any]) -> None:
    """Raise ValueError naming every key whose requested value differs from
    the saved one (keys absent from ``requested`` or set to None are ignored)."""
    diff = [f"{k}: checkpoint has {saved.get(k)!r}, asked for {v!r}"
            for k, v in requested.items() if v is not None and saved.get(k) != v]
    if diff:
        raise ValueError("the checkpoint's configuration does not match: " + "; ".join(diff))
