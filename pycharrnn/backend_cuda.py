"""The CUDA backend: a model whose parameters, gradients and optimizer state
live on a GPU (a CUDA build: ``pip install . -C cmake.define.PYCHARRNN_CUDA=ON``).

:class:`CUDABackend` has :class:`pycharrnn.backend.CPUBackend`'s methods.
Per training step only the batch's ids go to the device and only the loss
and gradient norm come back. What differs, as with PyTorch's tensors on a
GPU: ``params`` and ``grads`` are read-only host copies taken when asked
for (write through :meth:`set_params`, as ``CharRNN.load_state_dict``
does), and the optimizer's buffers live on the device, copied to the host
arrays of :class:`pycharrnn.optim.Optimizer` when its state is saved.

The sampling loop (the draws and the stop matching included), beam search
(its states and steps; the hypotheses' bookkeeping stays on the host), trace
and gradient flow run on the device too, with the CPU's arithmetic: a seed
gives the CPU's text.
"""

from __future__ import annotations

import weakref
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import _core
from .backend import Backend, find_cublas

__all__ = ["CUDABackend"]


class CUDABackend(Backend):
    """One model's parameters, gradients, optimizer state and computations
    on the GPU. The constructor's arguments are :class:`CPUBackend`'s."""

    device = "cuda"
    #: Where the device model's code runs: "cuda" (the GPU), or "host" (the
    #: same code on the CPU: how the tests check this class without a GPU).
    executor = "cuda"

    def __init__(self, *args: Any, **regularizers: Any):
        super().__init__(*args, **regularizers)
        self._opt: List[Optional[weakref.ref]] = [None, None, None]

    def _make_core(self, *args: Any, **regularizers: Any) -> Any:
        if self.executor == "cuda":
            path = find_cublas()
            if path:
                _core.cuda_set_cublas_path(path)
        cls = _core.DeviceModelF64 if self.dtype == np.float64 else _core.DeviceModelF32
        return cls(*args, executor=self.executor, **regularizers)

    # ------------------------------------------------------ host <-> device
    def _copy(self, get: Any) -> np.ndarray:
        out = self.zeros()
        get(out)
        out.flags.writeable = False
        return out

    @property
    def params(self) -> np.ndarray:
        """The parameters now: a read-only host copy."""
        return self._copy(self.core.get_params)

    @property
    def grads(self) -> np.ndarray:
        """The last gradients: a read-only host copy."""
        return self._copy(self.core.get_grads)

    def host_params(self) -> np.ndarray:
        """A writable host copy of the parameters, for :meth:`set_params`."""
        out = self.zeros()
        self.core.get_params(out)
        return out

    def set_params(self, flat: np.ndarray) -> None:
        """Copy flat [num_params] to the device."""
        self.core.set_params(np.ascontiguousarray(flat, self.dtype))

    def grad_sum_squares(self) -> float:
        """The sum of squares of the gradients, summed on the device."""
        return float(self.core.grad_sum_squares())

    # ------------------------------------------------------- the optimizer
    def _use_optimizer(self, buffers: Sequence[Optional[np.ndarray]]) -> None:
        """The device holds one optimizer's buffers: those of the host arrays
        last seen. Another optimizer's (or a new one's) are copied in first."""
        for k, b in enumerate(buffers):
            ref = self._opt[k]
            if b is not None and (ref is None or ref() is not b):
                self.core.set_optimizer_buffer(k, np.ascontiguousarray(b, self.dtype))
                self._opt[k] = weakref.ref(b)

    def read_optimizer(self, buffers: Sequence[Optional[np.ndarray]]) -> None:
        """Copy the device's optimizer buffers into ``buffers`` (the host
        arrays of the optimizer that last updated this model)."""
        for k, b in enumerate(buffers):
            ref = self._opt[k]
            if b is not None and ref is not None and ref() is b:
                self.core.get_optimizer_buffer(k, b)

    def write_optimizer(self, buffers: Sequence[Optional[np.ndarray]]) -> None:
        """Copy ``buffers`` (an optimizer's host arrays, just loaded) to the device."""
        self._opt = [None, None, None]
        self._use_optimizer(buffers)

    def flush_optimizer(self) -> None:
        """Copy the device's optimizer buffers into the host arrays they came
        from (those still alive): before the model leaves the device."""
        self.read_optimizer([None if r is None else r() for r in self._opt])

    def optimizer_step(self, optimizer: Dict[str, Any], lr: float, grad_norm: float) -> None:
        self._use_optimizer(optimizer["buffers"])
        self.core.optimizer_step(optimizer, lr, grad_norm)

    # ----------------------------------------------------------- the model
    def forward(self, x: np.ndarray, s0: np.ndarray, s1: np.ndarray,
                logits: Optional[np.ndarray], sampling: bool = False) -> None:
        self.core.forward(x, s0, s1, logits)  # no thread team on the GPU: sampling is moot

    def loss(self, x: np.ndarray, y: np.ndarray, s0: np.ndarray, s1: np.ndarray,
             stream_loss: Optional[np.ndarray] = None) -> float:
        return float(self.core.loss(x, y, s0, s1, stream_loss=stream_loss))

    def forward_backward(self, x: np.ndarray, y: np.ndarray, s0: np.ndarray, s1: np.ndarray,
                         ds: np.ndarray, train: bool, seed: int, first_row: int = 0,
                         total_rows: int = 0) -> float:
        return float(self.core.forward_backward(x, y, s0, s1, ds, train=train, seed=seed,
                                                first_row=first_row, total_rows=total_rows))

    def train_steps(self, xs: np.ndarray, ys: np.ndarray, state: np.ndarray,
                    seeds: Optional[np.ndarray], lrs: np.ndarray, losses: np.ndarray,
                    norms: np.ndarray, optimizer: Dict[str, Any]) -> Tuple[int, int]:
        self._use_optimizer(optimizer["buffers"])
        done, status = self.core.train_steps(xs, ys, state, seeds, lrs, losses, norms,
                                             optimizer)
        return int(done), int(status)

    # ------------------------------------------------------------ loops
    def sample(self, state: np.ndarray, logits: np.ndarray, out: np.ndarray,
               **options: Any) -> int:
        return int(self.core.sample(state, logits, out, **options))

    def beam_search(self, logits: np.ndarray, state: np.ndarray, length: int,
                    beam_width: int, **options: Any) -> Tuple[np.ndarray, float, float]:
        ids, score, logp = self.core.beam_search(logits, state, length, beam_width, **options)
        return ids, float(score), float(logp)

    def trace(self, x: np.ndarray, s0: np.ndarray, s1: np.ndarray, hidden: np.ndarray,
              cell: Optional[np.ndarray], gates: Optional[np.ndarray],
              logits: np.ndarray) -> None:
        self.core.trace(x, s0, s1, hidden, cell, gates, logits)

    def gradient_flow(self, x: np.ndarray, y: np.ndarray, s0: np.ndarray,
                      norms: np.ndarray) -> float:
        return float(self.core.gradient_flow(x, y, s0, norms))
