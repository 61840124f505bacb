"""Character vocabulary: text <-> int32 token ids."""

from __future__ import annotations

import json
from typing import Iterable, Sequence

import numpy as np

__all__ = ["Vocab", "compact_dtype"]


#: Long texts are converted this many characters at a time, so the
#: temporaries stay small (about 8 bytes a character of the block).
CHUNK = 1 << 24
_UNICODE = 0x110000


def _code_points(text: str) -> np.ndarray:
    # utf-32 keeps one code point per element; surrogatepass keeps lone
    # surrogates, so any Python str round-trips.
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def _blocks(text: str):
    """(start, code points) of successive blocks of ``text``."""
    for start in range(0, len(text), CHUNK):
        yield start, _code_points(text[start:start + CHUNK])


def compact_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype (uint8, uint16) or int32 that holds every id."""
    if vocab_size <= 1 << 8:
        return np.dtype(np.uint8)
    if vocab_size <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)


class Vocab:
    """An ordered set of characters (Unicode code points); id i is ``chars[i]``.

    ``Vocab.from_text`` sorts the distinct code points of a text, so the same
    text always gives the same ids.
    """

    def __init__(self, chars: Iterable[str]):
        chars = list(chars)
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"a vocabulary entry must be one character, got {c!r}")
        if not chars:
            raise ValueError("a vocabulary needs at least one character")
        if len(set(chars)) != len(chars):
            raise ValueError("vocabulary characters must be distinct")
        self._chars: tuple[str, ...] = tuple(chars)
        cps = np.array([ord(c) for c in chars], dtype=np.uint32)
        self._cps = cps

    @classmethod
    def from_text(cls, text: str) -> "Vocab":
        """The sorted distinct characters of ``text``."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if not text:
            raise ValueError("cannot build a vocabulary from empty text")
        seen = np.zeros(_UNICODE, dtype=bool)
        for _, cps in _blocks(text):
            counts = np.bincount(cps)
            seen[:counts.size] |= counts.astype(bool)
        return cls(chr(int(c)) for c in np.flatnonzero(seen))

    @property
    def chars(self) -> tuple[str, ...]:
        return self._chars

    def __len__(self) -> int:
        return len(self._chars)

    def __contains__(self, c: object) -> bool:
        return isinstance(c, str) and len(c) == 1 and c in self._chars

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self._chars == other._chars

    def __hash__(self) -> int:
        return hash(self._chars)

    def __repr__(self) -> str:
        return f"Vocab({len(self)} char{'' if len(self) == 1 else 's'})"

    def encode(self, text: str, dtype: "np.typing.DTypeLike" = np.int32,
               unknown: str = "error") -> np.ndarray:
        """The ids of every character of ``text``. ``unknown``: "error"
        (default) raises ValueError naming the first character not in the
        vocabulary; "drop" leaves such characters out. ``dtype``: int32
        (default), or uint16 / uint8 when every id fits (a quarter of the
        memory for a long text; see :func:`compact_dtype`). Any length works:
        the text is converted in blocks, so the only large array is the
        result."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if unknown not in ("error", "drop"):
            raise ValueError(f'unknown must be "error" or "drop", got {unknown!r}')
        dt = np.dtype(dtype)
        if dt not in (np.dtype(np.int32), np.dtype(np.uint16), np.dtype(np.uint8)):
            raise TypeError(f"dtype must be int32, uint16 or uint8, got {dt}")
        if len(self) - 1 > np.iinfo(dt).max:
            raise ValueError(f"{len(self)} ids do not fit in {dt}")
        table = self._table()
        out = np.empty(len(text), dtype=dt)
        if unknown == "drop":
            kept = [ids[ids >= 0] for _, cps in _blocks(text)
                    for ids in (table[np.minimum(cps, table.size - 1)],)]
            return np.concatenate(kept).astype(dt) if kept else np.empty(0, dt)
        for start, cps in _blocks(text):
            ids = table[np.minimum(cps, table.size - 1)]
            if (ids < 0).any():
                i = start + int(np.argmax(ids < 0))
                raise ValueError(
                    f"character {text[i]!r} (U+{ord(text[i]):04X}) at position {i} "
                    "is not in the vocabulary"
                )
            out[start:start + ids.size] = ids
        return out

    def _table(self) -> np.ndarray:
        """int32 [largest code point + 2]: the id of each code point, -1 when
        absent (the last entry stands for every larger code point)."""
        t = getattr(self, "_lookup", None)
        if t is None:
            t = np.full(int(self._cps.max()) + 2, -1, dtype=np.int32)
            t[self._cps] = np.arange(len(self), dtype=np.int32)
            self._lookup = t
        return t

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The text of a sequence of ids."""
        a = np.asarray(ids)
        if a.size == 0:
            return ""
        if a.dtype.kind not in "iu":
            raise TypeError(f"ids must be integers, got dtype {a.dtype}")
        a = a.reshape(-1)
        if a.min() < 0 or a.max() >= len(self):
            raise ValueError(f"ids must be in [0, {len(self)})")
        return self._cps[a].astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")

    def to_json(self) -> str:
        """A JSON string from which ``Vocab.from_json`` rebuilds this vocabulary."""
        # Code points, not a string: JSON would merge two lone surrogates.
        return json.dumps({"code_points": [ord(c) for c in self._chars]})

    @classmethod
    def from_json(cls, s: str) -> "Vocab":
        try:
            cps = json.loads(s)["code_points"]
            if not isinstance(cps, list) or not all(
                isinstance(c, int) and not isinstance(c, bool) for c in cps
            ):
                raise TypeError("'code_points' must be a list of ints")
            chars = [chr(c) for c in cps]
        except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as e:
            raise ValueError(f"not a vocabulary JSON: {e}") from None
        return cls(chars)
