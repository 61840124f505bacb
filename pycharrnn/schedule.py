"""Learning-rate schedules. The trainer asks ``lr(step, epoch)`` before every
update (step counts from 1, epoch is fractional) and reports each validation
loss to ``on_validation``; ``state_dict`` holds what exact resume needs.

A schedule with ``by_time = True`` (:class:`CosineToDeadline`) is asked
``lr(step, epoch, seconds)`` instead, ``seconds`` being the run's training
clock (:attr:`pycharrnn.Trainer.clock`): it follows wall time, so it is not
reproducible step for step as the others are."""

from __future__ import annotations

import math
from typing import Any, Dict, Optional


class Schedule:
    """Base: a constant learning rate ``base_lr``."""

    #: True for schedules of the training clock, asked lr(step, epoch, seconds).
    by_time = False

    def __init__(self, base_lr: float):
        if not (isinstance(base_lr, (int, float)) and math.isfinite(base_lr) and base_lr > 0):
            raise ValueError(f"base_lr must be a positive number, got {base_lr!r}")
        self.base_lr = float(base_lr)

    def lr(self, step: int, epoch: float) -> float:
        return self.base_lr

    def on_validation(self, loss: float) -> None:
        """Called with every validation loss (plateau schedules react)."""

    def config(self) -> Dict[str, Any]:
        return {"type": type(self).__name__, "base_lr": self.base_lr}

    def state_dict(self) -> Dict[str, Any]:
        return {"config": self.config()}

    def load_state_dict(self, d: Dict[str, Any]) -> None:
        if d.get("config") != self.config():
            raise ValueError(f"schedule state {d.get('config')} does not match {self.config()}")


class Constant(Schedule):
    """The same learning rate throughout."""


class StepDecay(Schedule):
    """Multiply by ``gamma`` every ``every`` epochs (or steps, ``unit="step"``)
    from ``start`` on: lr = base * gamma^n, n = floor((t - start) / every) + 1
    for t >= start, else 0. char-rnn's default (x0.97 after each epoch from
    epoch 10 on) is ``StepDecay(lr, gamma=0.97, every=1, start=10)``."""

    def __init__(self, base_lr: float, gamma: float = 0.97, every: float = 1.0,
                 start: float = 10.0, unit: str = "epoch"):
        super().__init__(base_lr)
        if not 0 < gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        if not every > 0:
            raise ValueError(f"every must be > 0, got {every}")
        if unit not in ("epoch", "step"):
            raise ValueError(f"unit must be 'epoch' or 'step', got {unit!r}")
        self.gamma, self.every, self.start, self.unit = float(gamma), float(every), \
            float(start), unit

    def lr(self, step: int, epoch: float) -> float:
        t = epoch if self.unit == "epoch" else float(step)
        n = math.floor((t - self.start) / self.every) + 1 if t >= self.start else 0
        return self.base_lr * self.gamma ** n

    def config(self) -> Dict[str, Any]:
        return {**super().config(), "gamma": self.gamma, "every": self.every,
                "start": self.start, "unit": self.unit}


class CosineWarmup(Schedule):
    """Linear warm-up from 0 over ``warmup_steps``, then a cosine from
    base_lr down to ``min_lr`` at ``total_steps`` (held after it)."""

    def __init__(self, base_lr: float, total_steps: int, warmup_steps: int = 0,
                 min_lr: float = 0.0):
        super().__init__(base_lr)
        if not (isinstance(total_steps, int) and total_steps >= 1):
            raise ValueError(f"total_steps must be an int >= 1, got {total_steps!r}")
        if not (isinstance(warmup_steps, int) and 0 <= warmup_steps <= total_steps):
            raise ValueError("warmup_steps must be an int in [0, total_steps]")
        if not 0 <= min_lr <= base_lr:
            raise ValueError("min_lr must be in [0, base_lr]")
        self.total_steps, self.warmup_steps, self.min_lr = total_steps, warmup_steps, \
            float(min_lr)

    def lr(self, step: int, epoch: float) -> float:
        if step <= self.warmup_steps:
            return self.base_lr * step / max(1, self.warmup_steps)
        span = max(1, self.total_steps - self.warmup_steps)
        frac = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * frac))

    def config(self) -> Dict[str, Any]:
        return {**super().config(), "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "min_lr": self.min_lr}


class CosineToDeadline(Schedule):
    """A cosine from base_lr down to ``min_lr`` over ``seconds`` of the
    run's training clock (wall time, validations and checkpoints included),
    held after it, times a linear warm-up over the first ``warmup_steps``:
    ``lr = base_lr * min(1, step / warmup_steps) * cosine``. For runs with a
    time budget (``pycharrnn train --time``), whose step count is not known
    in advance: the rate reaches its floor at the deadline whatever the
    machine's speed."""

    by_time = True

    def __init__(self, base_lr: float, seconds: float, warmup_steps: int = 0,
                 min_lr: float = 0.0):
        super().__init__(base_lr)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or \
                not (math.isfinite(seconds) and seconds > 0):
            raise ValueError(f"seconds must be a positive number, got {seconds!r}")
        if not (isinstance(warmup_steps, int) and warmup_steps >= 0):
            raise ValueError(f"warmup_steps must be an int >= 0, got {warmup_steps!r}")
        if not 0 <= min_lr <= base_lr:
            raise ValueError("min_lr must be in [0, base_lr]")
        self.seconds, self.warmup_steps, self.min_lr = float(seconds), warmup_steps, \
            float(min_lr)

    def lr(self, step: int, epoch: float, seconds: float = 0.0) -> float:
        warm = min(1.0, step / self.warmup_steps) if self.warmup_steps else 1.0
        frac = min(1.0, max(0.0, seconds / self.seconds))
        cos = self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * frac))
        return warm * cos

    def config(self) -> Dict[str, Any]:
        return {**super().config(), "seconds": self.seconds,
                "warmup_steps": self.warmup_steps, "min_lr": self.min_lr}


class ReduceOnPlateau(Schedule):
    """Multiply by ``factor`` when the validation loss has not improved by more
    than ``threshold`` (relative) for ``patience`` validations; never below
    ``min_lr``."""

    def __init__(self, base_lr: float, factor: float = 0.5, patience: int = 2,
                 threshold: float = 1e-4, min_lr: float = 0.0):
        super().__init__(base_lr)
        if not 0 < factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        if not (isinstance(patience, int) and patience >= 0):
            raise ValueError(f"patience must be an int >= 0, got {patience!r}")
        self.factor, self.patience, self.threshold, self.min_lr = float(factor), patience, \
            float(threshold), float(min_lr)
        self.current = self.base_lr
        self.best: Optional[float] = None
        self.bad = 0

    def lr(self, step: int, epoch: float) -> float:
        return self.current

    def on_validation(self, loss: float) -> None:
        if self.best is None or loss < self.best * (1 - self.threshold):
            self.best, self.bad = loss, 0
            return
        self.bad += 1
        if self.bad > self.patience:
            self.current = max(self.min_lr, self.current * self.factor)
            self.bad = 0

    def config(self) -> Dict[str, Any]:
        return {**super().config(), "factor": self.factor, "patience": self.patience,
                "threshold": self.threshold, "min_lr": self.min_lr}

    def state_dict(self) -> Dict[str, Any]:
        return {**super().state_dict(), "current": self.current, "best": self.best,
                "bad": self.bad}

    def load_state_dict(self, d: Dict[str, Any]) -> None:
        super().load_state_dict(d)
        self.current, self.best, self.bad = float(d["current"]), d["best"], int(d["bad"])


SCHEDULES = {c.__name__: c for c in (Constant, StepDecay, CosineWarmup, CosineToDeadline,
                                      ReduceOnPlateau)}


def from_config(cfg: Dict[str, Any]) -> Schedule:
    """Rebuild a schedule from its ``config()``."""
    cfg = dict(cfg)
    cls = SCHEDULES.get(cfg.pop("type", None))
    if cls is None:
        raise ValueError(f"unknown schedule in {cfg}")
    return cls(**cfg)
