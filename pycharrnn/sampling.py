"""Sampling from a model: temperature, top-k, nucleus (top-p), stop strings,
warm-up text, N samples drawn as one batch, and streaming one character at a
time. The model's ``sample``, ``sample_ids`` and ``generate`` methods call
these functions; every step is one C++ forward call of the batch
(:meth:`CharRNN.forward_packed`) and one vectorized draw."""

from __future__ import annotations

import math
from typing import Any, Iterator, List, Optional, Tuple, Union

import numpy as np

from .checks import as_ids, check_int

__all__ = ["sample", "sample_ids", "generate"]


def sample_ids(model, length: int, prime: Any = None, temperature: float = 1.0,
               top_k: Optional[int] = None, seed: Optional[int] = None, *,
               top_p: Optional[float] = None, num_samples: int = 1) -> np.ndarray:
    """Generate ``length`` ids after the ids ``prime``.

    Args:
        length: ids to generate per sample (>= 0).
        prime: ids fed through the model first; they set the state and
            are not repeated in the result. Without a prime the first id
            is drawn uniformly (the model has no context yet).
        temperature: the logits are divided by it; 0 takes the most
            likely id (argmax) and uses no randomness.
        top_k: keep only the k most likely ids (after temperature).
        seed: seeds the draws; the same seed and arguments give the same
            ids.
        top_p: nucleus sampling, 0 < top_p <= 1: after temperature and
            top_k, keep the smallest set of most likely ids whose
            probability mass is >= top_p (equal probabilities: lower id
            first) and renormalise. 1.0 is exactly the same as None.
        num_samples: N independent samples generated together: per step
            one forward call of batch N and one vectorized draw.

    Returns:
        int32 ``[length]`` when ``num_samples == 1``, else int32
        ``[num_samples, length]``.

    Every row of a batched run starts from the same state after the prime
    and draws with its own uniform number per step, all taken from the one
    seeded generator (N per step, row order), so a seeded batched run is
    reproducible. Its row 0 is in general NOT the single-sample result
    for the same seed (only the first id after a prime coincides).
    ``num_samples=1`` keeps the random stream of earlier versions: the same
    seed gives the same ids for the same (older) arguments.
    """
    length, top_k, top_p = _check_sampling(length, temperature, top_k, top_p)
    num_samples = check_int("num_samples", num_samples, 1)
    context = None
    if prime is not None:
        p = np.asarray(prime)
        if p.size > 0:
            context = as_ids(p.reshape(1, -1), model.vocab_size, "prime")
    rng = np.random.default_rng(seed)
    out = np.empty((num_samples, length), dtype=np.int32)
    for i, ids in enumerate(_stream(model, length, context, temperature, top_k, top_p,
                                         rng, num_samples)):
        out[:, i] = ids
    return out.reshape(length) if num_samples == 1 else out

def sample(model, length: int, prime: str = "", temperature: float = 1.0,
           top_k: Optional[int] = None, seed: Optional[int] = None, *,
           top_p: Optional[float] = None, num_samples: int = 1,
           stop: Optional[str] = None, warmup: str = "",
           unknown: str = "error") -> Union[str, List[str]]:
    """Generate ``length`` characters that follow ``prime`` (the prime is
    not repeated in the result).

    ``temperature``, ``top_k``, ``top_p``, ``seed`` and ``num_samples`` are
    as in :func:`sample_ids`. Returns a str, or a list of ``num_samples``
    strs when ``num_samples > 1``.

    Args:
        stop: end a sample as soon as its generated text ends with this
            string (included in the result; prime and warm-up do not
            count towards a match). Each row of a batched run stops on
            its own; generation ends when every row stopped or ``length``
            is reached. Rows that stopped keep drawing (unseen) until all
            stop, so with a seed every result is exactly the text without
            ``stop``, cut after the first occurrence of ``stop``. Its
            characters must be in the vocabulary.
        warmup: text fed through the model before the prime to set the
            hidden state (in one sequence: ``warmup + prime``); it does not
            appear in the output. Its characters must be in the vocabulary.
            With a warm-up but no prime the first character is drawn from
            the model (not uniformly).
        unknown: characters of ``prime`` and ``warmup`` that are not in
            the vocabulary raise ValueError ("error", the default) or are
            left out ("drop").

    With ``num_samples == 1`` this is ``"".join(generate(model, ...))`` with
    the same arguments.
    """
    num_samples = check_int("num_samples", num_samples, 1)
    if num_samples == 1:
        return "".join(generate(model, length, prime, temperature, top_k, seed, top_p=top_p,
                                     stop=stop, warmup=warmup, unknown=unknown))
    run = _text_run(model, length, prime, temperature, top_k, seed, top_p, stop, warmup,
                         num_samples, unknown)
    out = np.empty((num_samples, int(length)), dtype=np.int32)
    lengths = np.zeros(num_samples, dtype=np.int64)
    for i, (ids, live) in enumerate(run):
        out[:, i] = ids
        lengths += live
    return [model.vocab.decode(out[r, :lengths[r]]) for r in range(num_samples)]

def generate(model, length: int, prime: str = "", temperature: float = 1.0,
             top_k: Optional[int] = None, seed: Optional[int] = None, *,
             top_p: Optional[float] = None, stop: Optional[str] = None,
             warmup: str = "", unknown: str = "error") -> Iterator[str]:
    """Stream one sample one character at a time (e.g. to print as it is made).

    Takes the arguments of :func:`sample` except ``num_samples``; the
    arguments are checked at once (not at the first ``next``).
    ``"".join(generate(model, ...))`` equals ``sample(model, ...)`` for the
    same arguments and seed: sample is built on this iterator.
    """
    run = _text_run(model, length, prime, temperature, top_k, seed, top_p, stop, warmup, 1,
                         unknown)
    return _chars(model.vocab.chars, run)

def _text_run(model, length: Any, prime: Any, temperature: Any, top_k: Any, seed: Any,
              top_p: Any, stop: Any, warmup: Any, num_samples: int,
              unknown: str = "error") -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Check the text-sampling arguments now; the (ids, live) steps of
    :func:`_until_stop` over :func:`_stream`."""
    if model.vocab is None:
        raise ValueError("this model has no Vocab (it was built from a vocabulary size); "
                         "use sample_ids")
    length, top_k, top_p = _check_sampling(length, temperature, top_k, top_p)
    for name, text in (("prime", prime), ("warmup", warmup)):
        if not isinstance(text, str):
            raise TypeError(f"{name} must be a str, got {type(text).__name__}")
    if stop is not None:
        if not isinstance(stop, str):
            raise TypeError(f"stop must be a str or None, got {type(stop).__name__}")
        if not stop:
            raise ValueError("stop must not be empty (use None for no stop string)")
    if unknown not in ("error", "drop"):
        raise ValueError(f'unknown must be "error" or "drop", got {unknown!r}')
    warm_ids = _encode_arg(model, "warmup", warmup, unknown)
    context_ids = np.concatenate([warm_ids, _encode_arg(model, "prime", prime, unknown)])
    stop_ids = _encode_arg(model, "stop", stop) if stop is not None else None
    context = context_ids.reshape(1, -1) if context_ids.size else None
    rng = np.random.default_rng(seed)
    return _until_stop(_stream(model, length, context, temperature, top_k, top_p, rng,
                                    num_samples), stop_ids, num_samples)

def _encode_arg(model, name: str, text: str, unknown: str = "error") -> np.ndarray:
    """``vocab.encode(text)``, naming the argument in the error."""
    if not text:
        return np.empty(0, dtype=np.int32)
    try:
        return model.vocab.encode(text, unknown=unknown)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None

def _stream(model, length: int, context: Optional[np.ndarray], temperature: float,
            top_k: Optional[int], top_p: Optional[float], rng: np.random.Generator,
            n: int) -> Iterator[np.ndarray]:
    """Yield ``length`` steps, each the int32 ids [n] drawn for every row.

    ``context`` (int32 [1, T] or None) is run once with batch 1 and its
    final state copied to the n rows; after that each step is one
    ``model.forward_packed`` of batch n and one vectorized :func:`_draw`.
    """
    if length == 0:
        return
    V = model.vocab_size
    if context is not None:
        s0 = model.pack_state(None, 1)
        s1 = np.empty_like(s0)
        clog = np.empty((1, context.shape[1], V), model.dtype)
        model.forward_packed(context, s0, s1, clog)
        s = np.ascontiguousarray(np.repeat(s1, n, axis=2)) if n > 1 else s1
        ids = _draw(np.broadcast_to(clog[0, -1], (n, V)), temperature, top_k, top_p, rng)
    else:
        s = model.pack_state(None, n)
        ids = rng.integers(V, size=n).astype(np.int32)
    yield ids
    s_next = np.empty_like(s)
    x = np.empty((n, 1), dtype=np.int32)
    logits = np.empty((n, 1, V), model.dtype)
    for _ in range(1, length):
        x[:, 0] = ids
        model.forward_packed(x, s, s_next, logits)
        s, s_next = s_next, s
        ids = _draw(logits[:, 0], temperature, top_k, top_p, rng)
        yield ids


def _check_sampling(length: Any, temperature: Any, top_k: Any,
                    top_p: Any) -> Tuple[int, Optional[int], Optional[float]]:
    """Check the arguments shared by every sampling method; (length, top_k, top_p)."""
    length = check_int("length", length, 0)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.number)):
        raise TypeError("temperature must be a number")
    if not (temperature >= 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be finite and >= 0, got {temperature}")
    if top_k is not None:
        top_k = check_int("top_k", top_k, 1)
    if top_p is not None:
        if isinstance(top_p, (bool, np.bool_)) or \
                not isinstance(top_p, (int, float, np.integer, np.floating)):
            raise TypeError(f"top_p must be a number in (0, 1] or None, "
                            f"got {type(top_p).__name__}")
        top_p = float(top_p)
        if not 0.0 < top_p <= 1.0:  # also refuses NaN
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    return length, top_k, top_p


def _until_stop(stream: Iterator[np.ndarray], stop_ids: Optional[np.ndarray],
                n: int) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Yield (ids [n], live [n] bool) per step of ``stream``: ``live`` marks the
    rows the step's ids belong to (rows not stopped before it). A row stops
    once its last ``len(stop_ids)`` ids are ``stop_ids``; the run ends when
    every row has stopped. Vectorized over rows (a rolling window)."""
    live = np.ones(n, dtype=bool)
    if stop_ids is None:
        for ids in stream:
            yield ids, live
        return
    window = np.full((n, stop_ids.size), -1, dtype=np.int32)
    for ids in stream:
        yield ids, live
        window[:, :-1] = window[:, 1:]
        window[:, -1] = ids
        hit = (window == stop_ids).all(axis=1)
        if hit.any():
            live = live & ~hit  # a new array: the one yielded is not changed
            if not live.any():
                return


def _chars(chars: Tuple[str, ...], run: Iterator[Tuple[np.ndarray, np.ndarray]]) -> Iterator[str]:
    """The characters of row 0 of a one-row run."""
    for ids, _ in run:
        yield chars[ids[0]]


def _nucleus(p: np.ndarray, top_p: float) -> np.ndarray:
    """Zero all but the smallest set of largest entries of each row of p
    (unnormalised, >= 0) that holds at least top_p of the row's mass."""
    order = np.argsort(-p, axis=1, kind="stable")
    sorted_p = np.take_along_axis(p, order, axis=1)
    mass = np.cumsum(sorted_p, axis=1)
    before = np.zeros_like(mass)
    before[:, 1:] = mass[:, :-1]
    keep_sorted = before < top_p * mass[:, -1:]  # the most likely one always stays
    keep = np.empty_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=1)
    return np.where(keep, p, 0.0)


def _draw(logits: np.ndarray, temperature: float, top_k: Optional[int],
          top_p: Optional[float], rng: np.random.Generator) -> Union[int, np.ndarray]:
    """One id per row of ``logits`` [N, V]: int32 [N] (1-D logits: one int).

    Temperature 0 is argmax (no random numbers used). Otherwise the logits are
    divided by the temperature, cut to the top_k largest, then to the top_p
    nucleus, and one id is drawn per row with one ``rng.random`` number each
    (inverse CDF; for one row the exact stream of earlier versions). A
    temperature so low that logits / temperature overflows is argmax too.
    NaN or infinite logits raise ValueError.
    """
    z = logits.astype(np.float64)
    single = z.ndim == 1
    if single:
        z = z[None, :]
    n, V = z.shape
    if temperature > 0:
        if logits.dtype == np.float32 and temperature >= _NO_OVERFLOW_TEMPERATURE:
            zt = z / temperature  # cannot overflow: no errstate (3 us a call)
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                zt = z / temperature
        # Finite zt implies finite z; a NaN or an infinity reaches the max or
        # the min (two reductions, cheaper than isfinite over the array).
        # Else z is bad, or the temperature so low that this is argmax.
        if math.isfinite(np.maximum.reduce(zt, axis=None)) and \
                math.isfinite(np.minimum.reduce(zt, axis=None)):
            return _draw_scaled(zt, single, n, V, top_k, top_p, rng)
    if not np.isfinite(z).all():
        raise ValueError("the model's output is NaN or infinite (non-finite parameters or "
                         "state?): nothing can be sampled from it")
    ids = np.argmax(z, axis=1).astype(np.int32)
    return int(ids[0]) if single else ids


# float32 logits (|z| < 3.5e38) divided by a temperature at least this
# large cannot overflow float64.
_NO_OVERFLOW_TEMPERATURE = 1e-250


def _draw_scaled(z: np.ndarray, single: bool, n: int, V: int, top_k: Optional[int],
                 top_p: Optional[float], rng: np.random.Generator) -> Union[int, np.ndarray]:
    if top_k is not None and top_k < V:
        kth = np.partition(z, V - top_k, axis=1)[:, V - top_k]
        z = np.where(z >= kth[:, None], z, -np.inf)
    # ufunc methods directly: this runs once per step, wrappers cost time.
    p = np.exp(z - np.maximum.reduce(z, axis=1, keepdims=True))
    if top_p is not None and top_p < 1.0:
        p = _nucleus(p, top_p)
    c = np.add.accumulate(p, axis=1)  # = np.cumsum
    u = rng.random(n)
    # Row-wise searchsorted(c, u * total, side="right"): c is non-decreasing.
    # One row (sampling's common case) is that search itself; more rows
    # count c <= u * total in one vectorized pass. The same ids either way.
    if n == 1:
        ids = np.searchsorted(c[0], u * c[0, -1], side="right").astype(np.int32)
    else:
        ids = np.add.reduce(c <= (u * c[:, -1])[:, None], axis=1, dtype=np.int32)
    if np.maximum.reduce(ids) >= V:  # u * total rounded up to total: take the last allowed id
        last = V - 1 - np.argmax(p[:, ::-1] > 0, axis=1)
        ids = np.where(ids >= V, last, ids).astype(np.int32)
    return int(ids[0]) if single else ids
