"""Model files: parameters, vocab and config in one .npz with a JSON header.

Layout (a numpy .npz archive, no pickles):
    "__pycharrnn__"   uint8 bytes of a UTF-8 JSON header:
                      {"format": "pycharrnn", "version": 1, "kind": "model",
                       "config": {...CharRNN arguments...},
                       "vocab": Vocab.to_json() or null,
                       "params": [names in order], "extra": {...}}
    "param/<name>"    each parameter array, named as in the state_dict
    other keys        extra arrays (optimizer state, ...) of later versions

Files are written to a temporary file in the same directory and renamed over
the target, so a reader never sees a partial file under the final name.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from .errors import CheckpointError, count
from .vocab import Vocab

FORMAT = "pycharrnn"
VERSION = 1
HEADER_KEY = "__pycharrnn__"
#: The file a run directory's latest checkpoint is saved as.
LATEST = "latest.npz"

PathLike = Union[str, "os.PathLike[str]"]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: PathLike, write) -> None:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, flush it to
    disk and rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; use the usual mode
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def remove_stale_temporaries(directory: PathLike, names, older_than: float) -> List[Path]:
    """Delete the temporary files that :func:`atomic_write` left for ``names``
    in ``directory`` when its process was killed mid-write, if last modified
    before ``older_than`` (a time.time() value), so that a temporary file
    another process is writing now is left alone. Returns what was removed."""
    removed = []
    d = Path(directory)
    for name in names:
        for tmp in d.glob(f".{name}.*.tmp"):
            try:
                if tmp.is_file() and tmp.stat().st_mtime < older_than:
                    tmp.unlink()
                    removed.append(tmp)
            except OSError:
                pass
    return removed


def save_arrays(path: PathLike, header: Dict[str, Any], arrays: Dict[str, np.ndarray]) -> None:
    """Write a header and named arrays as a pycharrnn .npz, atomically."""
    blob = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    payload = {HEADER_KEY: blob, **arrays}
    atomic_write(path, lambda f: np.savez(f, **payload))


def read_arrays(path: PathLike) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
    """Read and check a pycharrnn .npz: (header, arrays). Raises CheckpointError
    for anything that is not a complete pycharrnn file of a known version."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint file: {path}")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise CheckpointError(f"{path} is not a pycharrnn checkpoint (it holds a single "
                                  "numpy array)")
        with z:
            if HEADER_KEY not in z.files:
                raise CheckpointError(f"{path} is not a pycharrnn checkpoint (a numpy archive "
                                      "without pycharrnn's header)")
            arrays = {k: z[k] for k in z.files}
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged zip raises almost anything
        # zipfile and numpy raise BadZipFile, OSError, ValueError, EOFError,
        # NotImplementedError (an unknown compression), RuntimeError ("encrypted"),
        # zlib.error, MemoryError (a damaged array header), ... for a damaged file.
        # numpy's advice on pickles is for numpy files, not for this one.
        why = "not a numpy archive" if "pickle" in str(e) else f"{type(e).__name__}: {e}"
        raise CheckpointError(f"{path} is not a pycharrnn checkpoint (unreadable: truncated, "
                              f"corrupt or another kind of file; {why})") from None
    blob = arrays.pop(HEADER_KEY)
    if not isinstance(blob, np.ndarray) or blob.dtype != np.uint8:
        raise CheckpointError(f"{path}: corrupt header entry")
    try:
        header = json.loads(blob.tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path}: corrupt header: {e}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pycharrnn checkpoint (another format)")
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{path}: invalid format version {version!r}")
    if version > VERSION:
        raise CheckpointError(f"{path} has format version {version}; this pycharrnn reads "
                              f"up to version {VERSION} (upgrade pycharrnn)")
    return header, arrays


def model_header(model) -> Dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "kind": "model",
        "config": model.config(),
        "vocab": model.vocab.to_json() if model.vocab is not None else None,
        "params": list(model.state_dict().keys()),
    }


def save_model(model, path: PathLike, extra: Optional[Dict[str, Any]] = None,
               extra_arrays: Optional[Dict[str, np.ndarray]] = None) -> None:
    """Save a CharRNN (and optional extra JSON fields and arrays) to ``path``."""
    header = model_header(model)
    header["extra"] = extra or {}
    arrays = {f"param/{k}": v for k, v in model.state_dict().items()}
    arrays.update(extra_arrays or {})
    save_arrays(path, header, arrays)


def resolve(path: PathLike) -> Path:
    """A checkpoint file, or a run directory's latest checkpoint."""
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


def model_from(header: Dict[str, Any], arrays: Dict[str, np.ndarray], path: PathLike = "?"):
    """Build a CharRNN from a checked header and its arrays."""
    from .model import CharRNN

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
        model = CharRNN(
            vocab if vocab is not None else cfg["vocab_size"],
            hidden_size=cfg["hidden_size"],
            num_layers=cfg["num_layers"],
            cell=cfg["cell"],
            nonlinearity=cfg["nonlinearity"],
            embedding_dim=cfg["embedding_dim"],
            dropout=cfg["dropout"],
            dtype=cfg["dtype"],
        )
        if model.vocab_size != cfg["vocab_size"]:
            raise ValueError(f"vocabulary has {count(model.vocab_size, 'symbol')} but the config "
                             f"says {cfg['vocab_size']}")
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


def load(path: PathLike):
    """Load a CharRNN (with its vocab) from a file saved by ``CharRNN.save``
    or a checkpoint, or from a run directory (its latest checkpoint)."""
    p = resolve(path)
    header, arrays = read_arrays(p)
    return model_from(header, arrays, p)
