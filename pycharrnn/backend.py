"""The compiled core behind a model, and the only module that imports it.

A backend holds one model's parameters and gradients (one flat buffer each)
and runs every computation on them: the forward pass, backpropagation
through time, the optimizer updates, K training steps in one call, the
sampling loop, beam search, traces and gradient flow. :class:`CPUBackend`
runs them in C++ with OpenMP on numpy buffers; a device backend enters
behind the same methods. :class:`pycharrnn.CharRNN` owns its backend
(``model.backend``); nothing else builds one.

The functions at module level set what is process-wide: threads, flushing
of subnormal floats, and what was built.
"""

from __future__ import annotations

import glob
import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .config import GATES

try:
    from . import _core
except ImportError:  # the source folder of a clone, without the compiled core
    _here = os.path.dirname(os.path.abspath(__file__))
    if not any(f.startswith("_core.") for f in os.listdir(_here)):
        raise ImportError(
            f"pycharrnn was imported from {_here}, a source folder without the compiled "
            "core (_core): Python finds the source before the installed package when "
            "you run from the root of a clone. Either run from another directory, or "
            "install the clone in editable mode (pip install -e .), which builds the "
            "core and works from the root too.") from None
    raise

__all__ = ["Backend", "CPUBackend", "find_cublas", "build_info", "set_num_threads", "get_num_threads",
           "set_threads_auto", "threads_auto", "usable_cores", "thread_report",
           "set_flush_denormals", "get_flush_denormals", "CELL_CODES", "MAX_THREADS"]

#: The core's code of each (cell, nonlinearity).
CELL_CODES = {("rnn", "tanh"): 0, ("rnn", "relu"): 1, ("gru", "tanh"): 2, ("lstm", "tanh"): 3}
#: The most threads the core accepts.
MAX_THREADS = 1024


def build_info() -> Dict[str, Any]:
    """How the C++ core was built: openmp, num_threads, simd, native, cuda, compiler."""
    return dict(_core.build_info())


def set_num_threads(n: int, name: str = "threads") -> None:
    """Explicit mode with ``n`` threads; a warning (naming the parameter
    ``name``) when that is more than the usable cores: a team larger than
    the cores it runs on waits at every time step for a member the
    scheduler has parked."""
    _core.set_num_threads(int(n))
    u = usable_cores()
    if n > u:
        import warnings

        warnings.warn(f"{name}={n} is more than the {u} cores this process may use (its "
                      f"affinity mask and CPU quota); it runs slower than {u}: leave it unset "
                      "to have the team chosen while it runs", UserWarning, stacklevel=3)


def get_num_threads() -> int:
    return int(_core.get_num_threads())


def set_threads_auto() -> None:
    _core.set_threads_auto()


def threads_auto() -> bool:
    """Whether each unit of work's team size is chosen at run time."""
    return bool(_core.threads_auto())


def usable_cores() -> int:
    """CPUs this process may use: the affinity mask, capped by the cgroup's
    CPU quota."""
    return int(_core.usable_cores())


def thread_report() -> Dict[str, Dict[str, int]]:
    """Per kind of work ("step": training steps, "loss": validation and
    forward passes, "sample": sampling), what the thread governor did:
    ``threads`` its current team size (0: no such work yet), ``units``
    timed, ``probes`` of another size, ``switches`` to it, ``abandoned``
    probes and ``bailouts`` (units far slower than usual, finished on a
    smaller team). Empty in explicit mode."""
    if not threads_auto():
        return {}
    return {k: dict(v) for k, v in _core.governor_stats().items()}


def set_flush_denormals(on: bool) -> None:
    _core.set_flush_denormals(bool(on))


def get_flush_denormals() -> bool:
    return bool(_core.get_flush_denormals())


#: The devices a model may be asked for (``CharRNN(..., device=)``).
DEVICES = ("cpu", "cuda")


def parse_device(device: Any) -> str:
    """The device a ``device`` argument names: "cpu", or "cuda" ("cuda:0"
    names the first GPU, the only one used); ValueError for anything else."""
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got "
                        f"{type(device).__name__}")
    d = device.strip().lower()
    if d == "cuda:0":
        d = "cuda"
    if d not in DEVICES:
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    return d


def find_cublas() -> Optional[str]:
    """The path of cuBLAS 13 from NVIDIA's wheel (nvidia-cublas) on this
    Python's path, or None (the system's loader is then asked)."""
    try:
        import nvidia  # the namespace package of NVIDIA's wheels
    except ImportError:
        return None
    for root in list(getattr(nvidia, "__path__", [])):
        for pattern in ("cu13/lib/libcublas.so.13", "cublas/lib/libcublas.so.13"):
            hits = sorted(glob.glob(os.path.join(root, pattern)))
            if hits:
                return hits[0]
    return None


def device_unavailable(device: str) -> Optional[str]:
    """Why a model cannot live on ``device`` with this build on this
    machine, in one sentence; None where it can."""
    if device == "cpu":
        return None
    info = build_info()
    if not info.get("cuda"):
        return ("this build of pycharrnn has no CUDA backend: build it with "
                "pip install . -C cmake.define.PYCHARRNN_CUDA=ON")
    if not info.get("cuda_devices"):
        why = info.get("cuda_error") or "the CUDA runtime sees no device"
        return f"no usable CUDA device: {why}"
    path = find_cublas()
    if path:
        _core.cuda_set_cublas_path(path)
    loaded, why = _core.cuda_cublas()
    return None if loaded else why


def check_device(device: Any) -> str:
    """``device`` parsed (:func:`parse_device`), or a RuntimeError that
    says why a model cannot live there (:func:`device_unavailable`)."""
    d = parse_device(device)
    why = device_unavailable(d)
    if why:
        raise RuntimeError(f"device={device!r}: {why}")
    return d


class Backend:
    """What every backend shares: the model's shape as its compiled core
    gives it, host buffers shaped like the parameters, named views of them,
    and the trace's arrays. A subclass makes the core (:meth:`_make_core`).

    States are packed [S, L, B, H] (S = 2 for the LSTM's (h, c)); ids are
    int32 [B, T]. Arrays are checked by the core (dtype, shape, contiguity,
    overlaps) before any kernel touches them.
    """

    device = ""

    def __init__(self, cell: str, nonlinearity: str, vocab_size: int, embedding_dim: int,
                 hidden_size: int, num_layers: int, dtype: np.dtype, dropout: float = 0.0,
                 **regularizers: Any):
        self.dtype = np.dtype(dtype)
        self._args = (cell, nonlinearity, vocab_size, embedding_dim, hidden_size, num_layers,
                      self.dtype, dropout)
        self._regularizers = dict(regularizers)
        #: The compiled model.
        self.core = self._make_core(CELL_CODES[(cell, nonlinearity)], vocab_size,
                                    embedding_dim, hidden_size, num_layers, dropout,
                                    **regularizers)
        self.num_params = int(self.core.num_params)
        self.state_slots = int(self.core.state_slots)
        #: [(name, shape, offset)] of every parameter in the flat buffers.
        self.layout: List[Tuple[str, Tuple[int, ...], int]] = [
            (name, tuple(shape), int(off)) for name, shape, off in self.core.layout()]

    def _make_core(self, *args: Any, **regularizers: Any) -> Any:
        raise NotImplementedError  # pragma: no cover

    def zeros(self) -> np.ndarray:
        """A host buffer shaped like the parameters (optimizer state lives in these)."""
        return np.zeros(self.num_params, self.dtype)

    def sum_squares(self, a: np.ndarray) -> float:
        """The sum of squares of a flat float array (accumulated in double)."""
        return float(_core.sum_squares(a))

    def views(self, flat: np.ndarray) -> Dict[str, np.ndarray]:
        """Named views of a flat buffer, by :attr:`layout`."""
        return {name: flat[off:off + int(np.prod(shape))].reshape(shape)
                for name, shape, off in self.layout}

    def trace_arrays(self, ids: np.ndarray) -> Dict[str, Optional[np.ndarray]]:
        """:meth:`trace` of int32 ids [T] from a zero state: hidden [L, T, H],
        cell (LSTM, else None), gates [L, T, G*H] (else None), logits [T, V]."""
        cell, _, V, _, H, L, dtype, _ = self._args
        T, G = ids.size, GATES[cell]
        s0 = np.zeros((self.state_slots, L, 1, H), dtype)
        hidden = np.empty((L, 1, T, H), dtype)
        c = np.empty((L, 1, T, H), dtype) if cell == "lstm" else None
        gates = np.empty((L, 1, T, G * H), dtype) if G > 1 else None
        logits = np.empty((1, T, V), dtype)
        self.trace(ids[None], s0, np.empty_like(s0), hidden, c, gates, logits)
        return {"hidden": hidden[:, 0], "cell": None if c is None else c[:, 0],
                "gates": None if gates is None else gates[:, 0], "logits": logits[0]}


class CPUBackend(Backend):
    """One model's parameters, gradients and computations on the CPU:
    ``params`` and ``grads`` are float numpy arrays [num_params] in the
    layout :attr:`layout` gives, which the core's calls take explicitly."""

    device = "cpu"

    def __init__(self, *args: Any, **regularizers: Any):
        super().__init__(*args, **regularizers)
        self.params = self.zeros()
        self.grads = self.zeros()

    def _make_core(self, *args: Any, **regularizers: Any) -> Any:
        cls = _core.ModelF64 if self.dtype == np.float64 else _core.ModelF32
        return cls(*args, **regularizers)

    def grad_sum_squares(self) -> float:
        """The sum of squares of the gradients (accumulated in double)."""
        return float(_core.sum_squares(self.grads))

    def host_params(self) -> np.ndarray:
        """The parameters as a writable host array (on the CPU: the buffer
        itself); hand it back to :meth:`set_params` after writing."""
        return self.params

    def set_params(self, flat: np.ndarray) -> None:
        """Make flat [num_params] the parameters."""
        if flat is not self.params:
            np.copyto(self.params, flat)

    # An optimizer's buffers are the host arrays themselves on the CPU: the
    # device backend's hooks (copies in and out) have nothing to do here.
    def read_optimizer(self, buffers: Any) -> None:
        """Make an optimizer's host buffers current (nothing to do on the CPU)."""

    def write_optimizer(self, buffers: Any) -> None:
        """Take an optimizer's host buffers as written (nothing to do on the CPU)."""

    def flush_optimizer(self) -> None:
        """Copy the optimizer state held away from the host back (none here)."""

    # ----------------------------------------------------------- the model
    def forward(self, x: np.ndarray, s0: np.ndarray, s1: np.ndarray,
                logits: Optional[np.ndarray], sampling: bool = False) -> None:
        """Evaluation-mode forward of x [B, T] from s0; s1 receives the final
        state, logits [B, T, V] (unless None) the logits. ``sampling``: the
        context of a sample, run on the thread count the model's sampling
        chose, not timed as a kind of work of its own."""
        self.core.forward(self.params, x, s0, s1, logits, sampling=sampling)

    def loss(self, x: np.ndarray, y: np.ndarray, s0: np.ndarray, s1: np.ndarray,
             stream_loss: Optional[np.ndarray] = None) -> float:
        """Mean cross-entropy (nats) of y from x; stream_loss [B] (float64)
        receives each row's sum."""
        return float(self.core.loss(self.params, x, y, s0, s1, stream_loss=stream_loss))

    def forward_backward(self, x: np.ndarray, y: np.ndarray, s0: np.ndarray, s1: np.ndarray,
                         ds: np.ndarray, train: bool, seed: int, first_row: int = 0,
                         total_rows: int = 0) -> float:
        """Loss and every gradient into :attr:`grads`; ds = d loss / d s0."""
        return float(self.core.forward_backward(self.params, self.grads, x, y, s0, s1, ds,
                                                train=train, seed=seed, first_row=first_row,
                                                total_rows=total_rows))

    def train_steps(self, xs: np.ndarray, ys: np.ndarray, state: np.ndarray,
                    seeds: Optional[np.ndarray], lrs: np.ndarray, losses: np.ndarray,
                    norms: np.ndarray, optimizer: Dict[str, Any]) -> Tuple[int, int]:
        """K training steps (xs, ys [K, B, T]) in one call: (steps done, status)."""
        done, status = self.core.train_steps(self.params, self.grads, xs, ys, state, seeds,
                                             lrs, losses, norms, optimizer)
        return int(done), int(status)

    def optimizer_step(self, optimizer: Dict[str, Any], lr: float, grad_norm: float) -> None:
        """One update of :attr:`params` from :attr:`grads` by ``optimizer``
        (:meth:`pycharrnn.optim.Optimizer.spec`; its "step" counts the updates
        made before this one), in one fused loop of the core. ``grad_norm``:
        the gradients' norm, for clipping by norm."""
        self.core.optimizer_step(self.params, self.grads, optimizer, lr, grad_norm)

    # ------------------------------------------------------------ loops
    def sample(self, state: np.ndarray, logits: np.ndarray, out: np.ndarray,
               **options: Any) -> int:
        """The sampling loop: up to out.shape[1] ids per row of out [n, k];
        state and logits carry on (see csrc/sampling.hpp). Returns the steps made."""
        return int(self.core.sample(self.params, state, logits, out, **options))

    def beam_search(self, logits: np.ndarray, state: np.ndarray, length: int,
                    beam_width: int, **options: Any) -> Tuple[np.ndarray, float, float]:
        """(ids, score, log-probability) of the best continuation found;
        options: length_penalty, stop, context, no_repeat_ngram_size,
        repetition_penalty, penalty_ngram_size (see csrc/sampling.hpp)."""
        ids, score, logp = self.core.beam_search(self.params, logits, state, length,
                                                 beam_width, **options)
        return ids, float(score), float(logp)

    def trace(self, x: np.ndarray, s0: np.ndarray, s1: np.ndarray, hidden: np.ndarray,
              cell: Optional[np.ndarray], gates: Optional[np.ndarray],
              logits: np.ndarray) -> None:
        """Evaluation-mode forward keeping every step's hidden state (and
        LSTM cell state, GRU/LSTM gates) and logits."""
        self.core.trace(self.params, x, s0, s1, hidden, cell, gates, logits)

    def gradient_flow(self, x: np.ndarray, y: np.ndarray, s0: np.ndarray,
                      norms: np.ndarray) -> float:
        """|| dL_last / dh_t || of every layer and step into norms [L, T]
        (float64); the model's gradients are left as they are."""
        scratch = self.zeros()
        return float(self.core.gradient_flow(self.params, scratch, x, y, s0, norms))
