"""Argument checks shared by the modules: numbers in a range, choices, token
ids. Every message starts with the argument's name (the command line puts
the flag there), says what would be right and what was given."""

from __future__ import annotations

import math
import numbers
from typing import Any, Dict, Iterable, Optional, Union

import numpy as np

__all__ = ["check_int", "check_optional_int", "check_number", "check_rate", "check_choice", "check_bool",
           "range_problem", "as_ids", "NotANumberError"]


class NotANumberError(TypeError, ValueError):
    """Something that is not a finite number where one belongs (a str, a
    bool, None, NaN, an infinity), or not a bool where a flag belongs: a
    TypeError and a ValueError both, so that code catching either (as the
    library's checks raised one or the other) catches it."""


def range_problem(v: float, lo: Optional[float] = None, hi: Optional[float] = None,
                  lo_open: bool = False, hi_open: bool = False) -> Optional[str]:
    """What is wrong with the number ``v`` for the range (None: nothing), as
    "must be a finite number", "must be >= 1", "must be < 1"."""
    if isinstance(v, float) and not math.isfinite(v):
        return "must be a finite number"
    if lo is not None and (v <= lo if lo_open else v < lo):
        return f"must be {'>' if lo_open else '>='} {lo:g}"
    if hi is not None and (v >= hi if hi_open else v > hi):
        return f"must be {'<' if hi_open else '<='} {hi:g}"
    return None


def check_number(name: str, value: Any, lo: Optional[float] = None,
                 hi: Optional[float] = None, *, lo_open: bool = False, hi_open: bool = False,
                 integer: bool = False) -> Union[int, float]:
    """``value`` as a float (an int with ``integer``) in the range given by
    ``lo``, ``hi`` (None: unbounded; ``lo_open``/``hi_open``: the end is
    excluded). Bools, strings, NaN, infinities and (with ``integer``) floats
    are refused with :class:`NotANumberError`, values out of range with
    ValueError."""
    if integer:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            raise NotANumberError(f"{name} must be an int, got {type(value).__name__}")
        v: Union[int, float] = int(value)
    else:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise NotANumberError(f"{name} must be a number, got {type(value).__name__}")
        v = float(value)
    if isinstance(v, float) and not math.isfinite(v):
        raise NotANumberError(f"{name} must be a finite number, got {value}")
    problem = range_problem(v, lo, hi, lo_open, hi_open)
    if problem:
        raise ValueError(f"{name} {problem}, got {value}")
    return v


def check_int(name: str, value: Any, minimum: Optional[int] = None,
              maximum: Optional[int] = None) -> int:
    """``value`` as an int (bools and floats refused) in [minimum, maximum]."""
    return int(check_number(name, value, minimum, maximum, integer=True))


def check_optional_int(name: str, value: Any, minimum: Optional[int] = None) -> Optional[int]:
    """None, or ``value`` as :func:`check_int` checks it."""
    return None if value is None else check_int(name, value, minimum)


def check_rate(name: str, value: Any) -> float:
    """A probability of dropping, in [0, 1)."""
    return float(check_number(name, value, 0.0, 1.0, hi_open=True))


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``, else ValueError listing them."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, "
                         f"got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise NotANumberError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def as_ids(x: Any, vocab_size: int, name: str = "x") -> np.ndarray:
    """Token ids as a C-contiguous int32 array [B, T] (1-D input is one sequence).

    Integer arrays are converted only when no value is lost; floats and bools
    are refused (a float is never silently taken as an id).
    """
    a = np.asarray(x)
    if a.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {a.shape}")
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer token ids, got dtype {a.dtype}")
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape [batch, time], got {a.shape}")
    lo, hi = int(a.min()), int(a.max())
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{name} holds id {bad}, outside [0, {vocab_size})")
    return np.ascontiguousarray(a, dtype=np.int32)


def check_state_dict(state: Any, views: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """The arrays of ``state`` (numpy, or anything ``np.asarray`` takes, e.g.
    CPU torch tensors) for the parameters ``views``, by name, after checking
    that the names and shapes match exactly and every array is numeric."""
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict, got {type(state).__name__}")
    missing = [k for k in views if k not in state]
    unexpected = [k for k in state if k not in views]
    if missing or unexpected:
        raise ValueError(f"state_dict does not match the model: missing {missing}, "
                         f"unexpected {unexpected}")
    arrays = {}
    for name, view in views.items():
        v = state[name]
        if hasattr(v, "detach"):
            v = v.detach().cpu().numpy()
        a = np.asarray(v)
        if a.dtype.kind not in "fiu":
            raise TypeError(f"{name}: expected a numeric array, got dtype {a.dtype}")
        if a.shape != view.shape:
            raise ValueError(f"{name}: expected shape {view.shape}, got {a.shape}")
        arrays[name] = a
    return arrays
