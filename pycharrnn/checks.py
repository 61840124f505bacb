"""Argument checks shared by the modules: whole numbers and token ids."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_int", "as_ids"]


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int (bools and floats refused), at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


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
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} must not be empty, got shape {a.shape}")
    lo, hi = int(a.min()), int(a.max())
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{name} holds id {bad}, outside [0, {vocab_size})")
    return np.ascontiguousarray(a, dtype=np.int32)
