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

from .checks import check_choice, check_int, check_number


class Schedule:
    """Base: a constant learning rate ``base_lr``."""

    #: True for schedules of the training clock, asked lr(step, epoch, seconds).
    by_time = False

    def __init__(self, base_lr: float):
        self.base_lr = float(check_number("base_lr", base_lr, 0, lo_open=True))

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
        self.gamma = float(check_number("gamma", gamma, 0, 1, lo_open=True))
        self.every = float(check_number("every", every, 0, lo_open=True))
        self.start = float(check_number("start", start))
        self.unit = check_choice("unit", unit, ("epoch", "step"))

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
        self.total_steps = check_int("total_steps", total_steps, 1)
        self.warmup_steps = check_int("warmup_steps", warmup_steps, 0, self.total_steps)
        self.min_lr = float(check_number("min_lr", min_lr, 0, self.base_lr))

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
        self.seconds = float(check_number("seconds", seconds, 0, lo_open=True))
        self.warmup_steps = check_int("warmup_steps", warmup_steps, 0)
        self.min_lr = float(check_number("min_lr", min_lr, 0, self.base_lr))

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
        self.factor = float(check_number("factor", factor, 0, 1, lo_open=True, hi_open=True))
        self.patience = check_int("patience", patience, 0)
        self.threshold = float(check_number("threshold", threshold, 0))
        self.min_lr = float(check_number("min_lr", min_lr, 0))
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


#: The schedules by the names ``pycharrnn train --schedule`` takes.
NAMES = ("constant", "step", "cosine", "plateau")


def create(name: str, lr: float, steps: Optional[int] = None, seconds: Optional[float] = None,
           warmup: int = 0, decay: float = 0.97, decay_after: float = 10.0
           ) -> Optional[Schedule]:
    """The schedule ``name`` (one of :data:`NAMES`) from the base rate
    ``lr``, as ``pycharrnn train --schedule`` makes it: "constant" is None
    (the optimizer's rate is left alone); "step" multiplies by ``decay``
    every epoch from epoch ``decay_after`` (char-rnn's decay); "cosine"
    warms up over ``warmup`` steps, then runs a cosine to step ``steps``, or
    without them to the deadline ``seconds`` of the training clock;
    "plateau" multiplies by ``decay`` (0.5 when ``decay`` is 1) when the
    validation loss stalls."""
    check_choice("schedule", name, NAMES)
    if name == "step":
        return StepDecay(lr, gamma=decay, every=1, start=decay_after)
    if name == "cosine":
        if steps is not None:
            return CosineWarmup(lr, total_steps=steps, warmup_steps=warmup)
        if seconds is None:
            raise ValueError("schedule 'cosine' needs steps or seconds (the run's length)")
        return CosineToDeadline(lr, seconds=seconds, warmup_steps=warmup)
    if name == "plateau":
        return ReduceOnPlateau(lr, factor=decay if decay < 1 else 0.5)
    return None


def from_config(cfg: Dict[str, Any]) -> Schedule:
    """Rebuild a schedule from its ``config()``."""
    cfg = dict(cfg)
    cls = SCHEDULES.get(cfg.pop("type", None))
    if cls is None:
        raise ValueError(f"unknown schedule in {cfg}")
    return cls(**cfg)
