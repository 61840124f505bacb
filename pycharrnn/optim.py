"""Optimizers: one fused C++ update over the model's flat parameter buffer.

Each matches its torch.optim namesake (keyword names, defaults and update
rule; float64 runs agree to ~1e-15 per step) and adds gradient clipping:

- ``clip_norm``: rescale the whole gradient so that its global L2 norm is at
  most clip_norm, as ``torch.nn.utils.clip_grad_norm_`` (factor
  ``clip_norm / (norm + 1e-6)`` when below 1). The norm before clipping is
  ``last_grad_norm``.
- ``clip_value``: then clip every element to [-clip_value, clip_value], as
  ``torch.nn.utils.clip_grad_value_``.

Clipping is applied inside the update; ``model.grads`` is never modified.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from .checks import check_number

__all__ = ["Optimizer", "SGD", "AdaGrad", "RMSProp", "Adam", "AdamW", "OPTIMIZERS",
           "DEFAULT_LR", "create", "from_state_dict"]


def _number(name: str, value: Any, lo: float = 0.0, lo_open: bool = False,
            hi: Optional[float] = None, hi_open: bool = False) -> float:
    """A hyper-parameter: a float, at least 0 unless said otherwise."""
    return float(check_number(name, value, lo, hi, lo_open=lo_open, hi_open=hi_open))


class Optimizer:
    """Base class: state buffers shaped like ``model.flat_params`` (same dtype).

    ``lr`` may be changed between steps (schedules do). ``step_count`` counts
    the updates applied.
    """

    #: hyper-parameters saved in state_dict (besides lr) and checked on load
    _hparams: Tuple[str, ...] = ()

    def __init__(self, model, lr: float, clip_value: Optional[float] = None,
                 clip_norm: Optional[float] = None):
        self.model = model
        self.lr = _number("lr", lr)
        self.clip_value = None if clip_value is None else \
            _number("clip_value", clip_value, lo_open=True)
        self.clip_norm = None if clip_norm is None else \
            _number("clip_norm", clip_norm, lo_open=True)
        self.step_count = 0
        self.last_grad_norm: Optional[float] = None
        self.buffers: Dict[str, np.ndarray] = {}

    def _zeros(self, *names: str) -> None:
        for n in names:
            self.buffers[n] = self.model.backend.zeros()

    def grad_norm(self) -> float:
        """Global L2 norm of the model's gradients (accumulated in double)."""
        return self.model.grad_norm()

    def step(self, grad_norm: Optional[float] = None) -> None:
        """Apply ``model.grads`` to the parameters in one fused loop of the
        model's backend. ``grad_norm``: the gradients' global norm when the
        caller has it already (clip_norm then needs no second pass over them)."""
        norm = 0.0
        if self.clip_norm is not None:
            norm = self.grad_norm() if grad_norm is None else float(grad_norm)
            self.last_grad_norm = norm
        self.model.backend.optimizer_step(self.spec(), self.lr, norm)
        self.step_count += 1

    @property
    def fusable(self) -> bool:
        """Whether the training loop of the core may make this optimizer's
        updates (:meth:`pycharrnn.CharRNN.train_steps`): only for the classes
        here, not for subclasses (which may change :meth:`step`, which the
        loop would bypass)."""
        return type(self) in OPTIMIZERS.values()

    def spec(self) -> Dict[str, Any]:
        """This optimizer as the core's update takes it: the kind, the
        updates made so far, the hyper-parameters and three buffers (None
        where the configuration has none)."""
        return {"step": self.step_count, "clip_norm": self.clip_norm or 0.0,
                "clip_value": self.clip_value or 0.0, **self._fields()}

    def _fields(self) -> Dict[str, Any]:
        raise NotImplementedError  # pragma: no cover

    def count_updates(self, updates: int, grad_norm: Optional[float]) -> None:
        """Account for ``updates`` made by the core's training loop, the
        last with the pre-clip gradient norm ``grad_norm``."""
        self.step_count += updates
        if updates and self.clip_norm is not None:
            self.last_grad_norm = grad_norm

    def hparams(self) -> Dict[str, Any]:
        return {k: getattr(self, k) for k in ("lr", "clip_value", "clip_norm") + self._hparams}

    def state_dict(self) -> Dict[str, Any]:
        """type, step_count, hyper-parameters and copies of the buffers."""
        self.model.backend.read_optimizer(self.spec()["buffers"])  # from a GPU
        return {"type": type(self).__name__, "step_count": self.step_count,
                "hparams": self.hparams(),
                "buffers": {k: v.copy() for k, v in self.buffers.items()}}

    def load_state_dict(self, d: Dict[str, Any]) -> None:
        """Restore a state_dict of the same optimizer type for the same model
        layout; everything is checked before anything changes."""
        if d.get("type") != type(self).__name__:
            raise ValueError(f"optimizer state is for {d.get('type')!r}, "
                             f"not {type(self).__name__}")
        hp = d.get("hparams", {})
        fixed = [k for k in self._hparams if k in hp and hp[k] != getattr(self, k)
                 and k in self._structural]
        if fixed:
            raise ValueError("optimizer state does not match: " + ", ".join(
                f"{k}={hp[k]!r} in the state, {getattr(self, k)!r} here" for k in fixed))
        bufs = d.get("buffers", {})
        if set(bufs) != set(self.buffers):
            raise ValueError(f"optimizer buffers {sorted(bufs)} do not match "
                             f"{sorted(self.buffers)}")
        for k, buf in self.buffers.items():
            a = np.asarray(bufs[k])
            if a.shape != buf.shape:
                raise ValueError(f"optimizer buffer {k!r}: shape {a.shape}, the model "
                                 f"needs {buf.shape}")
        for k, buf in self.buffers.items():
            buf[...] = bufs[k]
        self.model.backend.write_optimizer(self.spec()["buffers"])  # to a GPU
        for k, v in hp.items():
            if k in ("lr", "clip_value", "clip_norm") + self._hparams:
                setattr(self, k, v)
        self.step_count = int(d["step_count"])

    #: hyper-parameters that decide which buffers exist: must match on load
    _structural: Tuple[str, ...] = ()

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v}" for k, v in self.hparams().items() if v is not None)
        return f"{type(self).__name__}({hp})"


class SGD(Optimizer):
    """torch.optim.SGD: momentum, dampening, Nesterov, weight decay."""

    _hparams = ("momentum", "dampening", "weight_decay", "nesterov")
    _structural = ("momentum",)

    def __init__(self, model, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False,
                 clip_value: Optional[float] = None, clip_norm: Optional[float] = None):
        super().__init__(model, lr, clip_value, clip_norm)
        self.momentum = _number("momentum", momentum)
        self.dampening = _number("dampening", dampening)
        self.weight_decay = _number("weight_decay", weight_decay)
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        if self.momentum != 0:
            self._zeros("momentum_buffer")

    def _fields(self):
        b = self.buffers.get
        return {"kind": 0, "momentum": self.momentum, "dampening": self.dampening,
                "nesterov": self.nesterov, "weight_decay": self.weight_decay,
                "buffers": [b("momentum_buffer"), None, None]}


class AdaGrad(Optimizer):
    """torch.optim.Adagrad: ``sum += g*g``, ``p -= clr * g / (sqrt(sum) + eps)``
    with ``clr = lr / (1 + (step - 1) * lr_decay)``.

    ``eps_inside_sqrt=True`` gives min-char-rnn's form ``p -= clr * g /
    sqrt(sum + eps)`` (use eps=1e-8 there, as min-char-rnn does).
    """

    _hparams = ("lr_decay", "weight_decay", "eps", "eps_inside_sqrt")

    def __init__(self, model, lr: float = 1e-2, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, initial_accumulator_value: float = 0.0,
                 eps: float = 1e-10, clip_value: Optional[float] = None,
                 clip_norm: Optional[float] = None, eps_inside_sqrt: bool = False):
        super().__init__(model, lr, clip_value, clip_norm)
        self.lr_decay = _number("lr_decay", lr_decay)
        self.weight_decay = _number("weight_decay", weight_decay)
        self.eps = _number("eps", eps)
        self.eps_inside_sqrt = bool(eps_inside_sqrt)
        init = _number("initial_accumulator_value", initial_accumulator_value)
        self._zeros("sum")
        self.buffers["sum"][:] = init

    def _fields(self):
        return {"kind": 1, "lr_decay": self.lr_decay, "eps": self.eps,
                "eps_inside": self.eps_inside_sqrt, "weight_decay": self.weight_decay,
                "buffers": [self.buffers["sum"], None, None]}


class RMSProp(Optimizer):
    """torch.optim.RMSprop (alpha, eps, centered, momentum, weight decay).
    char-rnn uses alpha=0.95."""

    _hparams = ("alpha", "eps", "weight_decay", "momentum", "centered")
    _structural = ("momentum", "centered")

    def __init__(self, model, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False,
                 clip_value: Optional[float] = None, clip_norm: Optional[float] = None):
        super().__init__(model, lr, clip_value, clip_norm)
        self.alpha = _number("alpha", alpha, hi=1.0)
        self.eps = _number("eps", eps)
        self.weight_decay = _number("weight_decay", weight_decay)
        self.momentum = _number("momentum", momentum)
        self.centered = bool(centered)
        self._zeros("square_avg")
        if self.centered:
            self._zeros("grad_avg")
        if self.momentum > 0:
            self._zeros("momentum_buffer")

    def _fields(self):
        b = self.buffers.get
        return {"kind": 2, "alpha": self.alpha, "eps": self.eps, "momentum": self.momentum,
                "centered": self.centered, "weight_decay": self.weight_decay,
                "buffers": [b("square_avg"), b("grad_avg"), b("momentum_buffer")]}


class Adam(Optimizer):
    """torch.optim.Adam: bias-corrected moments; weight decay added to the
    gradient (L2). ``amsgrad`` keeps the running maximum of exp_avg_sq."""

    _hparams = ("betas", "eps", "weight_decay", "amsgrad")
    _structural = ("amsgrad",)
    _decoupled = False

    def __init__(self, model, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False,
                 clip_value: Optional[float] = None, clip_norm: Optional[float] = None):
        super().__init__(model, lr, clip_value, clip_norm)
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise TypeError("betas must be a pair (beta1, beta2)")
        self.betas = (_number("beta1", betas[0], hi=1.0, hi_open=True),
                      _number("beta2", betas[1], hi=1.0, hi_open=True))
        self.eps = _number("eps", eps)
        self.weight_decay = _number("weight_decay", weight_decay)
        self.amsgrad = bool(amsgrad)
        self._zeros("exp_avg", "exp_avg_sq")
        if self.amsgrad:
            self._zeros("max_exp_avg_sq")

    def load_state_dict(self, d: Dict[str, Any]) -> None:
        super().load_state_dict(d)
        self.betas = tuple(self.betas)  # JSON gives a list

    def _fields(self):
        b = self.buffers.get
        return {"kind": 3, "beta1": self.betas[0], "beta2": self.betas[1], "eps": self.eps,
                "decoupled": self._decoupled, "amsgrad": self.amsgrad,
                "weight_decay": self.weight_decay,
                "buffers": [b("exp_avg"), b("exp_avg_sq"), b("max_exp_avg_sq")]}


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay
    (``p *= 1 - lr * weight_decay`` before the update); default 0.01."""

    _decoupled = True

    def __init__(self, model, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False,
                 clip_value: Optional[float] = None, clip_norm: Optional[float] = None):
        super().__init__(model, lr, betas, eps, weight_decay, amsgrad, clip_value, clip_norm)


#: name -> class, for the command line and checkpoints
OPTIMIZERS = {"sgd": SGD, "adagrad": AdaGrad, "rmsprop": RMSProp, "adam": Adam, "adamw": AdamW}
#: The learning rate of each optimizer by name when none is given (:func:`create`).
#: The loss is a mean over B*T characters, so gradients are far smaller than
#: min-char-rnn's (a loss summed over 25): there lr 0.1 suits AdaGrad, here
#: 0.02 (tinyshakespeare, H=128, B=32, T=50, 300 steps: 0.1 stalls at 3.2
#: nats, 0.02 reaches 2.25).
DEFAULT_LR = {"sgd": 0.1, "adagrad": 0.02, "rmsprop": 2e-3, "adam": 2e-3, "adamw": 2e-3}


def create(name: str, model, lr: Optional[float] = None, clip_value: Optional[float] = None,
           clip_norm: Optional[float] = None, weight_decay: float = 0.0) -> Optimizer:
    """The optimizer ``name`` (a key of :data:`OPTIMIZERS`) for ``model``, as
    ``pycharrnn train --optimizer`` makes it: ``lr`` None is
    :data:`DEFAULT_LR`'s; "adagrad" is min-char-rnn's form (eps 1e-8 inside
    the square root); the other hyper-parameters are torch.optim's defaults.
    ``clip_value`` 0 means no clipping, as None."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    kw: Dict[str, Any] = dict(lr=DEFAULT_LR[name] if lr is None else lr,
                              clip_value=clip_value or None, clip_norm=clip_norm,
                              weight_decay=weight_decay)
    if name == "adagrad":
        kw.update(eps=1e-8, eps_inside_sqrt=True)
    return OPTIMIZERS[name](model, **kw)


def from_state_dict(model, d: Dict[str, Any]) -> Optimizer:
    """A new optimizer for ``model`` from a :meth:`Optimizer.state_dict`: its
    type and hyper-parameters, then its buffers and step count."""
    cls = {c.__name__: c for c in OPTIMIZERS.values()}.get(d.get("type"))
    if cls is None:
        raise ValueError(f"unknown optimizer {d.get('type')!r}")
    opt = cls(model, **dict(d["hparams"]))
    opt.load_state_dict(d)
    return opt
