"""Character vocabulary: text <-> int32 token ids."""

from __future__ import annotations

import json
from typing import Iterable, Sequence

import numpy as np

__all__ = ["Vocab"]


def _code_points(text: str) -> np.ndarray:
    # utf-32 keeps one code point per element; surrogatepass keeps lone
    # surrogates, so any Python str round-trips.
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


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
        self._order = np.argsort(cps, kind="stable")
        self._sorted = cps[self._order]
        self._cps = cps

    @classmethod
    def from_text(cls, text: str) -> "Vocab":
        """The sorted distinct characters of ``text``."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if not text:
            raise ValueError("cannot build a vocabulary from empty text")
        cps = np.unique(_code_points(text))
        return cls(chr(int(c)) for c in cps)

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
        return f"Vocab({len(self)} chars)"

    def encode(self, text: str) -> np.ndarray:
        """int32 ids of every character of ``text``; unknown characters raise ValueError."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        cps = _code_points(text)
        pos = np.searchsorted(self._sorted, cps)
        pos_c = np.minimum(pos, len(self._sorted) - 1)
        bad = self._sorted[pos_c] != cps
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"character {text[i]!r} (U+{ord(text[i]):04X}) at position {i} "
                "is not in the vocabulary"
            )
        return self._order[pos_c].astype(np.int32)

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
