"""The run directory, in one place: the names of its files, where a training
checkpoint keeps each part of a run's state (:func:`save_training`,
:func:`load_training`), models loaded from a run directory or a file, the
run's description (``run.json``), and the temporary files a killed write
left behind.

A run directory holds::

    latest.npz      the newest training checkpoint (exact resume)
    best.npz        the training checkpoint with the lowest validation loss
    run.json        where the run's text comes from, its model and training options
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
from .config import REGULARIZERS
from .errors import CheckpointError, RunExistsError
from .files import atomic_write, remove_stale_temporaries
from .model import CharRNN
from .vocab import Vocab, compact_dtype
from .words import plural

__all__ = ["LATEST", "BEST", "RUN_FILE", "METRICS_FILE", "CURVES_FILE", "FILES",
           "TrainingState", "save_training", "load_training", "resolve", "load",
           "read_checkpoint", "model_from", "write_run_info", "read_run_info", "run_source",
           "run_text", "validation_ids", "describe",
           "check_new_run", "remove_temporaries"]

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
    model = model_from(header, arrays, p)
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
    return model_from(header, arrays, p), header, p


def model_from(header: Dict[str, Any], arrays: Dict[str, np.ndarray],
               path: Any = "?") -> CharRNN:
    """The model of a checked checkpoint header and its arrays (what
    :func:`pycharrnn.checkpoint.read_arrays` returns); ``path`` names the file
    in errors, which are :class:`CheckpointError`."""
    cfg = header.get("config")
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path}: header has no model config")
    vocab = None
    if header.get("vocab") is not None:
        try:
            vocab = Vocab.from_json(header["vocab"])
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"{path}: bad vocabulary: {e}") from None
    try:
        keys = ("hidden_size", "num_layers", "cell", "nonlinearity", "embedding_dim",
                "dropout", "dtype")
        model = CharRNN(vocab if vocab is not None else cfg["vocab_size"],
                        **{k: cfg[k] for k in keys},
                        **{k: cfg[k] for k in REGULARIZERS if k in cfg})
        if model.vocab_size != cfg["vocab_size"]:
            raise ValueError(f"vocabulary has {plural(model.vocab_size, 'symbol')} but "
                             f"the config says {cfg['vocab_size']}")
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid model config: {e!r}") from None
    params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    try:
        model.load_state_dict(params)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: parameters do not match the config: {e}") from None
    if not np.isfinite(model.flat_params).all():
        raise CheckpointError(f"{path}: the parameters contain NaN or infinite values")
    return model


def load(path: PathLike) -> CharRNN:
    """Load a CharRNN (with its vocab) from a file saved by ``CharRNN.save``
    or a training checkpoint, or from a run directory (its latest
    checkpoint), or a ``.safetensors`` file that pycharrnn exported
    (:func:`pycharrnn.export.save_safetensors`)."""
    if str(path).endswith(".safetensors") and Path(path).is_file():
        from .export import model_header, read_safetensors

        tensors, meta = read_safetensors(path)
        return model_from(model_header(meta, path),
                          {"param/" + k: v for k, v in tensors.items()}, path)
    return read_checkpoint(path)[0]


def write_run_info(run_dir: PathLike, info: Dict[str, Any]) -> None:
    """Write ``run.json`` (the run's data and options), atomically."""
    text = json.dumps(info, indent=2).encode()
    atomic_write(Path(run_dir) / RUN_FILE, lambda f: f.write(text))


def read_run_info(run_dir: PathLike) -> Dict[str, Any]:
    """The run's ``run.json``; FileNotFoundError when there is none."""
    return json.loads((Path(run_dir) / RUN_FILE).read_text(encoding="utf-8"))


def run_source(run_dir: PathLike) -> Dict[str, Optional[str]]:
    """Where a run's text comes from, as its ``run.json`` says: {"data": a
    file's path, "corpus": a built-in corpus' name}, one of them set.
    ValueError says what to give instead when run.json names neither."""
    try:
        info = read_run_info(run_dir)
    except FileNotFoundError:
        raise ValueError(f"{Path(run_dir) / RUN_FILE} does not exist, so nothing names the "
                         "run's text: give the text file") from None
    source = {"data": info.get("data"), "corpus": info.get("corpus")}
    if source["data"] is None and source["corpus"] is None:
        raise ValueError(f"the run in {run_dir} was given its text in memory (from Python), "
                         "not from a file: give the text file")
    return source


def run_text(run_dir: PathLike) -> Tuple[str, Dict[str, Optional[str]]]:
    """The text a run trained on and its source (:func:`run_source`)."""
    from .data import load_text

    source = run_source(run_dir)
    return load_text(source["data"], source["corpus"]), source


def validation_ids(path: PathLike) -> Tuple[CharRNN, Dict[str, Any], Path, np.ndarray, str]:
    """A checkpoint's model and its run's validation text, as training read
    it: (model, header, file, ids, what the text is). The run's text is the
    file or corpus its run.json names, checked against the checkpoint's
    fingerprint; ValueError says what to give instead when it cannot be found
    or has changed."""
    from .data import fingerprint, split_validation

    model, header, p = read_checkpoint(path)
    t = (header.get("extra") or {}).get("trainer")
    if not t:
        raise ValueError(f"{p} holds a model but no training run, so no validation text: "
                         "give a TEXT_FILE")
    text, source = run_text(p.parent)
    where = source["data"] or f"--corpus {source['corpus']}"
    try:
        ids = model.vocab.encode(text, compact_dtype(model.vocab_size))
    except ValueError:  # a character the model never saw
        ids = None
    if ids is None or fingerprint(ids) != t["data"]:
        raise ValueError(f"the run's data ({where}) is no longer the text it was trained on "
                         "(its length or hash differs): give a TEXT_FILE")
    _, ids = split_validation(ids, t["val_fraction"])
    if ids.size < 2:
        raise ValueError("the run held out no validation text (val_fraction 0): give a "
                         "TEXT_FILE")
    return model, header, p, ids, \
        f"the validation text (the last {t['val_fraction']:.0%}) of {where}"


def describe(path: PathLike) -> Dict[str, Any]:
    """A checkpoint's model configuration and, for a training checkpoint, where
    its run stands (step, epoch, losses, batch, optimizer)."""
    model, header, p = read_checkpoint(path)
    info = {"file": str(p), **model.config(), "num_params": model.num_params}
    extra = header.get("extra") or {}
    t = extra.get("trainer")
    if t:
        info.update(step=t["step"], epoch=t["epoch"], best_val_loss=t["best_val_loss"],
                    ema_loss=t.get("ema_loss"), batch_size=t["batch_size"],
                    seq_length=t["seq_length"], optimizer=extra["optimizer"]["type"])
    return info


def check_new_run(run_dir: PathLike) -> None:
    """Raise :class:`RunExistsError` when ``run_dir`` already holds a run."""
    if (Path(run_dir) / LATEST).exists():
        raise RunExistsError(f"{run_dir} already holds a run; continue it with --resume "
                             "(Trainer.resume) or choose another run directory")


def remove_temporaries(run_dir: PathLike, older_than: Optional[float] = None) -> List[Path]:
    """Delete the temporary files a write of any run-directory file left when
    its process was killed, if older than ``older_than`` (default: now; the
    caller owns the directory from here on). Returns what was removed."""
    return remove_stale_temporaries(run_dir, FILES,
                                    time.time() if older_than is None else older_than)
