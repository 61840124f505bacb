"""pycharrnn: character-level RNN, GRU and LSTM language models with a C++ core.

The forward pass, backpropagation through time and the optimizer updates run
in C++ (OpenMP across cores); this package handles the vocabulary, batching,
the training loop, checkpoints, sampling and the command line.
"""

from __future__ import annotations

__version__ = "0.1.0"

try:
    from . import _core
except ImportError:  # the source folder of a clone, without the compiled core
    import os as _os

    _here = _os.path.dirname(_os.path.abspath(__file__))
    if not any(f.startswith("_core.") for f in _os.listdir(_here)):
        raise ImportError(
            f"pycharrnn was imported from {_here}, a source folder without the compiled "
            "core (_core): Python finds the source before the installed package when "
            "you run from the root of a clone. Either run from another directory, or "
            "install the clone in editable mode (pip install -e .), which builds the "
            "core and works from the root too.") from None
    raise
from .errors import CheckpointError, PyCharRNNError
from .vocab import Vocab
from .model import CharRNN
from .rundir import load
from .gradcheck import gradcheck
from .train import Trainer
from . import optim

__all__ = [
    "__version__",
    "build_info",
    "set_num_threads",
    "get_num_threads",
    "set_flush_denormals",
    "get_flush_denormals",
    "Vocab",
    "CharRNN",
    "Trainer",
    "load",
    "gradcheck",
    "optim",
    "PyCharRNNError",
    "CheckpointError",
]


def build_info() -> dict:
    """How the C++ core was built: openmp, num_threads, simd, native, cuda, compiler."""
    return dict(_core.build_info())


def set_num_threads(n: int) -> None:
    """Set the number of threads every kernel uses (process-wide)."""
    import numbers

    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"number of threads must be an int, got {type(n).__name__}")
    if not 1 <= n <= 1024:
        raise ValueError(f"number of threads must be in [1, 1024], got {n}")
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    """The number of threads the kernels use."""
    return int(_core.get_num_threads())


def set_flush_denormals(on: bool) -> None:
    """Whether kernels treat subnormal floats as zero (process-wide; default True).

    Subnormal numbers (below about 1.2e-38 in float32) are slow on some x86
    CPUs: a model whose gates saturate produces them in its gradients, and
    one such step took 4.9 times as long with IEEE subnormals on an
    AVX2-only AMD EPYC (1.07 times on an AVX-512 one; ``python
    benchmarks/denormals.py`` measures it). With this on, every kernel flushes
    them to zero (FTZ/DAZ) while it runs and restores the caller's
    floating-point mode when it returns. Turn it off for IEEE subnormal
    arithmetic. Other CPUs: no effect.
    """
    if not isinstance(on, bool):
        raise TypeError(f"expected a bool, got {type(on).__name__}")
    _core.set_flush_denormals(on)


def get_flush_denormals() -> bool:
    """Whether kernels flush subnormal floats to zero (see set_flush_denormals)."""
    return bool(_core.get_flush_denormals())
