"""The sampling and beam-search loops in NumPy, a step at a time through
``model.forward``: the reference the C++ loops (csrc/sampling.hpp) are
tested against. Written from the documented rules, not from the C++."""

from __future__ import annotations

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


def ngram_counts(seq: Sequence[int], g: int, V: int) -> List[int]:
    """For each id v, how often the g-gram (the last g - 1 ids of seq, v)
    occurs in seq."""
    count = [0] * V
    seq = list(seq)
    if g < 1 or len(seq) < g:
        return count
    tail = seq[len(seq) - (g - 1):] if g > 1 else []
    for i in range(len(seq) - g + 1):
        if seq[i:i + g - 1] == tail:
            count[seq[i + g - 1]] += 1
    return count


def brute_force(model, context: Sequence[int], length: int,
                stop: Optional[Sequence[int]] = None, length_penalty: float = 0.0,
                no_repeat: int = 0, penalty: float = 1.0,
                penalty_size: int = 1) -> Tuple[Tuple[int, ...], float]:
    """The best complete continuation by exhaustive search over every
    continuation the rules allow: an id that would repeat a ``no_repeat``-gram
    of context + continuation is never taken; a continuation is complete when
    it ends with ``stop`` (its first occurrence), is ``length`` ids long, or
    no id may extend it. Its rank is the sum over its ids of log P(id) -
    log(penalty) * (earlier occurrences in context + continuation of the
    ``penalty_size``-gram the id completes); score = rank / len **
    length_penalty. With a stop, a continuation that ends with it beats any
    that does not. (ids, score)."""
    V = model.vocab_size
    stop = list(stop) if stop is not None else None
    best = [None, (False, -math.inf)]
    log_r = math.log(penalty)

    def steps(seq):
        """log-softmax [V] after context + seq."""
        full = list(context) + list(seq)
        if not full:
            return np.full(V, -math.log(V))
        lg, _ = model.forward(np.asarray(full, np.int32)[None, :])
        z = lg[0, -1].astype(np.float64)
        return z - z.max() - np.log(np.exp(z - z.max()).sum())

    def complete(seq, rank, stopped):
        score = rank / len(seq) ** length_penalty if length_penalty and seq else rank
        key = (stopped and stop is not None, score)
        if key > best[1]:
            best[0], best[1] = tuple(seq), key

    def walk(seq, rank):
        if stop is not None and len(seq) >= len(stop) and seq[len(seq) - len(stop):] == stop:
            return complete(seq, rank, True)
        if len(seq) == length:
            return complete(seq, rank, False)
        full = list(context) + seq
        banned = ngram_counts(full, no_repeat, V) if no_repeat else [0] * V
        seen = ngram_counts(full, penalty_size, V) if penalty != 1.0 else [0] * V
        lsm = steps(seq)
        allowed = [v for v in range(V) if not banned[v]]
        if not allowed:
            return complete(seq, rank, False)
        for v in allowed:
            walk(seq + [v], rank + lsm[v] - seen[v] * log_r)

    walk([], 0.0)
    return best[0], best[1][1]
