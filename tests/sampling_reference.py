"""The sampling and beam-search loops in NumPy, a step at a time through
``model.forward``: the reference the C++ loops (csrc/sampling.hpp) are
tested against. Written from the documented rules, not from the C++."""

from __future__ import annotations

import itertools
import math
from typing import List, Optional, Sequence, Tuple

import numpy as np

from masks import hash_uniform


def draw(logits: np.ndarray, temperature: float, top_k: Optional[int],
         top_p: Optional[float], u: float) -> int:
    """One id from logits [V] with the uniform number u: temperature (0, or
    so low that logits / temperature overflows: argmax), top-k (ties at the
    k-th value kept), top-p (equal probabilities: lower id first), then the
    inverse CDF over the cumulative sums in id order. NaN or infinite
    logits raise ValueError."""
    z = np.asarray(logits, np.float64)
    V = z.size
    if temperature > 0:
        with np.errstate(over="ignore", invalid="ignore"):
            zt = z / temperature
        if np.isfinite(zt).all():
            if top_k is not None and top_k < V:
                kth = np.sort(zt)[V - top_k]
                zt = np.where(zt >= kth, zt, -np.inf)
            p = np.exp(zt - zt.max())
            if top_p is not None and top_p < 1.0:
                order = np.argsort(-p, kind="stable")
                mass = np.cumsum(p[order])
                before = np.concatenate([[0.0], mass[:-1]])
                keep = np.zeros(V, bool)
                keep[order] = before < top_p * mass[-1]
                p = np.where(keep, p, 0.0)
            c = np.cumsum(p)
            i = int(np.searchsorted(c, u * c[-1], side="right"))
            return i if i < V else int(np.flatnonzero(p > 0)[-1])
    if not np.isfinite(z).all():
        raise ValueError("the model's output is NaN or infinite")
    return int(np.argmax(z))


def sample_ids(model, length: int, context: Sequence[int], temperature: float = 1.0,
               top_k: Optional[int] = None, top_p: Optional[float] = None, seed: int = 0,
               rows: int = 1, stop: Optional[Sequence[int]] = None) -> List[List[int]]:
    """Each row's ids: row b draws its id at position i with
    hash_uniform(seed, b, i); without a context the id at position 0 is
    floor(u * V). A row ends after its ids end with ``stop``."""
    V = model.vocab_size
    out = []
    for b in range(rows):
        ids: List[int] = []
        state, logits = None, None
        if len(context):
            lg, state = model.forward(np.asarray(context, np.int32)[None, :])
            logits = lg[0, -1]
        for i in range(length):
            u = float(hash_uniform(seed, b, np.array([i]))[0])
            if logits is None:
                nxt = min(V - 1, int(u * V))
            else:
                nxt = draw(logits, temperature, top_k, top_p, u)
            ids.append(nxt)
            if stop is not None and len(ids) >= len(stop) and ids[-len(stop):] == list(stop):
                break
            lg, state = model.forward(np.array([[nxt]], np.int32), state)
            logits = lg[0, -1]
        out.append(ids)
    return out


def log_prob(model, context: Sequence[int], ids: Sequence[int]) -> float:
    """log P(ids | context) in float64 (the context empty: the first id has
    probability 1 / V, as in sampling)."""
    V = model.vocab_size
    seq = list(context) + list(ids)
    if not ids:
        return 0.0
    total = 0.0 if context else -math.log(V)
    start = len(context) if context else 1
    if len(seq) > 1:
        lg, _ = model.forward(np.asarray(seq[:-1], np.int32)[None, :])
        z = lg[0].astype(np.float64)
        m = z.max(axis=1, keepdims=True)
        lsm = z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))
        for t in range(start, len(seq)):
            total += lsm[t - 1, seq[t]]
    return total


def brute_force(model, context: Sequence[int], length: int,
                stop: Optional[Sequence[int]] = None,
                length_penalty: float = 0.0) -> Tuple[Tuple[int, ...], float]:
    """The best complete continuation by exhaustive search: complete means
    ending with ``stop`` (its first occurrence) or ``length`` ids long;
    score = log P / len ** length_penalty. (ids, score)."""
    V = model.vocab_size
    best, best_score = None, -math.inf
    stop = list(stop) if stop is not None else None

    def first_stop(seq):
        if stop is None:
            return None
        for end in range(len(stop), len(seq) + 1):
            if list(seq[end - len(stop):end]) == stop:
                return end
        return None

    seen = set()
    for seq in itertools.product(range(V), repeat=length):
        end = first_stop(seq)
        cand = tuple(seq[:end]) if end is not None else tuple(seq)
        if cand in seen:
            continue
        seen.add(cand)
        lp = log_prob(model, context, cand)
        score = lp / len(cand) ** length_penalty if length_penalty and cand else lp
        if score > best_score:
            best, best_score = cand, score
    return best, best_score
