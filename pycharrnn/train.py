"""The training loop: B parallel streams over a text, truncated BPTT in chunks of T."""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np

from .errors import PyCharRNNError
from .model import CharRNN, _check_int
from .optim import AdaGrad, Optimizer

__all__ = ["Batches", "Trainer"]

LN2 = math.log(2.0)


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
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) > np.iinfo(np.int32).max):
            raise ValueError("ids must be in [0, 2**31)")
        ids = np.ascontiguousarray(ids, dtype=np.int32)
        need = self.batch_size * self.seq_length + 1
        if ids.size < need:
            raise ValueError(
                f"the text has {ids.size} characters; batch_size={self.batch_size} and "
                f"seq_length={self.seq_length} need at least {need} "
                "(batch_size * seq_length + 1): use a longer text or smaller sizes")
        self.ids = ids
        self.stream_length = (ids.size - 1) // self.batch_size
        self.position = 0
        self.epoch = 0
        self._offsets = (np.arange(self.batch_size) * self.stream_length)[:, None] + \
            np.arange(self.seq_length + 1)[None, :]

    @property
    def chunks_per_epoch(self) -> int:
        return self.stream_length // self.seq_length

    def next(self):
        """(x, y, wrapped): int32 [B, T] inputs and targets; wrapped is True when
        this chunk starts a new pass over the text."""
        wrapped = False
        if self.position + self.seq_length > self.stream_length:
            self.position = 0
            self.epoch += 1
            wrapped = True
        chunk = self.ids[self._offsets + self.position]
        self.position += self.seq_length
        return (np.ascontiguousarray(chunk[:, :-1]), np.ascontiguousarray(chunk[:, 1:]),
                wrapped)


class Trainer:
    """Trains a CharRNN on a text (or ids) with truncated BPTT.

    The hidden state is carried (detached) from chunk to chunk and reset to
    zeros when the streams wrap around. The default optimizer is
    min-char-rnn's AdaGrad (eps 1e-8 inside the square root, every gradient
    element clipped to [-5, 5]) with lr 0.02: min-char-rnn's lr 0.1 suits its
    loss summed over 25 characters; this loss is a mean over B*T, so the
    gradients are far smaller and eps weighs more (on tinyshakespeare, H=128,
    B=32, T=50, 300 steps: lr 0.1 stalls at 3.2 nats, lr 0.02 reaches 2.25).

    Each step's metrics: step, loss (nats/char), bpc (bits/char), ema_loss
    (min-char-rnn's smoothing, 0.999), epoch (fractional), chars_per_sec.
    """

    def __init__(self, model: CharRNN, data: Union[str, np.ndarray], batch_size: int = 32,
                 seq_length: int = 50, optimizer: Optional[Optimizer] = None,
                 ema_decay: float = 0.999):
        if isinstance(data, str):
            if model.vocab is None:
                raise ValueError("training on text needs a model built with a Vocab")
            if not data:
                raise ValueError("the training text is empty")
            ids = model.vocab.encode(data)
        else:
            from .model import as_ids

            ids = as_ids(np.asarray(data).reshape(1, -1), model.vocab_size, "data")[0]
        self.model = model
        self.batches = Batches(ids, batch_size, seq_length)
        self.optimizer = optimizer if optimizer is not None else AdaGrad(
            model, lr=0.02, eps=1e-8, clip_value=5.0, eps_inside_sqrt=True)
        self.ema_decay = float(ema_decay)
        self.ema_loss = math.log(model.vocab_size)
        self.state = model.initial_state(self.batches.batch_size)
        self.step_count = 0
        self.history: List[Dict[str, float]] = []

    def step(self) -> Dict[str, float]:
        """One chunk: forward, backward, optimizer update."""
        t0 = time.perf_counter()
        x, y, wrapped = self.batches.next()
        if wrapped:
            self.state = self.model.initial_state(self.batches.batch_size)
        loss, self.state = self.model.forward_backward(x, y, self.state)
        if not math.isfinite(loss):
            raise PyCharRNNError(
                f"the loss became {loss} at step {self.step_count + 1}: training diverged; "
                "lower the learning rate or clip the gradients")
        self.optimizer.step()
        self.step_count += 1
        self.ema_loss = self.ema_decay * self.ema_loss + (1 - self.ema_decay) * loss
        dt = time.perf_counter() - t0
        b = self.batches
        m = {
            "step": self.step_count,
            "loss": loss,
            "bpc": loss / LN2,
            "ema_loss": self.ema_loss,
            "epoch": b.epoch + b.position / max(1, b.stream_length),
            "chars_per_sec": x.size / dt if dt > 0 else float("inf"),
        }
        self.history.append(m)
        return m

    def run(self, steps: Optional[int] = None, seconds: Optional[float] = None,
            callback: Optional[Callable[[Dict[str, float]], Any]] = None) -> List[Dict[str, float]]:
        """Train until ``steps`` more steps or ``seconds`` of wall time,
        whichever comes first (at least one must be given). ``callback`` gets
        each step's metrics; returning False from it stops the run."""
        if steps is None and seconds is None:
            raise ValueError("give steps, seconds or both")
        if steps is not None:
            steps = _check_int("steps", steps, 0)
        start = time.perf_counter()
        done: List[Dict[str, float]] = []
        while steps is None or len(done) < steps:
            if seconds is not None and time.perf_counter() - start >= seconds:
                break
            m = self.step()
            done.append(m)
            if callback is not None and callback(m) is False:
                break
        return done
