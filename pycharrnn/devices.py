"""Which backend a device gets: the CPU's (:class:`pycharrnn.backend.CPUBackend`)
or the GPU's (:class:`pycharrnn.backend_cuda.CUDABackend`), and moving a
model's parameters from one to the other (``CharRNN.to``)."""

from __future__ import annotations

from typing import Any

from .backend import CPUBackend
from .backend_cuda import CUDABackend

__all__ = ["make_backend", "move_backend"]


def make_backend(device: str, *args: Any, **regularizers: Any) -> Any:
    """A backend on ``device`` ("cpu" or "cuda", checked by
    :func:`check_device`), with :class:`CPUBackend`'s arguments."""
    if device == "cuda":
        return CUDABackend(*args, **regularizers)
    return CPUBackend(*args, **regularizers)


def move_backend(old: Any, device: str) -> Any:
    """The model of backend ``old`` on ``device``: a new backend holding its
    parameters. The optimizer state ``old`` held away from the host is
    copied back to the optimizer's arrays first."""
    new = make_backend(device, *old._args, **old._regularizers)
    new.set_params(old.params)
    old.flush_optimizer()
    return new
