"""Model files: parameters, vocab and config in one .npz with a JSON header.

Layout (a numpy .npz archive, no pickles):
    "__pycharrnn__"   uint8 bytes of a UTF-8 JSON header:
                      {"format": "pycharrnn", "version": 1, "kind": "model",
                       "config": {...CharRNN arguments...},
                       "vocab": Vocab.to_json() or null,
                       "params": [names in order], "extra": {...}}
    "param/<name>"    each parameter array, named as in the state_dict
    other keys        extra arrays (optimizer state, ...) of later versions

Files are written with :func:`pycharrnn.files.atomic_write` (a temporary
file in the same directory, renamed over the target), so a reader never sees
a partial file under the final name. This module knows the format only: the
model is built from it by :func:`pycharrnn.rundir.model_from`, and what a
training run adds by :mod:`pycharrnn.rundir`.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from .errors import CheckpointError
from .files import atomic_write

FORMAT = "pycharrnn"
VERSION = 1
HEADER_KEY = "__pycharrnn__"

PathLike = Union[str, "os.PathLike[str]"]


def save_arrays(path: PathLike, header: Dict[str, Any], arrays: Dict[str, np.ndarray]) -> None:
    """Write a header and named arrays as a pycharrnn .npz, atomically."""
    blob = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    payload = {HEADER_KEY: blob, **arrays}
    atomic_write(path, lambda f: np.savez(f, **payload))


def read_arrays(path: PathLike, blob: Optional[bytes] = None
                ) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
    """Read and check a pycharrnn .npz: (header, arrays). Raises CheckpointError
    for anything that is not a complete pycharrnn file of a known version.
    ``blob``: the file's bytes, read elsewhere (``path`` then only names it)."""
    path = Path(path)
    if blob is None and not path.is_file():
        raise FileNotFoundError(f"no such checkpoint file: {path}")
    try:
        z = np.load(path if blob is None else io.BytesIO(blob), allow_pickle=False)
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
        "params": list(model.params),
    }


def save_model(model, path: PathLike, extra: Optional[Dict[str, Any]] = None,
               extra_arrays: Optional[Dict[str, np.ndarray]] = None) -> None:
    """Save a CharRNN (and optional extra JSON fields and arrays) to ``path``.
    The parameters are written from the model's buffer as they are (no copy)."""
    header = model_header(model)
    header["extra"] = extra or {}
    arrays = {f"param/{k}": v for k, v in model.params.items()}
    arrays.update(extra_arrays or {})
    save_arrays(path, header, arrays)
