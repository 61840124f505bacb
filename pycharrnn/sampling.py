"""Sampling from a model: temperature, top-k, nucleus (top-p), stop strings,
warm-up text, N samples drawn as one batch, streaming, and beam search.

The loops run in C++ (:meth:`CharRNN.sample_loop` and :meth:`CharRNN.beam_loop`),
one call for many characters, with the GIL released. The random numbers are
counter-based: row ``b`` of a sample draws its character at position ``i``
with the uniform number ``hash_uniform(seed, b, i)`` (see csrc/sampling.hpp),
so a seed gives the same text whatever the thread count, however the text is
split over calls (:func:`generate` streams it in pieces) and whatever the
other rows do; the draw runs in double precision. The tests keep a NumPy
reference of every step (tests/sampling_reference.py).
"""

from __future__ import annotations

import itertools
import secrets
from typing import Any, Callable, Iterator, List, Optional, Tuple, Union

import numpy as np

from .checks import as_ids, check_int, check_number, check_optional_int
from .data import text_to_ids

__all__ = ["sample", "sample_ids", "generate", "beam_search", "BeamResult"]

#: The most characters :func:`generate` asks the C++ loop for at once; its
#: pieces grow from 1 to this, so the first character comes at once.
GENERATE_CHUNK = 256
#: The most characters one call makes in :func:`sample` (between two calls
#: Ctrl-C is seen).
SAMPLE_CHUNK = 1 << 14


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
        seed: an int in [0, 2**64) that seeds the draws: the same seed and
            arguments give the same ids on every machine, at any thread
            count. None: a random seed.
        top_p: nucleus sampling, 0 < top_p <= 1: after temperature and
            top_k, keep the smallest set of most likely ids whose
            probability mass is >= top_p (equal probabilities: lower id
            first) and renormalise. 1.0 is exactly the same as None.
        num_samples: N independent samples generated together, as one
            batch of N rows in one C++ call.

    Returns:
        int32 ``[length]`` when ``num_samples == 1``, else int32
        ``[num_samples, length]``.

    Every row starts from the state after the prime. Row ``b`` draws with
    its own counter-based random numbers (see the module's description), so
    row 0 of a batched run is the single sample with the same seed, and a
    row's text does not depend on ``num_samples``.
    """
    length, top_k, top_p = _check_sampling(length, temperature, top_k, top_p)
    num_samples = check_int("num_samples", num_samples, 1)
    seed = _check_seed(seed)
    context = None
    if prime is not None:
        p = np.asarray(prime)
        if p.size > 0:
            context = as_ids(p.reshape(1, -1), model.vocab_size, "prime")
    run = _Run(model, num_samples, context, temperature, top_k, top_p, seed, None)
    out = run.take_all(length)
    return out.reshape(length) if num_samples == 1 else out


def sample(model, length: int, prime: str = "", temperature: float = 1.0,
           top_k: Optional[int] = None, seed: Optional[int] = None, *,
           top_p: Optional[float] = None, num_samples: int = 1,
           stop: Optional[str] = None, warmup: str = "",
           unknown: str = "error",
           progress: Optional[Callable[[int, int], None]] = None) -> Union[str, List[str]]:
    """``prime`` followed by ``length`` characters the model generates after
    it: the result begins with the prime, as the command line prints it
    (``text[len(prime):]`` is the continuation; with ``unknown="drop"`` the
    prime appears as the model read it, without the dropped characters).
    Without a prime or a warm-up the model first reads a newline, when its
    vocabulary has one (not in the result): the sample begins as a line of
    the training text begins, not in the middle of a word; without one the
    first character is drawn uniformly.

    ``temperature``, ``top_k``, ``top_p``, ``seed`` and ``num_samples`` are
    as in :func:`sample_ids`. Returns a str, or a list of ``num_samples``
    strs (each beginning with the prime) when ``num_samples > 1``.

    Args:
        stop: end a sample as soon as its generated text ends with this
            string (included in the result; prime and warm-up do not
            count towards a match, and the ``length`` characters do not
            include the prime). Each row of a batched run stops on
            its own; generation ends when every row stopped or ``length``
            is reached. With a seed every result is exactly the text
            without ``stop``, cut after the first occurrence of ``stop``.
            Its characters must be in the vocabulary.
        warmup: text fed through the model before the prime to set the
            hidden state (in one sequence: ``warmup + prime``); it does not
            appear in the output. Its characters must be in the vocabulary.
            With a warm-up but no prime the first character is drawn from
            the model (not uniformly).
        unknown: characters of ``prime`` and ``warmup`` that are not in
            the vocabulary raise ValueError ("error", the default) or are
            left out ("drop").
        progress: called as ``progress(done, length)`` as the characters
            are made (e.g. :class:`pycharrnn.progress.Bar`).

    With ``num_samples == 1`` this is ``"".join(generate(model, ...))`` with
    the same arguments, and row 0 of a batched run is that text too.
    """
    num_samples = check_int("num_samples", num_samples, 1)
    length, make, shown = _text_run(model, length, prime, temperature, top_k, seed, top_p,
                                    stop, warmup, num_samples, unknown)
    if num_samples == 1:  # as generate() makes it
        return shown + "".join(_chars(model.vocab.chars, make, length, progress))
    out = make().take_all(length, progress)
    return [shown + model.vocab.decode(row[row >= 0]) for row in out]


def generate(model, length: int, prime: str = "", temperature: float = 1.0,
             top_k: Optional[int] = None, seed: Optional[int] = None, *,
             top_p: Optional[float] = None, stop: Optional[str] = None,
             warmup: str = "", unknown: str = "error") -> Iterator[str]:
    """Stream one sample one character at a time (e.g. to print as it is made):
    the prime's characters first, then the generated ones.

    Takes the arguments of :func:`sample` except ``num_samples``; the
    arguments are checked at once, the model runs once the prime has been
    yielded.
    The characters are made by the C++ loop in pieces of 1, 2, 4, ... up to
    :data:`GENERATE_CHUNK`, so the first comes at once and the rest cost
    no Python per character beyond the yield. ``"".join(generate(model,
    ...))`` equals ``sample(model, ...)`` for the same arguments and seed.
    """
    length, make, shown = _text_run(model, length, prime, temperature, top_k, seed, top_p,
                                    stop, warmup, 1, unknown)
    return itertools.chain(shown, _chars(model.vocab.chars, make, length))


def _chars(chars: Tuple[str, ...], make, length: int,
           progress: Optional[Callable[[int, int], None]] = None) -> Iterator[str]:
    """The characters of a one-row run, asked for in growing pieces
    (``progress(done, length)`` after each)."""
    if length == 0:
        return
    run = make()
    done, piece = 0, 1
    while done < length:
        k = min(piece, length - done)
        ids = run.take(k, last=done + k == length)[0]
        done += k
        if progress is not None:
            progress(done, length)
        for i in ids:
            if i < 0:
                return
            yield chars[i]
        if not run.live[0]:
            return
        piece = min(2 * piece, GENERATE_CHUNK)


def _text_run(model, length: Any, prime: Any, temperature: Any, top_k: Any, seed: Any,
              top_p: Any, stop: Any, warmup: Any, num_samples: int,
              unknown: str = "error"):
    """Check the text-sampling arguments now; (length, a function that makes
    the :class:`_Run`: the model runs only when it is called, the prime as
    the model reads it)."""
    if model.vocab is None:
        raise ValueError("this model has no Vocab (it was built from a vocabulary size); "
                         "use sample_ids")
    length, top_k, top_p = _check_sampling(length, temperature, top_k, top_p)
    seed = _check_seed(seed)
    context_ids, stop_ids = _text_context(model, prime, warmup, stop, unknown)
    context = context_ids.reshape(1, -1) if context_ids.size else None
    return length, lambda: _Run(model, num_samples, context, temperature, top_k, top_p, seed,
                                stop_ids), _prime_as_read(model, prime, unknown)


class _Run:
    """One sampling run of ``n`` rows in the C++ loop: the packed state, the
    logits the next ids are drawn from, the position in the sample and the
    stop matching, carried from one :meth:`take` to the next."""

    def __init__(self, model, n: int, context: Optional[np.ndarray], temperature: float,
                 top_k: Optional[int], top_p: Optional[float], seed: int,
                 stop_ids: Optional[np.ndarray]):
        self.model = model
        V = model.vocab_size
        if context is not None:
            # The context once at batch 1; its final state and logits to every row.
            s0 = model.pack_state(None, 1)
            s1 = np.empty_like(s0)
            clog = np.empty((1, context.shape[1], V), model.dtype)
            model.forward_packed(context, s0, s1, clog)
            self.state = np.ascontiguousarray(np.repeat(s1, n, axis=2))
            self.logits = np.ascontiguousarray(np.repeat(clog[:, -1], n, axis=0))
        else:
            self.state = model.pack_state(None, n)
            self.logits = np.zeros((n, V), model.dtype)
        self.uniform_first = context is None
        self.kw = dict(temperature=float(temperature), top_k=top_k or 0,
                       top_p=1.0 if top_p is None else top_p, seed=seed)
        self.stop = None if stop_ids is None else np.ascontiguousarray(stop_ids, np.int32)
        self.window = None if stop_ids is None else np.full((n, stop_ids.size), -1, np.int32)
        self.live = np.ones(n, np.uint8)
        self.position = 0

    def take_all(self, count: int,
                 progress: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
        """:meth:`take` of ``count`` ids in pieces of :data:`SAMPLE_CHUNK`
        (the random numbers do not depend on the pieces), so that a long
        sample can be interrupted (Ctrl-C) between them; ``progress(done,
        count)`` after each."""
        if count <= SAMPLE_CHUNK and progress is None:
            return self.take(count, last=True)
        parts, done = [], 0
        while done < count and self.live.any():
            k = min(SAMPLE_CHUNK, count - done)
            parts.append(self.take(k, last=done + k == count))
            done += k
            if progress is not None:
                progress(done, count)
        return np.concatenate(parts, axis=1) if parts else self.take(0, last=True)

    def take(self, count: int, last: bool) -> np.ndarray:
        """The next ``count`` ids of every row, int32 [n, count'] (fewer
        columns when every row has stopped; -1 after a row's stop).
        ``last``: no more will be asked for (the last ids are not fed)."""
        out = np.empty((self.live.size, count), np.int32)
        if count == 0:
            return out
        k = self.model.sample_loop(self.state, self.logits, out, position=self.position,
                                   uniform_first=self.uniform_first, stop=self.stop,
                                   window=self.window, live=self.live, feed_last=not last,
                                   **self.kw)
        self.position += k
        return out[:, :k]


class BeamResult(str):
    """The prime and the continuation beam search found (a str), with
    ``.ids`` (int32, the continuation's), ``.score`` (the log-probability
    less repetition penalties, divided by ``len ** length_penalty``),
    ``.log_prob`` (the continuation's natural-log probability under the
    model, given the prime) and ``.stopped`` (it ends with ``stop``)."""

    ids: np.ndarray
    score: float
    log_prob: float
    stopped: bool


def beam_search(model, prime: Any = "", length: int = 100, beam_width: int = 5, *,
                length_penalty: float = 0.0, stop: Any = None, warmup: str = "",
                unknown: str = "error", no_repeat_ngram_size: int = 0,
                repetition_penalty: float = 1.0, penalty_ngram_size: int = 3):
    """``prime`` and its most likely continuation under the model, found by
    beam search over ``beam_width`` hypotheses (in C++, a batch of
    ``beam_width`` states).

    Args:
        prime: the text (for a model without a Vocab: the ids) to
            continue; the result begins with it, as in :func:`sample`
            (``.ids`` hold the continuation only). Without a prime (and
            warm-up) the model first reads a newline when its Vocab has
            one, as in :func:`sample`; else every first id is equally likely.
        length: the most ids to generate (>= 0).
        beam_width: K, the hypotheses kept at each step (>= 1); K = 1 is
            greedy decoding (``temperature=0`` sampling).
        length_penalty: alpha; a finished hypothesis is scored by its
            log-probability / len ** alpha. 0 (the default) ranks by
            probability alone; > 0 favours longer texts. It matters only
            with ``stop``, when hypotheses end at different lengths.
        stop: a string (ids without a Vocab) that ends a hypothesis, kept
            at its end. A hypothesis that ended with it beats every one that
            did not (those are used only when none reaches the stop within
            ``length``; ``.stopped`` says which).
        warmup, unknown: as in :func:`sample`.
        no_repeat_ngram_size: N >= 1 forbids any id that would repeat an
            N-gram (N characters) already in the text: the context the model
            read (warm-up and prime) and the hypothesis itself, as Hugging
            Face's ``no_repeat_ngram_size``. 0 (the default): off. Beam
            search on a character model loops ("the countess, and the
            countess, and ..."); N around 10-12 stops that and leaves
            words and short phrases free to recur.
        repetition_penalty: r > 0; r > 1 lowers the rank of an id by
            log(r) for each earlier occurrence in the text of the
            ``penalty_ngram_size``-gram it would complete (CTRL's penalty,
            Keskar et al. 2019, over character n-grams, since single
            characters all recur). 1 (the default): off. It changes the
            ranking and ``.score``, not ``.log_prob``.
        penalty_ngram_size: n >= 1, the n-grams the penalty counts.

    Returns:
        :class:`BeamResult`: the prime and the continuation (a str with
        ``.ids``, ``.score``, ``.log_prob``, ``.stopped``); for a model
        without a Vocab, the int32 ids with ``.score``, ``.log_prob`` and
        ``.stopped`` in a :class:`BeamResult` whose str is empty.

    Each step extends every live hypothesis by every id that
    ``no_repeat_ngram_size`` allows and keeps the K best-ranked extensions
    (log-probability less the repetition penalties); those that end with
    ``stop`` are set aside as finished. After ``length`` steps the best
    finished hypothesis wins. With K at least the number of possible
    prefixes this is exhaustive search (tests/sampling_reference.py).
    """
    length = check_int("length", length, 0)
    beam_width = check_int("beam_width", beam_width, 1)
    length_penalty = check_number("length_penalty", length_penalty)
    repeats = dict(no_repeat_ngram_size=check_int("no_repeat_ngram_size",
                                                  no_repeat_ngram_size, 0),
                   repetition_penalty=float(check_number("repetition_penalty",
                                                         repetition_penalty, 0,
                                                         lo_open=True)),
                   penalty_ngram_size=check_int("penalty_ngram_size", penalty_ngram_size, 1))
    context, stop, logits, s1 = _beam_start(model, prime, warmup, stop, unknown)
    ids, score, log_prob = model.beam_loop(
        logits, s1, length, beam_width, length_penalty=float(length_penalty), stop=stop,
        context=np.ascontiguousarray(context, np.int32), **repeats)
    shown = _prime_as_read(model, prime, unknown) if model.vocab is not None else None
    result = BeamResult(shown + model.vocab.decode(ids) if shown is not None else "")
    result.ids, result.score, result.log_prob = ids, float(score), float(log_prob)
    result.stopped = stop is not None and ids.size >= stop.size and \
        bool(np.array_equal(ids[ids.size - stop.size:], stop))
    return result


def _beam_start(model, prime: Any, warmup: Any, stop: Any, unknown: str):
    """Check beam search's context arguments and run the context: (its ids,
    the stop's ids or None, the logits [V] and packed state after it)."""
    if model.vocab is not None:
        context, stop = _text_context(model, prime, warmup, stop, unknown)
    else:
        context = np.asarray(prime if prime is not None else [], dtype=np.int64).reshape(-1)
        if context.size:
            context = as_ids(context.reshape(1, -1), model.vocab_size, "prime")[0]
        if stop is not None:
            stop = as_ids(np.asarray(stop).reshape(1, -1), model.vocab_size, "stop")[0]
    s1 = model.pack_state(None, 1)
    logits = np.zeros(model.vocab_size, model.dtype)  # no context: a uniform first id
    if context.size:
        s0 = model.pack_state(None, 1)
        clog = np.empty((1, context.size, model.vocab_size), model.dtype)
        model.forward_packed(np.ascontiguousarray(context, np.int32).reshape(1, -1), s0, s1,
                             clog)
        logits = np.ascontiguousarray(clog[0, -1])
    stop = None if stop is None else np.ascontiguousarray(stop, np.int32)
    return context, stop, logits, s1


def _check_seed(seed: Any) -> int:
    """A seed in [0, 2**64); None draws one."""
    if seed is None:
        return secrets.randbits(64)
    seed = check_int("seed", seed, 0)
    if seed >= 2**64:
        raise ValueError(f"seed must be < 2**64, got {seed}")
    return seed


def _text_context(model, prime: Any, warmup: Any, stop: Any,
                  unknown: str) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Check the text arguments; (ids of ``warmup + prime``, ids of ``stop``
    or None)."""
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
    context = np.concatenate([_encode_arg(model, "warmup", warmup, unknown),
                              _encode_arg(model, "prime", prime, unknown)])
    if not prime and not warmup and "\n" in model.vocab:
        context = _encode_arg(model, "warmup", "\n")  # a line's start: see sample()
    return context, _encode_arg(model, "stop", stop) if stop is not None else None


def _prime_as_read(model, prime: str, unknown: str) -> str:
    """The prime as the model reads it (``unknown="drop"``: without the
    characters left out); the start of every text result."""
    return model.vocab.decode(_encode_arg(model, "prime", prime, unknown)) if prime else ""


def _encode_arg(model, name: str, text: str, unknown: str = "error") -> np.ndarray:
    """The ids of an argument's text (none for ""), named in errors."""
    if not text:
        return np.empty(0, dtype=np.int32)
    return text_to_ids(model, text, name, unknown=unknown)

def _check_sampling(length: Any, temperature: Any, top_k: Any,
                    top_p: Any) -> Tuple[int, Optional[int], Optional[float]]:
    """Check the arguments shared by every sampling method; (length, top_k, top_p)."""
    length = check_int("length", length, 0)
    check_number("temperature", temperature, 0)
    top_k = check_optional_int("top_k", top_k, 1)
    if top_p is not None:
        top_p = float(check_number("top_p", top_p, 0, 1, lo_open=True))
    return length, top_k, top_p


