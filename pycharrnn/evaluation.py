"""The validation loss: a model's mean cross-entropy on a text read as one
stream with the state carried, computed as several streams side by side.

"Evaluate" means this one number throughout pycharrnn: :func:`evaluate`
here, :meth:`pycharrnn.Trainer.evaluate` (on the validation text, or any),
``pycharrnn eval`` (the same, from the command line) and the "eval" events
of callbacks and metrics.jsonl (a validation, which is this on the held-out
text). ``model.eval()`` is PyTorch's name for evaluation mode (no dropout);
it computes nothing.

Float rounding: where a model's state dynamics are chaotic (an untrained or
barely trained model on a repetitive text can be), a difference in the last
bit grows along the text, and any two ways of ordering the float
operations, one stream or several, give numbers that agree only
statistically (0.6% apart in one such float32 case). GRUs trained on
Shakespeare agree with the single pass to 1e-7 relative or better."""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from .checks import check_int
from .distributed import Alone

__all__ = ["evaluate", "window_loss", "warmup_for", "EVAL_WARMUP"]

#: Characters each validation stream but the first reads before its own
#: part of the text, its loss not counted (see :func:`evaluate`): at least
#: this many, and an eighth of a part, up to 8 times this, when parts are
#: long (:func:`warmup_for`).
EVAL_WARMUP = 256


def warmup_for(predictions: int, streams: int) -> int:
    """The warm-up :func:`evaluate` gives each part of ``predictions`` cut
    into up to ``streams`` parts: :data:`EVAL_WARMUP`, or an eighth of a
    part where that is longer, up to 8 times :data:`EVAL_WARMUP`. A part
    whose warm-up has not converged is read again whole, so on long parts a
    longer warm-up costs less than it saves. On the built-in Shakespeare
    corpus's 498,694 held-out characters in 32 parts of 15,584 (a 2-core
    AVX2 EPYC, GRUs 1x384, two timings each), warm-ups of 256 and 1,948:

    - trained 9 steps: every part read once either way; 6.5-7.5 s against
      7.7-9.0 s (the longer warm-ups read 52,000 more characters);
    - trained 109 steps (a 20-s run): all 31 parts read again after 256,
      14.0-14.4 s; none after 1,948, 7.6-8.6 s;
    - trained 640 steps (a 60-s run): 9 parts read again after 256,
      9.7-10.1 s; none after 1,948, 8.3 s.

    The losses were the same to 9 digits."""
    n = predictions // max(1, min(streams, predictions // EVAL_WARMUP))
    return max(EVAL_WARMUP, min(8 * EVAL_WARMUP, n // 8))


def evaluate(model: Any, ids: np.ndarray, streams: int = 32, seq_length: int = 64,
             warmup: Optional[int] = None, group: Any = None,
             progress: Optional[Callable[[int, int], None]] = None) -> float:
    """The mean cross-entropy (nats/char) of predicting ``ids[1:]``, each id
    from all the ids before it, as one pass over the text with the state
    carried computes it: no id is predicted from a zero state except
    ``ids[1]`` (from ``ids[0]``). No dropout.

    For speed the ``len(ids) - 1`` predictions are cut into up to ``streams``
    contiguous parts, read side by side in chunks of ``seq_length``. A part's
    true starting state is the one the part before it ends in, which is only
    known once that part is read; so each part but the first starts from the
    state left by reading the ``warmup`` ids before it (their loss not
    counted), and after the pass every part whose starting state differs
    from where the part before it ended is read again from there, until none
    does. "Differs" means by more than 1e-4 in float32 (1e-10 in float64),
    relative: a start that close moves the loss of the characters just after
    it by about as much, and float32's rounding alone moves states by 1e-6
    between one batch size and another. On ordinary text the warm-up
    converges and one pass does; on text the model has long memory of (a run
    of hundreds of spaces) the passes that follow make the result the single
    pass's all the same, at the cost of reading the parts that were off
    again (at worst ``streams`` passes). Parts are never shorter than
    ``warmup`` (None: :func:`warmup_for`). Float rounding: see the module.

    ``group`` (the ranks of a data-parallel run,
    :class:`pycharrnn.distributed.Group`, or a Trainer's strategy, whose
    ``parts`` and ``sum`` say which parts are read here and how their sums
    join; None: this process alone): the ranks share the parts,
    exchange the states where parts meet, and all return the same result as
    one process reading every part (every rank must call).

    ``progress``: called as ``progress(done, total)`` with the predictions
    made so far (of the first pass, then the parts read again and the last
    part) and all there are to make (e.g. :class:`pycharrnn.progress.Bar`).
    """
    streams = check_int("streams", streams, 1)
    T = check_int("seq_length", seq_length, 1)
    N = ids.size - 1  # predictions
    if N < 1:
        raise ValueError(f"evaluation needs at least 2 characters, got {ids.size}")
    W = warmup_for(N, streams) if warmup is None else check_int("warmup", warmup, 0)
    group = Alone() if group is None else group
    B = max(1, min(streams, N // max(W, T)))
    n = N // B  # the last part also takes the N - B*n left over, read on alone
    tol = 1e-4 if model.dtype == np.float32 else 1e-10
    lo, hi = group.parts(B)  # the parts read here
    starts = model.pack_state(None, B)  # [S, L, B, H]
    if B > 1 and W > 0:
        _warm_up(model, ids, starts, max(lo, 1), hi, n, W, T)
        group.sum(starts)  # every rank wrote only its parts: the sum joins them
    sums = np.zeros(B)
    ends = np.empty_like(starts)
    todo = np.arange(B)
    done, total = 0, (hi - lo) * n + (N - B * n)  # the predictions made here
    while todo.size:
        mine = todo[(todo >= lo) & (todo < hi)]
        fresh = np.zeros(starts.shape[:2] + (todo.size,) + starts.shape[3:], starts.dtype)
        if mine.size:
            state = model.unpack_state(starts[:, :, mine])
            sums[mine], state = _read_parts(model, ids, state, mine, n, T, progress, done, total)
            done += mine.size * n
            fresh[:, :, np.searchsorted(todo, mine)] = model.pack_state(state, mine.size)
        ends[:, :, todo] = group.sum(fresh)
        # Part b is right when it started where part b - 1 ended (part 0 always is).
        off = ~np.isclose(starts[:, :, 1:], ends[:, :, :-1], rtol=tol, atol=tol).all(
            axis=(0, 1, 3))
        todo = np.flatnonzero(off) + 1
        starts[:, :, todo] = ends[:, :, todo - 1]
        total += todo[(todo >= lo) & (todo < hi)].size * n  # read again
    group.sum(sums)  # each part's sum is on its rank only, zeros elsewhere
    total_loss = float(sums.sum())
    rest = N - B * n
    if rest:
        chunk = ids[None, B * n:]
        loss, _ = model.loss(chunk[:, :-1], chunk[:, 1:], model.unpack_state(ends[:, :, B - 1:]))
        total_loss += loss * rest
    if progress is not None:
        progress(total, total)
    return total_loss / N


def _read_parts(model: Any, ids: np.ndarray, state: Any, parts: np.ndarray, n: int, T: int,
                progress: Any, done: int, total: int) -> Any:
    """(each part's summed loss, the state at their ends): the ``parts`` of
    ``n`` predictions from ``state``, side by side in chunks of T."""
    out = np.zeros(parts.size)
    for p in range(0, n, T):
        t = min(T, n - p)
        chunk = ids[(parts.astype(np.int64) * n)[:, None] + p +
                    np.arange(t + 1, dtype=np.int64)[None, :]]
        rows, state = model.loss(chunk[:, :-1], chunk[:, 1:], state, reduce=False)
        out += rows * t
        if progress is not None:
            progress(done + parts.size * min(p + t, n), total)
    return out, state


def _warm_up(model: Any, ids: np.ndarray, starts: np.ndarray, first: int, hi: int, n: int,
             W: int, T: int) -> None:
    """starts[:, :, b] for parts first..hi-1: the state after reading the
    ``W`` ids before part b (ids[b*n - W : b*n])."""
    if first >= hi:
        return
    idx = (np.arange(first, hi, dtype=np.int64) * n - W)[:, None] + \
        np.arange(W + 1, dtype=np.int64)[None, :]
    state = None
    for p in range(0, W, T):
        chunk = ids[idx[:, p:min(p + T, W) + 1]]
        _, state = model.loss(chunk[:, :-1], chunk[:, 1:], state)
    starts[:, :, first:hi] = model.pack_state(state, hi - first)


def window_loss(model: Any, ids: np.ndarray, block: int = 256, windows: int = 12800,
                seed: int = 0, batch: int = 64) -> float:
    """The mean cross-entropy (nats/char) over ``windows`` random windows of
    ``block + 1`` ids, each read from a zero state and every one of its
    ``block`` predictions counted: the way nanoGPT's ``estimate_loss``
    measures a model (its defaults: 200 batches of 64 windows of 256
    characters), so that a number can be read against published ones.

    It is higher than :func:`evaluate`'s for a recurrent model: the first
    characters of each window are predicted with little or no context, where
    one stream always has the text before. Window starts are drawn uniformly
    from ``0 .. len(ids) - block - 1`` with ``numpy.random.default_rng(seed)``;
    read ``batch`` windows at a time. No dropout."""
    block = check_int("block", block, 1)
    windows = check_int("windows", windows, 1)
    batch = check_int("batch", batch, 1)
    ids = np.asarray(ids)
    if ids.size < block + 1:
        raise ValueError(f"window_loss needs at least block + 1 = {block + 1} characters, "
                         f"got {ids.size}")
    starts = np.random.default_rng(seed).integers(0, ids.size - block, windows)
    offsets = np.arange(block + 1)
    total = 0.0
    for i in range(0, windows, batch):
        w = ids[starts[i:i + batch, None] + offsets]  # [b, block + 1]
        loss, _ = model.loss(w[:, :-1], w[:, 1:])
        total += float(loss) * w.shape[0]
    return total / windows
