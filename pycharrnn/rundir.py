"""The run directory, in one place: the names of its files, where a training
checkpoint keeps each part of a run's state (:func:`save_training`,
:func:`load_training`), models loaded from a run directory or a file, the
run's description (``run.json``), and the temporary files a killed write
left behind.

A run directory holds::

    latest.npz      the newest training checkpoint (exact resume)
    best.npz        the training checkpoint with the lowest validation loss
    run.json        the data and options of the run (the command line's)
    metrics.jsonl   one JSON line per step and per validation
    curves.png      the training curves

A training checkpoint is a model file (:mod:`pycharrnn.checkpoint`) whose
header's ``extra`` holds "trainer", "optimizer", "schedule" and "rng", and
whose arrays add ``optim/<buffer>``, ``train/state`` (the carried state,
[S, L, B, H]), ``history/<key>`` and ``val_history/<key>`` (one float64 array
per metric). Every file is written atomically (:mod:`pycharrnn.files`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from .checkpoint import read_arrays, save_model
from .errors import CheckpointError
from .files import atomic_write, remove_stale_temporaries
from .model import CharRNN

__all__ = ["LATEST", "BEST", "RUN_FILE", "METRICS_FILE", "CURVES_FILE", "FILES",
           "TrainingState", "save_training", "load_training", "resolve", "load",
           "read_checkpoint", "write_run_info", "read_run_info", "remove_temporaries"]

PathLike = Union[str, "os.PathLike[str]"]

LATEST = "latest.npz"
BEST = "best.npz"
RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"
#: Every file a run directory may hold.
FILES = (LATEST, BEST, RUN_FILE, METRICS_FILE, CURVES_FILE)


@dataclass
class TrainingState:
    """What exact resume needs, besides the model's parameters.

    trainer: the trainer's counters and settings (a JSON-able dict);
    optimizer: :meth:`Optimizer.state_dict` (type, step_count, hparams, buffers);
    schedule: the schedule's state_dict, or None;
    rng: the model's dropout generator state (:attr:`CharRNN.rng_state`);
    state: the carried recurrent state, packed [S, L, B, H];
    history, val_history: one float64 array per metric, by name.
    """

    trainer: Dict[str, Any]
    optimizer: Dict[str, Any]
    schedule: Optional[Dict[str, Any]]
    rng: Dict[str, Any]
    state: np.ndarray
    history: Dict[str, np.ndarray]
    val_history: Dict[str, np.ndarray]


def save_training(path: PathLike, model: CharRNN, ts: TrainingState) -> None:
    """Write a training checkpoint (the model and ``ts``) atomically."""
    opt = ts.optimizer
    extra = {
        "trainer": ts.trainer,
        "optimizer": {"type": opt["type"], "step_count": opt["step_count"],
                      "hparams": opt["hparams"]},
        "schedule": ts.schedule,
        "rng": ts.rng,
    }
    arrays = {f"optim/{k}": v for k, v in opt["buffers"].items()}
    arrays["train/state"] = ts.state
    arrays.update({f"history/{k}": np.asarray(v, np.float64) for k, v in ts.history.items()})
    arrays.update({f"val_history/{k}": np.asarray(v, np.float64)
                   for k, v in ts.val_history.items()})
    save_model(model, path, extra=extra, extra_arrays=arrays)


def _group(arrays: Dict[str, np.ndarray], prefix: str) -> Dict[str, np.ndarray]:
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def load_training(path: PathLike, blob: Optional[bytes] = None
                  ) -> Tuple[CharRNN, TrainingState]:
    """Read a training checkpoint (a file, or a run directory's latest):
    the model and its :class:`TrainingState`. A model file without training
    state raises :class:`CheckpointError`. ``blob``: the bytes of the file
    ``path`` names, read elsewhere (by rank 0 of a distributed run)."""
    p = resolve(path) if blob is None else Path(path)
    header, arrays = read_arrays(p, blob)
    extra = header.get("extra") or {}
    if "trainer" not in extra:
        raise CheckpointError(f"{p} holds a model but no training state: it cannot be "
                              "resumed (load it with pycharrnn.load)")
    model = CharRNN.from_checkpoint(header, arrays, p)
    try:
        o = extra["optimizer"]
        ts = TrainingState(
            trainer=extra["trainer"],
            optimizer={"type": o["type"], "step_count": o["step_count"],
                       "hparams": dict(o["hparams"]), "buffers": _group(arrays, "optim/")},
            schedule=extra.get("schedule"), rng=extra["rng"],
            state=np.array(arrays["train/state"], dtype=model.dtype),
            history=_group(arrays, "history/"), val_history=_group(arrays, "val_history/"))
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{p}: incomplete training state ({e!r})") from None
    return model, ts


def resolve(path: PathLike) -> Path:
    """A checkpoint file, or a run directory's latest checkpoint (else its
    newest ``.npz``)."""
    p = Path(path)
    if p.is_dir():
        latest = p / LATEST
        if latest.is_file():
            return latest
        files = sorted(p.glob("*.npz"), key=lambda f: f.stat().st_mtime)
        if not files:
            raise FileNotFoundError(f"run directory {p} holds no checkpoint (*.npz)")
        return files[-1]
    return p


def read_checkpoint(path: PathLike) -> Tuple[CharRNN, Dict[str, Any], Path]:
    """(model, header, file) for a checkpoint file or a run directory, read once."""
    p = resolve(path)
    header, arrays = read_arrays(p)
    return CharRNN.from_checkpoint(header, arrays, p), header, p


def load(path: PathLike) -> CharRNN:
    """Load a CharRNN (with its vocab) from a file saved by ``CharRNN.save``
    or a training checkpoint, or from a run directory (its latest checkpoint)."""
    return read_checkpoint(path)[0]


def write_run_info(run_dir: PathLike, info: Dict[str, Any]) -> None:
    """Write ``run.json`` (the run's data and options), atomically."""
    text = json.dumps(info, indent=2).encode()
    atomic_write(Path(run_dir) / RUN_FILE, lambda f: f.write(text))


def read_run_info(run_dir: PathLike) -> Dict[str, Any]:
    """The run's ``run.json``; FileNotFoundError when there is none."""
    return json.loads((Path(run_dir) / RUN_FILE).read_text(encoding="utf-8"))


def remove_temporaries(run_dir: PathLike, older_than: Optional[float] = None) -> List[Path]:
    """Delete the temporary files a write of any run-directory file left when
    its process was killed, if older than ``older_than`` (default: now; the
    caller owns the directory from here on). Returns what was removed."""
    return remove_stale_temporaries(run_dir, FILES,
                                    time.time() if older_than is None else older_than)
