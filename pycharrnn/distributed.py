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

__all__ = ["Group", "launched_size", "MPI_MISSING", "Alone", "DataParallel", "strategy"]

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


def strategy(distributed: Any) -> "Alone":
    """How a Trainer spreads its work: :class:`Alone`, or
    :class:`DataParallel` over the group ``distributed`` names (see
    :func:`as_group`)."""
    group = as_group(distributed)
    return Alone() if group is None else DataParallel(group)


class Alone:
    """A run in this process alone: the Trainer's loop asks its strategy
    every question whose answer differs in a data-parallel run
    (:class:`DataParallel`)."""

    group: Optional[Group] = None
    is_main = True
    #: Whether the core's K-step loop may make several steps in one call
    #: (nothing needs to happen between steps but Python's bookkeeping).
    fusable = True

    def rows(self, batch_size: int) -> Optional[Tuple[int, int]]:
        """The streams of the batch this process reads (None: all)."""
        return None

    def join(self, trainer: Any) -> None:
        """Start the run with every process agreeing on it."""

    def reset(self) -> None:
        """At the start of :meth:`Trainer.run`: no stop wished yet."""

    def mask_rows(self, batches: Any) -> Optional[Tuple[int, int]]:
        """(first row, rows of the whole batch) for the dropout masks of this
        process's rows (None: the call's rows are the batch)."""
        return None

    def file_bytes(self, path: Any) -> Optional[bytes]:
        """A file's bytes as the process that reads files read them (None:
        this process reads it)."""
        return None

    def share_threads(self) -> None:
        """Threads for this process when none were asked for (alone: all)."""

    @staticmethod
    def parts(n: int) -> Tuple[int, int]:
        """This process's share of ``n`` items to evaluate."""
        return 0, n

    @staticmethod
    def sum(a: np.ndarray) -> np.ndarray:
        """``a`` summed over the processes, in place."""
        return a

    def before_step(self, trainer: Any, clock0: float, now: float,
                    seconds: Optional[float]) -> bool:
        """Before each step of :meth:`Trainer.run`: whether to stop now (the
        time is up, or a stop was asked)."""
        trainer.clock = clock0 + now
        return trainer.stop_requested or (seconds is not None and now >= seconds)

    def reduce_step(self, trainer: Any, loss: float) -> float:
        """After a step's backward pass: the gradients and the step's loss of
        the whole batch."""
        return loss

    def validation_due(self, trainer: Any, dt: float) -> bool:
        """Whether validation by time is due after a step of ``dt`` seconds."""
        return trainer.eval_by_time(trainer.clock + dt)

    def clock_at(self, trainer: Any, t: float) -> float:
        """The training clock at ``time.perf_counter()`` = t within a step."""
        return trainer.clock + (t - trainer.step_start)

    def after_step(self, trainer: Any, stop: bool) -> None:
        """A callback asked to stop (``stop``), or not, after a step."""
        trainer.stopping = stop

    def end_clock(self, clock: float) -> float:
        """The clock every process keeps at the end of a run."""
        return clock

    def gather_state(self, state: np.ndarray) -> Optional[np.ndarray]:
        """The whole batch's carried state to save (None: this process saves nothing)."""
        return state

    def on_main(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` run by the process that reads and writes files; its result everywhere."""
        return fn()


class DataParallel(Alone):
    """A data-parallel run over the ranks of ``group``: each reads its share
    of the streams, the gradients are averaged with one Allreduce per step,
    and rank 0's clock, files and decisions by time hold for all (see the
    module's description)."""

    fusable = False  # the Allreduce comes between steps

    def __init__(self, group: Group):
        self.group = group
        self.is_main = group.is_main
        self.wish_stop = False  # a stop this rank wants, told to the others with the next step
        self.eval_due = False  # rank 0's "validate now" by time, shared
        self._scalars = np.zeros(4)

    def rows(self, batch_size: int) -> Optional[Tuple[int, int]]:
        return self.group.rows(batch_size)

    def reset(self) -> None:
        self.wish_stop = False

    def mask_rows(self, batches: Any) -> Optional[Tuple[int, int]]:
        return batches.first_row, batches.batch_size

    def file_bytes(self, path: Any) -> Optional[bytes]:
        from pathlib import Path

        return self.group.on_main(Path(path).read_bytes)  # only rank 0 need see the file

    def share_threads(self) -> None:
        """The ranks on a machine share its cores."""
        from .backend import get_num_threads, set_num_threads

        set_num_threads(max(1, get_num_threads() // self.group.local_size()))

    def join(self, trainer: Any) -> None:
        """Check that every rank has the same data and settings, then give
        everyone rank 0's parameters, optimizer state and dropout generator."""
        g, model, opt = self.group, trainer.model, trainer.optimizer
        if model.device != "cpu":
            raise ValueError(f"data-parallel training (MPI) runs on the CPU; the model is on "
                             f"{model.device!r}: move it with model.to('cpu')")
        g.check_same("training setup", {
            "data": trainer.data_fingerprint, "model": model.config(),
            "num_params": model.num_params, "batch_size": trainer.batches.batch_size,
            "seq_length": trainer.batches.seq_length, "val_fraction": trainer.val_fraction,
            "optimizer": type(opt).__name__, "hparams": opt.hparams(),
            "schedule": None if trainer.schedule is None else trainer.schedule.state_dict(),
            "eval_every": trainer.eval_every, "eval_every_seconds": trainer.eval_every_seconds,
            "checkpoint_every": trainer.checkpoint_every,
            "checkpoint_each_epoch": trainer.checkpoint_each_epoch,
            "run_dir": trainer.run_dir is not None, "step": trainer.step_count})
        g.broadcast(model.flat_params)
        for buf in opt.buffers.values():
            g.broadcast(buf)
        opt.step_count, model.rng_state = g.broadcast_object((opt.step_count, model.rng_state))

    def parts(self, n: int) -> Tuple[int, int]:
        return self.group.parts(n)

    def sum(self, a: np.ndarray) -> np.ndarray:
        return self.group.sum(a)

    def before_step(self, trainer: Any, clock0: float, now: float,
                    seconds: Optional[float]) -> bool:
        if trainer.stop_requested or (seconds is not None and now >= seconds):
            self.wish_stop = True  # every rank makes one more step, then stops
        return False

    def reduce_step(self, trainer: Any, loss: float) -> float:
        """Average the gradients over the ranks and agree on the step's loss
        (the whole batch's mean), on whether to stop after it (any rank's
        wish), on the clock and on a validation by time (rank 0's)."""
        g, s = self.group, self._scalars
        now = time.perf_counter() - trainer.clock_origin
        s[:] = 0.0
        s[0] = loss
        s[1] = 1.0 if self.wish_stop else 0.0
        if g.is_main:
            s[2] = now
            s[3] = 1.0 if trainer.eval_by_time(now) else 0.0
        g.average(trainer.model.flat_grads, s)
        trainer.stopping = bool(s[1] > 0)
        trainer.clock = float(s[2])
        self.eval_due = bool(s[3] > 0)
        return float(s[0]) / g.size

    def validation_due(self, trainer: Any, dt: float) -> bool:
        return self.eval_due

    def clock_at(self, trainer: Any, t: float) -> float:
        return t - trainer.clock_origin

    def after_step(self, trainer: Any, stop: bool) -> None:
        if stop:  # stops every rank after the next step (see reduce_step)
            self.wish_stop = True

    def end_clock(self, clock: float) -> float:
        self.wish_stop = False
        return float(self.group.broadcast(np.array([clock]))[0])  # rank 0's

    def gather_state(self, state: np.ndarray) -> Optional[np.ndarray]:
        return self.group.gather_rows(state)  # the whole batch's, on rank 0

    def on_main(self, fn: Callable[[], Any]) -> Any:
        return self.group.on_main(fn)
