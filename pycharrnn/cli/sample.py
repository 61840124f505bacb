"""``pycharrnn sample``: text from a checkpoint or run directory, by
:meth:`pycharrnn.CharRNN.generate` (streamed), :meth:`~pycharrnn.CharRNN.sample`
or :meth:`~pycharrnn.CharRNN.beam_search`."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any, Optional

from .args import DEFAULTS, Help, number

__all__ = ["add", "run"]

#: The command line's repetition control for --beam and --argmax (the
#: library's default is off): no repeated 20-character sequence, and each
#: earlier occurrence of a 4-character one lowers its rank by log 1.2. On a
#: GRU 1 x 384 trained 150 s on tinyshakespeare, a beam of 8 writing 1000
#: characters went from 93% of its 12-character windows repeated (a loop) to
#: 3% (the text itself: 2%), and from 6% distinct words to 64% (the text:
#: 69%), at 0.02 nats/char of the model's own log-probability
#: (benchmarks/beam_repetition.py).
NO_REPEAT_NGRAM = 20
REPETITION_PENALTY = 1.2
PENALTY_NGRAM = 4


def add(sub: Any) -> None:
    p = sub.add_parser("sample", help="generate text from a checkpoint or run directory",
                       formatter_class=Help)
    p.add_argument("checkpoint", help="a checkpoint file or a run directory (its latest.npz)")
    p.add_argument("--length", type=number(int, 0), default=DEFAULTS["sample_length"],
                   help="characters to generate")
    p.add_argument("--seed", type=number(int, 0), help="random seed (default: a random one)")
    p.add_argument("--temperature", type=number(float, 0),
                   default=DEFAULTS["sample_temperature"],
                   help="below 1: safer, more repetitive text; above 1: wilder; 0: argmax")
    p.add_argument("--argmax", action="store_true",
                   help="the most likely character at each step (beam search with K=1, "
                        "with the repetition control below)")
    p.add_argument("--top-k", type=number(int, 1),
                   help="sample from the K most likely (default: all)")
    p.add_argument("--top-p", type=number(float, 0, 1, lo_open=True),
                   help="sample from the smallest set of characters with probability >= P "
                        "(default: all)")
    p.add_argument("--prime", default="", help="text the sample continues (printed first)")
    p.add_argument("--warmup", default="",
                   help="text run through the model before the prime (not printed)")
    p.add_argument("--drop-unknown", action="store_true",
                   help="leave out characters of --prime/--warmup that are not in the "
                        "vocabulary (default: an error naming the first)")
    p.add_argument("--stop",
                   help=r"end a sample once it ends with this text (\n, \t, \\ are escapes)")
    p.add_argument("--num-samples", type=number(int, 1), default=1,
                   help="samples drawn side by side (one batch)")
    p.add_argument("--no-stream", action="store_true",
                   help="print when done instead of character by character")
    p.add_argument("--beam", type=number(int, 1), metavar="K",
                   help="the most likely text instead of a random one: beam search over K "
                        "hypotheses (1: greedy); its log-probability goes to stderr")
    p.add_argument("--length-penalty", type=number(float, 0), default=0.0, metavar="A",
                   help="with --beam and --stop: score a finished text by log-probability / "
                        "length**A (above 0 favours longer texts)")
    p.add_argument("--no-repeat-ngram", type=number(int, 0), metavar="N",
                   help=f"with --beam or --argmax: never repeat a sequence of N characters "
                        f"(default: {NO_REPEAT_NGRAM}; 0: off)")
    p.add_argument("--repetition-penalty", type=number(float, 0, lo_open=True), metavar="R",
                   help=f"with --beam or --argmax: each earlier occurrence of the "
                        f"{PENALTY_NGRAM}-character sequence a character would complete "
                        f"divides its probability by R in the ranking (default: "
                        f"{REPETITION_PENALTY}; 1: off)")
    p.add_argument("--allow-repeats", action="store_true",
                   help="with --beam or --argmax: no repetition control (the most likely "
                        "text, which tends to loop)")


def unescape(text: Optional[str]) -> Optional[str]:
    r"""\n, \t and \\ in a command-line argument as newline, tab and backslash."""
    if text is None:
        return None
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "nt\\":
            out.append({"n": "\n", "t": "\t", "\\": "\\"}[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def run(args: argparse.Namespace) -> int:
    import pycharrnn as pc

    model = pc.load(args.checkpoint)
    if model.vocab is None:
        raise ValueError(f"{args.checkpoint}: the model has no vocabulary (it was built from "
                         "a vocabulary size), so it cannot write text")
    unknown = "drop" if args.drop_unknown else "error"
    stop = unescape(args.stop)
    for flag, text in (("--prime", args.prime), ("--warmup", args.warmup), ("--stop", stop)):
        if text:
            try:
                model.vocab.encode(text, unknown="error" if flag == "--stop" else unknown)
            except ValueError as e:
                raise ValueError(f"{flag}: {e}") from None
        elif flag == "--stop" and text is not None:
            raise ValueError("--stop must not be empty")
    greedy = args.argmax or args.temperature == 0
    if (args.beam is None and greedy and not args.allow_repeats and args.num_samples == 1
            and args.top_k is None and args.top_p is None):
        args.beam, args.argmax = 1, False  # the most likely character, without loops
    if args.beam is not None:
        return _beam(model, args, stop, unknown)
    for flag, on in (("--length-penalty", args.length_penalty),
                     ("--no-repeat-ngram", args.no_repeat_ngram is not None),
                     ("--repetition-penalty", args.repetition_penalty is not None),
                     ("--allow-repeats", args.allow_repeats and not greedy)):
        if on:
            raise ValueError(f"{flag} applies to --beam and --argmax only")
    kw = dict(prime=args.prime, temperature=0.0 if args.argmax else args.temperature,
              top_k=args.top_k, top_p=args.top_p, seed=args.seed, warmup=args.warmup,
              unknown=unknown, stop=stop)
    if args.num_samples == 1 and not args.no_stream:
        chars = model.generate(args.length, **kw)  # checks every argument first
        for ch in chars:
            sys.stdout.write(ch)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return 0
    from ..progress import Bar

    with Bar("sampling") as bar:
        out = model.sample(args.length, num_samples=args.num_samples, progress=bar, **kw)
    for i, text in enumerate([out] if isinstance(out, str) else out):
        if args.num_samples > 1:
            sys.stdout.write(f"--- sample {i + 1} ---\n")
        sys.stdout.write(text + "\n")
    return 0


def _beam(model: Any, args: argparse.Namespace, stop: Optional[str], unknown: str) -> int:
    clash = [flag for flag, on in (("--top-k", args.top_k is not None),
                                   ("--top-p", args.top_p is not None),
                                   ("--argmax", args.argmax),
                                   ("--num-samples", args.num_samples != 1)) if on]
    if clash:
        raise ValueError(f"--beam finds the most likely text; {', '.join(clash)} "
                         "apply to random samples only")
    off = args.allow_repeats
    found = model.beam_search(
        args.prime, args.length, args.beam, length_penalty=args.length_penalty, stop=stop,
        warmup=args.warmup, unknown=unknown,
        no_repeat_ngram_size=0 if off else _given(args.no_repeat_ngram, NO_REPEAT_NGRAM),
        repetition_penalty=1.0 if off else _given(args.repetition_penalty, REPETITION_PENALTY),
        penalty_ngram_size=PENALTY_NGRAM)
    sys.stdout.write(found + "\n")
    n = max(1, found.ids.size)
    print(f"beam search, K={args.beam}: {found.ids.size} characters, log-probability "
          f"{found.log_prob:.4f} ({-found.log_prob / n / math.log(2):.3f} bits/char)",
          file=sys.stderr)
    if stop is not None and not found.stopped:
        print(f"pycharrnn: warning: no text reached --stop within --length {args.length}; "
              "this is the best that did not", file=sys.stderr)
    return 0


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value
