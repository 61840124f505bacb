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
                   help="always the most likely character (temperature 0)")
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
    if args.beam is not None:
        return _beam(model, args, stop, unknown)
    if args.length_penalty:
        raise ValueError("--length-penalty applies to --beam only")
    kw = dict(prime=args.prime, temperature=0.0 if args.argmax else args.temperature,
              top_k=args.top_k, top_p=args.top_p, seed=args.seed, warmup=args.warmup,
              unknown=unknown, stop=stop)
    if args.num_samples == 1 and not args.no_stream:
        chars = model.generate(args.length, **kw)  # checks every argument first
        sys.stdout.write(args.prime)
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
        sys.stdout.write(args.prime + text + "\n")
    return 0


def _beam(model: Any, args: argparse.Namespace, stop: Optional[str], unknown: str) -> int:
    clash = [flag for flag, on in (("--top-k", args.top_k is not None),
                                   ("--top-p", args.top_p is not None),
                                   ("--argmax", args.argmax),
                                   ("--num-samples", args.num_samples != 1)) if on]
    if clash:
        raise ValueError(f"--beam finds the most likely text; {', '.join(clash)} "
                         "apply to random samples only")
    found = model.beam_search(args.prime, args.length, args.beam,
                              length_penalty=args.length_penalty, stop=stop,
                              warmup=args.warmup, unknown=unknown)
    sys.stdout.write(args.prime + found + "\n")
    n = max(1, len(found))
    print(f"beam search, K={args.beam}: {len(found)} characters, log-probability "
          f"{found.log_prob:.4f} ({-found.log_prob / n / math.log(2):.3f} bits/char)",
          file=sys.stderr)
    return 0
