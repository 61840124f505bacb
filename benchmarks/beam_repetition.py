"""Beam search with and without repetition control, on a trained model.

    python benchmarks/beam_repetition.py RUN_DIR TEXT [--beam 8] [--length 1000]
        [--primes 5] [--json FILE]

For each setting (off, no_repeat_ngram_size alone, repetition_penalty alone,
both; the command line's default is marked) beam search writes LENGTH
characters after PRIMES primes taken from line starts of TEXT (a speaker's
name where the text has them), and the table gives the mean over primes of:

- lp/char: the model's own log-probability per character of the text it
  chose (nats; beam search maximises it, so higher is "more likely", not
  better text: a loop is very likely);
- rep12: the share of the text's 12-character windows that occurred before
  in it (a loop: near 1; TEXT itself is measured on windows of LENGTH);
- distinct: distinct words / words (TEXT: the same on windows of LENGTH);
- nonwords: the share of words that never occur in TEXT.

This is how the command line's defaults (pycharrnn/cli/sample.py) were
chosen: the setting whose rep12 and distinct are nearest TEXT's own, at a
small cost in lp/char.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")

SETTINGS = [
    ("off", {}),
    ("no-repeat 12", dict(no_repeat_ngram_size=12)),
    ("no-repeat 20", dict(no_repeat_ngram_size=20)),
    ("penalty 1.1 / 4-grams", dict(repetition_penalty=1.1, penalty_ngram_size=4)),
    ("penalty 1.2 / 4-grams", dict(repetition_penalty=1.2, penalty_ngram_size=4)),
    ("penalty 1.2 / 3-grams", dict(repetition_penalty=1.2, penalty_ngram_size=3)),
    ("no-repeat 20 + penalty 1.2 / 4 (CLI)",
     dict(no_repeat_ngram_size=20, repetition_penalty=1.2, penalty_ngram_size=4)),
]


def repeated(text: str, n: int = 12) -> float:
    """The share of the n-character windows of text seen earlier in it."""
    grams = [text[i:i + n] for i in range(len(text) - n + 1)]
    return 1 - len(set(grams)) / max(1, len(grams))


def measures(text: str, known: set) -> dict:
    words = WORD.findall(text)
    return dict(rep12=repeated(text), distinct=len(set(words)) / max(1, len(words)),
                nonwords=float(np.mean([w not in known for w in words])) if words else 0.0)


def primes_from(text: str, count: int, vocab) -> list:
    """Line starts of text: the first `count` distinct lines ending in ':'
    (speakers), else the first words of lines, each followed by a newline."""
    lines = [ln for ln in text.split("\n") if ln.strip()]
    speakers = sorted({ln for ln in lines if ln.endswith(":") and len(ln) < 40})
    picks = speakers or sorted({" ".join(ln.split()[:2]) for ln in lines})
    rng = np.random.default_rng(0)
    chosen = [picks[i] for i in rng.choice(len(picks), min(count, len(picks)), replace=False)]
    return [p + "\n" for p in chosen if all(ch in vocab for ch in p)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a run directory or checkpoint")
    ap.add_argument("text", help="the model's training text (UTF-8)")
    ap.add_argument("--beam", type=int, default=8)
    ap.add_argument("--length", type=int, default=1000)
    ap.add_argument("--primes", type=int, default=5)
    ap.add_argument("--json", help="also write the table here")
    args = ap.parse_args(argv)

    import pycharrnn as pc

    model = pc.load(args.run)
    text = Path(args.text).read_text("utf-8")
    known = set(WORD.findall(text))
    primes = primes_from(text, args.primes, model.vocab)
    rng = np.random.default_rng(1)
    starts = rng.integers(0, len(text) - args.length, 200)
    own = [measures(text[s:s + args.length], known) for s in starts]
    rows = [dict(setting="the text itself", lp=None,
                 **{k: float(np.mean([o[k] for o in own])) for k in own[0]})]
    for name, kw in SETTINGS:
        per = []
        for prime in primes:
            found = model.beam_search(prime, args.length, args.beam, **kw)
            m = measures(found[len(prime):], known)
            m["lp"] = found.log_prob / max(1, found.ids.size)
            per.append(m)
        rows.append(dict(setting=name, **{k: float(np.mean([p[k] for p in per]))
                                          for k in per[0]}))
    print(f"beam {args.beam}, {args.length} characters, {len(primes)} primes, "
          f"{model!r}")
    print(f"{'setting':40s} {'lp/char':>8s} {'rep12':>6s} {'distinct':>8s} {'nonwords':>8s}")
    for r in rows:
        lp = "" if r["lp"] is None else f"{r['lp']:.3f}"
        print(f"{r['setting']:40s} {lp:>8s} {r['rep12']:6.3f} {r['distinct']:8.3f} "
              f"{r['nonwords']:8.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(args=vars(args), rows=rows), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
