"""Models out of pycharrnn and back: the safetensors format.

A safetensors file is an 8-byte little-endian header length, a JSON header
(each tensor's dtype, shape and byte range, and a ``__metadata__`` of
strings) and the tensors' bytes, C order, little-endian. pycharrnn writes
and reads it itself (no dependency); the ``safetensors`` package, and
through it PyTorch, read what it writes. The tensors carry PyTorch's names
(``rnn.weight_ih_l0``, ``decoder.weight``, ...: the state_dict of
:class:`pycharrnn.torch_compat.TorchCharRNN`, which ``load_state_dict``
takes as it is); the metadata holds the model's config and vocabulary, so
that ``pycharrnn.load`` rebuilds the model whole.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Dict, Tuple, Union

import numpy as np

from .errors import CheckpointError
from .files import atomic_write

__all__ = ["save_as", "FORMATS", "save_safetensors", "read_safetensors", "model_header"]

PathLike = Union[str, Path]
_DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}
_NAMES = {v: k for k, v in _DTYPES.items()}
#: The most header a reader accepts (the format's own readers use 100 MB).
MAX_HEADER = 100_000_000
#: The formats :func:`save_as` (``model.export``, ``pycharrnn export``) writes.
FORMATS = ("safetensors", "onnx")


def save_as(model: Any, path: PathLike, format: str = "safetensors") -> Path:
    """Write ``model`` to ``path`` (atomically) in ``format``: "safetensors"
    (:func:`save_safetensors`: PyTorch's parameter names, the config and
    vocabulary in the metadata; ``pycharrnn.load`` reads it back) or "onnx"
    (:func:`pycharrnn.onnx_export.save_onnx`: ONNX's RNN/GRU/LSTM operators,
    float32, for onnxruntime; needs ``pip install "pycharrnn[onnx]"``).
    Returns the path."""
    if format == "onnx":
        from .onnx_export import save_onnx

        return save_onnx(model, path)
    if format != "safetensors":
        raise ValueError(f"format must be one of {', '.join(map(repr, FORMATS))}, "
                         f"got {format!r}")
    return save_safetensors(model, path)


def save_safetensors(model: Any, path: PathLike) -> Path:
    """Write ``model`` to ``path`` (atomically) as safetensors: its
    parameters by PyTorch name, and in the metadata ``config`` (the model's
    config as JSON), ``vocab`` (its characters as JSON, when it has a
    vocabulary), ``format`` "pt" and ``pycharrnn_format`` "1". Returns the
    path. (``model``: a :class:`pycharrnn.CharRNN`.)"""
    meta = {"format": "pt", "pycharrnn_format": "1", "config": json.dumps(model.config())}
    if model.vocab is not None:
        meta["vocab"] = model.vocab.to_json()
    header: Dict[str, Any] = {"__metadata__": meta}
    arrays = []
    offset = 0
    for name, a in model.state_dict().items():
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
        header[name] = {"dtype": _NAMES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        arrays.append(a)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the tensors start 8-byte aligned

    def write(f: Any) -> None:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for a in arrays:
            f.write(a.tobytes())

    atomic_write(path, write)
    return Path(path)


def read_safetensors(path: PathLike) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
    """(tensors by name, metadata) of any safetensors file of float32 or
    float64 tensors; a malformed file raises :class:`CheckpointError` naming
    it."""
    data = Path(path).read_bytes()

    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"{path}: not a safetensors file pycharrnn can read: {why}")

    if len(data) < 8:
        raise bad("shorter than its header's length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > min(MAX_HEADER, len(data) - 8):
        raise bad(f"a header of {n} bytes")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise bad(f"its header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise bad("its header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    body = memoryview(data)[8 + n:]
    tensors, end = {}, 0
    for name, t in sorted(header.items(), key=lambda kv: kv[1].get("data_offsets", [0])[0]
                          if isinstance(kv[1], dict) else 0):
        try:
            dtype = _DTYPES[t["dtype"]]
            shape = tuple(int(s) for s in t["shape"])
            lo, hi = (int(o) for o in t["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise bad(f"tensor {name!r}: {t!r} (float32 and float64 only)") from None
        count = int(np.prod(shape, dtype=np.int64))
        if lo != end or hi - lo != count * dtype.itemsize or hi > len(body):
            raise bad(f"tensor {name!r}: bytes {lo}..{hi} do not follow on from {end} "
                      f"or do not hold {shape}")
        tensors[name] = np.frombuffer(body[lo:hi], dtype=dtype).reshape(shape).copy()
        end = hi
    return tensors, {str(k): str(v) for k, v in meta.items()}


def model_header(meta: Dict[str, str], path: Any) -> Dict[str, Any]:
    """The checkpoint header (config and vocabulary) a file's metadata holds,
    for :func:`pycharrnn.rundir.model_from`; ``pycharrnn.load`` reads a
    ``.safetensors`` file with it."""
    if "config" not in meta:
        raise CheckpointError(f"{path}: no pycharrnn config in its metadata (a file "
                              "pycharrnn did not write: load its tensors with "
                              "read_safetensors and CharRNN.load_state_dict)")
    try:
        config = json.loads(meta["config"])
    except ValueError as e:
        raise CheckpointError(f"{path}: its config is not JSON ({e})") from None
    return {"config": config, "vocab": meta.get("vocab")}
