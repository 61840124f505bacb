"""The data a run reads: a text from a file or a built-in corpus, its ids,
the held-out validation tail, the fingerprint that ties a checkpoint to its
data, and the batches of parallel streams training reads."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from . import vocab as _vocab
from .checks import as_ids, check_int, check_number
from .vocab import compact_dtype
from .words import plural

__all__ = ["Batches", "split_validation", "fingerprint", "text_to_ids", "training_ids",
           "load_text", "source_of", "read_if_path"]

_COMPACT = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.int32))


def load_text(path: Any = None, corpus: Optional[str] = None) -> str:
    """The text of a UTF-8 file (:func:`pycharrnn.files.read_text`) or of a
    built-in corpus (:func:`pycharrnn.corpus.load_corpus`): give one."""
    if (path is None) == (corpus is None):
        raise ValueError("give a data file or a corpus (one of them)")
    if corpus is not None:
        from .corpus import load_corpus

        return load_corpus(corpus)
    from .files import read_text

    return read_text(path)


def read_if_path(data: Any) -> Tuple[Any, Optional[Dict[str, Optional[str]]]]:
    """(the text, its source) for ``data`` given as a path (``os.PathLike``);
    (``data``, None) for a text or ids given as they are."""
    if isinstance(data, os.PathLike):
        return load_text(data), source_of(data)
    return data, None


def source_of(path: Any = None, corpus: Optional[str] = None) -> Dict[str, Optional[str]]:
    """Where a run's text comes from, as its run.json records it: the file's
    absolute path, or the corpus' name (None for text given in memory)."""
    return {"data": None if path is None else str(Path(path).resolve()), "corpus": corpus}


def text_to_ids(model: Any, text: Any, what: str = "the text", *, unknown: str = "error",
                compact: bool = False) -> np.ndarray:
    """The ids of ``text`` (a str, read with the model's vocabulary; or ids,
    checked against its size) as int32 [T], or with ``compact`` the smallest
    dtype that holds the vocabulary (uint8, uint16, int32). ``unknown``:
    characters outside the vocabulary raise ValueError ("error") or are left
    out ("drop"). Errors name ``what``."""
    if not isinstance(text, str):
        return as_ids(np.asarray(text).reshape(1, -1), model.vocab_size, what)[0]
    if model.vocab is None:
        raise ValueError(f"{what} is a str, and reading text needs a model built with a Vocab "
                         "(this one has only a vocabulary size): give ids")
    if not text:
        raise ValueError(f"{what} is empty")
    dtype = compact_dtype(model.vocab_size) if compact else np.int32
    try:
        return model.vocab.encode(text, dtype, unknown=unknown)
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from None


def training_ids(model: Any, data: Any) -> np.ndarray:
    """A training text (a str, or ids) as ids for :class:`Batches`. A 1-D
    contiguous uint8/uint16/int32 array (a memory-mapped file, say) is used as
    it is, checked in blocks; a str becomes ids of the smallest dtype."""
    if isinstance(data, str):
        return text_to_ids(model, data, "the training text", compact=True)
    a = np.asarray(data)
    if a.dtype in _COMPACT and a.ndim == 1 and a.flags.c_contiguous and a.size:
        for i in range(0, a.size, _vocab.CHUNK):
            block = a[i:i + _vocab.CHUNK]
            lo, hi = int(block.min()), int(block.max())
            if lo < 0 or hi >= model.vocab_size:
                raise ValueError(f"data holds id {lo if lo < 0 else hi}, outside "
                                 f"[0, {model.vocab_size})")
        return a
    return text_to_ids(model, a.reshape(-1), "data")


def fingerprint(ids: np.ndarray) -> Dict[str, Any]:
    """Length and SHA-256 of the ids as little-endian int32 (whatever their
    dtype), hashed in blocks."""
    h = hashlib.sha256()
    step = _vocab.CHUNK
    for i in range(0, ids.size, step):
        h.update(np.ascontiguousarray(ids[i:i + step], "<i4").data)
    return {"length": int(ids.size), "sha256": h.hexdigest()}


def validation_size(n: int, val_fraction: float) -> int:
    """How many of ``n`` ids :func:`split_validation` holds out."""
    return int(round(n * val_fraction))


def split_validation(ids: np.ndarray, val_fraction: float) -> Tuple[np.ndarray, np.ndarray]:
    """(training ids, validation ids): the validation text is the contiguous
    tail of ``round(len(ids) * val_fraction)`` ids (none when 0)."""
    val_fraction = check_number("val_fraction", val_fraction, 0, 1, hi_open=True)
    n_val = validation_size(ids.size, val_fraction)
    if val_fraction > 0 and n_val < 2:
        raise ValueError(f"val_fraction={val_fraction} of {plural(ids.size, 'character')} "
                         "leaves fewer than 2 for validation")
    return ids[:ids.size - n_val], (ids[ids.size - n_val:] if n_val else ids[:0])


class Batches:
    """Cuts ids into ``batch_size`` contiguous streams, read in chunks of
    ``seq_length``: x[b] = ids[b*n + p : b*n + p + T], y = the next
    character of each (n = (len(ids) - 1) // B streams' length, p the
    position). When a chunk would run past the end of a stream the position
    wraps to 0 and a new epoch (pass) starts; the caller resets its state.

    ``rows=(first, count)`` reads only streams ``first .. first + count`` (one
    process's share in data-parallel training); x and y then have ``count``
    rows.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_length: int,
                 rows: Optional[Tuple[int, int]] = None):
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.seq_length = check_int("seq_length", seq_length, 1)
        self.first_row, self.rows = (0, self.batch_size) if rows is None else rows
        if not (0 <= self.first_row and 1 <= self.rows and
                self.first_row + self.rows <= self.batch_size):
            raise ValueError(f"rows={rows!r} are not streams of batch_size={batch_size}")
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"ids must be integers, got dtype {ids.dtype}")
        ids = ids.reshape(-1)
        # uint8, uint16 and int32 ids are used as they are (a memory-mapped
        # file stays one); chunks are converted to int32 as they are read.
        if ids.dtype not in _COMPACT or not ids.flags.c_contiguous:
            if ids.size and (int(ids.min()) < 0 or int(ids.max()) > np.iinfo(np.int32).max):
                raise ValueError("ids must be in [0, 2**31)")
            ids = np.ascontiguousarray(ids, dtype=np.int32)
        elif ids.dtype == np.int32 and ids.size and int(ids.min()) < 0:
            raise ValueError("ids must be in [0, 2**31)")
        need = self.batch_size * self.seq_length + 1
        if ids.size < need:
            raise ValueError(
                f"the training text has {plural(ids.size, 'character')}; "
                f"batch_size={self.batch_size} and seq_length={self.seq_length} need at "
                f"least {need:,} "
                "(batch_size * seq_length + 1): use a longer text or smaller sizes")
        self.ids = ids
        self.stream_length = (ids.size - 1) // self.batch_size
        self.position = 0
        self.epoch = 0
        # 64-bit offsets: texts beyond 2**31 characters work.
        self._offsets = (np.arange(self.first_row, self.first_row + self.rows,
                                   dtype=np.int64) * self.stream_length)[:, None] + \
            np.arange(self.seq_length + 1, dtype=np.int64)[None, :]

    @property
    def chunks_per_epoch(self) -> int:
        return self.stream_length // self.seq_length

    @property
    def chunks_left(self) -> int:
        """Chunks before the streams wrap (those of a whole pass at its end)."""
        if self.at_epoch_end:
            return self.chunks_per_epoch
        return (self.stream_length - self.position) // self.seq_length

    @property
    def at_epoch_end(self) -> bool:
        """True when the next chunk starts a new pass."""
        return self.position + self.seq_length > self.stream_length

    @property
    def epoch_float(self) -> float:
        return self.epoch + self.position / (self.chunks_per_epoch * self.seq_length)

    def wrap(self) -> bool:
        """Start a new pass if the next chunk would run past the streams'
        end; whether it did."""
        if not self.at_epoch_end:
            return False
        self.position = 0
        self.epoch += 1
        return True

    def peek(self, k: int) -> Tuple[np.ndarray, np.ndarray, list]:
        """The next ``k`` chunks of this pass without moving: xs, ys int32
        [k, rows, T] and the epoch (fractional) after each."""
        T = self.seq_length
        pos = self.position + T * np.arange(k, dtype=np.int64)
        chunk = self.ids[self._offsets[None] + pos[:, None, None]]
        epochs = [self.epoch + (p + T) / (self.chunks_per_epoch * T) for p in pos.tolist()]
        return (np.ascontiguousarray(chunk[:, :, :-1], dtype=np.int32),
                np.ascontiguousarray(chunk[:, :, 1:], dtype=np.int32), epochs)

    def advance(self, chunks: int = 1) -> None:
        """Move past ``chunks`` chunks."""
        self.position += self.seq_length * chunks

    def next(self):
        """(x, y, wrapped): int32 [B, T] inputs and targets; wrapped is True when
        this chunk starts a new pass over the text."""
        wrapped = self.wrap()
        chunk = self.ids[self._offsets + self.position]
        self.advance()
        return (np.ascontiguousarray(chunk[:, :-1], dtype=np.int32),
                np.ascontiguousarray(chunk[:, 1:], dtype=np.int32), wrapped)
