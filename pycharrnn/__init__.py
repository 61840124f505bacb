"""pycharrnn: character-level RNN, GRU and LSTM language models with a C++ core.

The forward pass, backpropagation through time and the optimizer updates run
in C++ (OpenMP across cores) behind the model's backend; this package handles
the vocabulary, batching, the training loop, checkpoints, sampling and the
command line.
"""

from __future__ import annotations

from typing import Optional

__version__ = "0.1.0"

from . import backend as _backend  # the compiled core (a clear error without it)
from .errors import CheckpointError, PyCharRNNError, RunExistsError, TrainingDiverged
from .vocab import Vocab
from .config import ModelConfig, TrainConfig
from .model import CharRNN
from .rundir import load
from .gradcheck import gradcheck
from .trainer import Trainer
from .signals import Interrupted
from . import optim, schedule

__all__ = [
    "__version__",
    "build_info",
    "set_num_threads",
    "get_num_threads",
    "set_flush_denormals",
    "get_flush_denormals",
    "Vocab",
    "CharRNN",
    "ModelConfig",
    "TrainConfig",
    "Trainer",
    "load",
    "gradcheck",
    "optim",
    "schedule",
    "Interrupted",
    "PyCharRNNError",
    "CheckpointError",
    "RunExistsError",
    "TrainingDiverged",
]

#: Submodules reachable as attributes after ``import pycharrnn`` (imported on
#: first use: matplotlib, tqdm and mpi4py stay unimported until needed).
_LAZY = ("config", "data", "diagnostics", "distributed", "evaluation", "metrics", "plot",
         "progress", "recipes", "reference", "report", "rundir", "runs", "sampling",
         "signals", "speed", "torch_compat", "checkpoint", "corpus", "files")


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'pycharrnn' has no attribute {name!r}")


def build_info() -> dict:
    """How the C++ core was built: openmp, num_threads, simd, native, cuda, compiler."""
    return _backend.build_info()


def set_num_threads(n: Optional[int]) -> None:
    """Set the number of threads every kernel uses (process-wide): exactly
    ``n``, or with None the default again, where each kind of work (training
    steps, validation, sampling) is timed and runs on the team size that is
    fastest under the load actually on the machine, up to the usable cores
    (the affinity mask and the cgroup's CPU quota). ``OMP_NUM_THREADS`` in
    the environment sets the number as ``n`` does. Results are the same bits
    at any team size."""
    if n is None:
        _backend.set_threads_auto()
        return
    from .checks import check_int

    n = check_int("number of threads", n)
    if not 1 <= n <= _backend.MAX_THREADS:
        raise ValueError(f"number of threads must be in [1, {_backend.MAX_THREADS}], got {n}")
    _backend.set_num_threads(n, "n")


def get_num_threads() -> int:
    """The number of threads the kernels use: the number set, or by default
    the most they may use (the usable cores; ``build_info()["threads"]`` says
    which, and :func:`pycharrnn.backend.thread_report` what was chosen)."""
    return _backend.get_num_threads()


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
    from .checks import check_bool

    _backend.set_flush_denormals(check_bool("on", on))


def get_flush_denormals() -> bool:
    """Whether kernels flush subnormal floats to zero (see set_flush_denormals)."""
    return _backend.get_flush_denormals()
