"""Training runs for tests/test_distributed.py, the same code alone and as
ranks of an MPI job:

    mpiexec -n N python -m mpi4py tests/distributed_job.py JOBS.json OUT_DIR

JOBS.json holds a list of configurations; for each, rank 0 writes
OUT_DIR/<i>.npz (see :func:`results`). ``python -m mpi4py`` aborts the job
when a rank raises.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

import pycharrnn as pc
from pycharrnn.schedule import CosineWarmup


def text() -> str:
    rng = random.Random(11)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "and",
             "runs", "away,", "é", "\"who?\"", "\n"]
    return " ".join(rng.choice(words) for _ in range(4000))


TEXT = text()


def build(cfg: Dict[str, Any], distributed: Any = False) -> pc.Trainer:
    """A Trainer for ``cfg``: model, optimizer (and schedule) and trainer options."""
    model = pc.CharRNN(pc.Vocab.from_text(TEXT), seed=cfg.get("seed", 1), **cfg["model"])
    opt = pc.optim.OPTIMIZERS[cfg.get("optimizer", "adam")](model, **cfg.get("opt", {}))
    schedule = CosineWarmup(opt.lr, cfg["steps"], warmup_steps=3) if cfg.get("cosine") \
        else None
    kw = dict(batch_size=8, seq_length=16, eval_every=10, val_fraction=0.1)
    kw.update(cfg.get("trainer", {}))
    if cfg.get("checkpoint_dir"):
        kw["checkpoint_dir"] = cfg["checkpoint_dir"]
    return pc.Trainer(model, TEXT, optimizer=opt, schedule=schedule, distributed=distributed,
                      **kw)


def results(tr: pc.Trainer) -> Optional[Dict[str, np.ndarray]]:
    """What must agree with one process: parameters, optimizer buffers, the
    whole batch's carried state and the histories. None on ranks but 0 (the
    state is gathered: every rank must call)."""
    state = tr.model.pack_state(tr.state, tr.batches.rows)
    if tr.group is not None:
        state = tr.group.gather_rows(state)
        if not tr.group.is_main:
            return None
    out = {"params": tr.model.flat_params.copy(), "state": state,
           "loss": np.array([h["loss"] for h in tr.history]),
           "grad_norm": np.array([h["grad_norm"] for h in tr.history]),
           "val_loss": np.array([h["val_loss"] for h in tr.val_history]),
           "step": np.array(tr.step_count)}
    out.update({f"optim/{k}": v.copy() for k, v in tr.optimizer.buffers.items()})
    return out


class StopAt:
    """A callback that asks to stop after ``step`` on one rank only."""

    def __init__(self, rank: int, step: int):
        self.rank, self.step = rank, step

    def __call__(self, tr, event, m):
        if event == "step" and tr.group.rank == self.rank and m["step"] == self.step:
            return False
        return None


def run(cfg: Dict[str, Any], distributed: Any = False) -> pc.Trainer:
    if cfg.get("resume_from"):
        tr = pc.Trainer.resume(cfg["resume_from"], TEXT, distributed=distributed)
    else:
        tr = build(cfg, distributed)
    if cfg.get("stop_at"):
        tr.callbacks.append(StopAt(*cfg["stop_at"]))
    tr.run(until_step=cfg.get("until", cfg["steps"]), seconds=cfg.get("seconds"))
    return tr


def main() -> None:
    from mpi4py import MPI

    jobs = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    comm = MPI.COMM_WORLD
    pc.set_num_threads(1)  # the ranks share this machine's cores
    for i, cfg in enumerate(jobs):
        if cfg.get("other_text_on") == comm.rank:  # a rank given other data
            global TEXT
            TEXT = TEXT.replace("fox", "cat")
        tr = run(cfg, distributed=True)
        res = results(tr)
        steps = comm.gather(tr.step_count, root=0)  # every rank's own count
        if res is not None:
            res["rank_steps"] = np.array(steps)
            res["threads"] = np.array(pc.get_num_threads())
            np.savez(out / f"{i}.npz", **res)


if __name__ == "__main__":
    main()
