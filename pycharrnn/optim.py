"""Optimizers: one fused C++ update over the model's flat parameter buffer."""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

import numpy as np

from . import _core

__all__ = ["Optimizer", "AdaGrad"]


def _positive(name: str, value: Any, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return v


class Optimizer:
    """Base class: owns flat state buffers shaped like ``model.flat_params``.

    ``clip_value`` clips each gradient element to [-clip_value, clip_value];
    ``clip_norm`` first rescales the whole gradient so that its global L2
    norm is at most clip_norm. ``last_grad_norm`` is the norm before clipping
    (computed only when clip_norm is set).
    """

    def __init__(self, model, lr: float, clip_value: Optional[float] = None,
                 clip_norm: Optional[float] = None):
        self.model = model
        self.lr = _positive("lr", lr)
        self.clip_value = None if clip_value is None else _positive("clip_value", clip_value)
        self.clip_norm = None if clip_norm is None else _positive("clip_norm", clip_norm)
        self.step_count = 0
        self.last_grad_norm: Optional[float] = None

    def _scale(self) -> float:
        if self.clip_norm is None:
            return 1.0
        norm = float(np.linalg.norm(self.model.flat_grads.astype(np.float64, copy=False)))
        self.last_grad_norm = norm
        return self.clip_norm / norm if norm > self.clip_norm else 1.0

    def step(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def _buffers(self) -> Dict[str, np.ndarray]:
        return {}

    def state_dict(self) -> Dict[str, Any]:
        """Copies of the state buffers plus the step count and hyper-parameters."""
        return {"type": type(self).__name__, "step_count": self.step_count,
                "lr": self.lr, **{k: v.copy() for k, v in self._buffers().items()}}

    def load_state_dict(self, d: Dict[str, Any]) -> None:
        if d.get("type") != type(self).__name__:
            raise ValueError(f"optimizer state is for {d.get('type')!r}, "
                             f"not {type(self).__name__}")
        bufs = self._buffers()
        for k, buf in bufs.items():
            a = np.asarray(d[k])
            if a.shape != buf.shape:
                raise ValueError(f"optimizer state {k!r}: shape {a.shape} does not match "
                                 f"the model's {buf.shape}")
        for k, buf in bufs.items():
            buf[...] = d[k]
        self.step_count = int(d["step_count"])
        self.lr = float(d["lr"])


class AdaGrad(Optimizer):
    """AdaGrad: ``mem += g*g`` then

    - ``eps_inside_sqrt=False`` (torch.optim.Adagrad): ``p -= lr * g / (sqrt(mem) + eps)``
    - ``eps_inside_sqrt=True`` (min-char-rnn): ``p -= lr * g / sqrt(mem + eps)``

    with g the clipped gradient (see :class:`Optimizer`).
    """

    def __init__(self, model, lr: float = 0.01, eps: float = 1e-10,
                 clip_value: Optional[float] = None, clip_norm: Optional[float] = None,
                 eps_inside_sqrt: bool = False):
        super().__init__(model, lr, clip_value, clip_norm)
        self.eps = _positive("eps", eps, allow_zero=True)
        self.eps_inside_sqrt = bool(eps_inside_sqrt)
        self.mem = np.zeros_like(model.flat_params)

    def _buffers(self) -> Dict[str, np.ndarray]:
        return {"mem": self.mem}

    def step(self) -> None:
        """Apply ``model.grads`` to the parameters in one fused C++ loop."""
        scale = self._scale()
        _core.adagrad_update(self.model.flat_params, self.model.flat_grads, self.mem, self.lr,
                             self.eps, self.clip_value or 0.0, scale, self.eps_inside_sqrt)
        self.step_count += 1
