"""Data-parallel training over MPI (mpi4py is imported here and nowhere else).

A run on N processes ("ranks") does what one process with the whole batch
does: the ``batch_size`` streams are split into N equal parts, rank r reading
streams ``r * B/N .. (r + 1) * B/N``; each rank computes the gradient of its
part's mean loss, and one ``MPI_Allreduce`` per step, in place on the flat
gradient buffer, sums them (then each rank divides by N). The gradient norm,
clipping and the optimizer update then run on every rank on the same reduced
gradient, so the parameters stay identical without ever being sent again.
Dropout masks are drawn for each row as its row of the whole batch.

Launch with any MPI launcher::

    mpiexec -n 4 pycharrnn train DATA --out RUN ...
    mpiexec -n 4 python -m mpi4py my_script.py     # Trainer(..., distributed=True)

``pip install "pycharrnn[mpi]"`` brings mpi4py and MPICH from the package
index; a system MPI (Open MPI, MPICH, Slurm's srun) works as well when
mpi4py is built against it.

Every rank must call the Trainer's collective methods (``run``, ``step``,
``evaluate``, ``save_checkpoint``) in the same order; only rank 0 writes
files. An exception on one rank leaves the others waiting in the next
collective: the command line aborts the whole job on an error, and a script
run with ``python -m mpi4py`` does too.
"""

from __future__ import annotations

import os
import pickle
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

__all__ = ["Group", "launched_size", "MPI_MISSING"]

MPI_MISSING = ("distributed training needs mpi4py and an MPI library: "
               'pip install "pycharrnn[mpi]" (mpi4py and MPICH from the package index)')

#: Environment variables in which MPI launchers give the number of processes
#: (MPICH's and Intel MPI's hydra, Slurm with PMI-2, Open MPI, MVAPICH).
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_size() -> int:
    """How many processes an MPI launcher started this one among (1 when
    none did), from the launcher's environment variables."""
    for name in _SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(f"{MPI_MISSING} ({e})") from None
    return MPI


class Group:
    """The processes of one data-parallel run: an MPI communicator (default
    ``MPI.COMM_WORLD``) and the few collectives the Trainer uses.

    Attributes: ``rank``, ``size``; ``reduce_seconds`` and ``reduces``, the
    wall time spent in the per-step gradient reductions and their count.
    """

    def __init__(self, comm: Any = None):
        MPI = _mpi()
        self._MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank: int = self.comm.Get_rank()
        self.size: int = self.comm.Get_size()
        self.reduce_seconds = 0.0
        self.reduces = 0

    def __repr__(self) -> str:
        return f"Group(rank={self.rank}, size={self.size})"

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes files and prints."""
        return self.rank == 0

    def local_size(self) -> int:
        """How many ranks of the group run on this machine (share its cores)."""
        MPI = self._MPI
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED, self.rank)
        try:
            return local.Get_size()
        finally:
            local.Free()

    # ------------------------------------------------------------ the batch
    def rows(self, batch_size: int) -> Tuple[int, int]:
        """(first stream, number of streams) this rank reads of ``batch_size``."""
        if batch_size % self.size:
            raise ValueError(
                f"batch_size={batch_size} does not split over {self.size} ranks: each rank "
                f"reads batch_size / ranks streams, so batch_size must be a multiple of "
                f"{self.size}")
        n = batch_size // self.size
        return self.rank * n, n

    def parts(self, n: int) -> Tuple[int, int]:
        """This rank's share ``[lo, hi)`` of ``n`` items, as even as it goes
        (the first ``n % size`` ranks take one more)."""
        q, r = divmod(n, self.size)
        lo = self.rank * q + min(self.rank, r)
        return lo, lo + q + (self.rank < r)

    # ---------------------------------------------------------- collectives
    def average(self, grads: np.ndarray, scalars: np.ndarray) -> None:
        """The step's reduction, in place: ``grads`` becomes the mean over the
        ranks (one Allreduce of the whole buffer, then a division by the
        number of ranks) and ``scalars`` (float64) the sum. The scalars travel
        in a non-blocking Allreduce started first, so that its latency hides
        under the gradients'."""
        MPI = self._MPI
        t0 = time.perf_counter()
        req = self.comm.Iallreduce(MPI.IN_PLACE, scalars, op=MPI.SUM)
        self.comm.Allreduce(MPI.IN_PLACE, grads, op=MPI.SUM)
        if self.size > 1:
            np.multiply(grads, grads.dtype.type(1.0 / self.size), out=grads)
        req.Wait()
        self.reduce_seconds += time.perf_counter() - t0
        self.reduces += 1

    def sum(self, a: np.ndarray) -> np.ndarray:
        """``a`` (contiguous) summed over the ranks, in place; returns it."""
        self.comm.Allreduce(self._MPI.IN_PLACE, a, op=self._MPI.SUM)
        return a

    def broadcast(self, a: np.ndarray) -> np.ndarray:
        """Rank 0's ``a`` (contiguous) on every rank, in place; returns it."""
        self.comm.Bcast(a, root=0)
        return a

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's small picklable ``obj`` on every rank."""
        return self.comm.bcast(obj, root=0)

    def on_main(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` run on rank 0 and its result (or its exception, raised on
        every rank) shared. A ``bytes`` result travels as a buffer."""
        head: Any = None
        if self.is_main:
            try:
                result = fn()
                head = (None, "bytes", len(result)) if isinstance(result, bytes) else \
                    (None, "object", result)
            except Exception as e:  # noqa: BLE001 - re-raised on every rank
                head = (e, None, None)
            try:
                pickle.dumps(head)
            except Exception as e:  # noqa: BLE001 - an unpicklable error or result
                head = (RuntimeError(f"rank 0: {head[0] or e!r}"), None, None)
        error, kind, value = self.broadcast_object(head)
        if error is not None:
            raise error
        if kind == "object":
            return value
        buf = np.frombuffer(result, np.uint8).copy() if self.is_main else \
            np.empty(value, np.uint8)
        return self.broadcast(buf).tobytes()

    def gather_rows(self, local: np.ndarray) -> Optional[np.ndarray]:
        """States [S, L, b, H] of every rank joined along the batch axis in
        rank order, on rank 0 ([S, L, size * b, H]); None on the others."""
        local = np.ascontiguousarray(local)
        out = np.empty((self.size,) + local.shape, local.dtype) if self.is_main else None
        self.comm.Gather(local, out, root=0)
        if out is None:
            return None
        return np.ascontiguousarray(np.concatenate(list(out), axis=2))

    def check_same(self, what: str, values: Dict[str, Any]) -> None:
        """Raise ValueError on every rank when any rank's ``values`` differ
        from rank 0's, naming the keys and the ranks."""
        everyone: List[Dict[str, Any]] = self.comm.allgather(values)
        diff = []
        for r, theirs in enumerate(everyone[1:], 1):
            keys = [k for k in sorted(set(theirs) | set(everyone[0]))
                    if theirs.get(k) != everyone[0].get(k)]
            diff += [f"{k} (rank 0: {everyone[0].get(k)!r}, rank {r}: {theirs.get(k)!r})"
                     for k in keys]
        if diff:
            raise ValueError(f"the ranks disagree on the {what}: " + "; ".join(diff[:6]) +
                             (f"; and {len(diff) - 6} more" if len(diff) > 6 else ""))

    def abort(self, code: int = 1) -> None:
        """End every process of the job (after an error on this one)."""
        self.comm.Abort(code)


def as_group(distributed: Any) -> Optional[Group]:
    """The Trainer's ``distributed`` argument as a Group: False/None -> None
    (alone), True -> a Group over ``MPI.COMM_WORLD``, a Group as it is, an
    mpi4py communicator wrapped."""
    if distributed is None or distributed is False:
        return None
    if distributed is True:
        return Group()
    if isinstance(distributed, Group):
        return distributed
    if hasattr(distributed, "Allreduce") and hasattr(distributed, "Get_rank"):
        return Group(distributed)
    raise TypeError(f"distributed must be a bool, a pycharrnn.distributed.Group or an mpi4py "
                    f"communicator, got {type(distributed).__name__}")
