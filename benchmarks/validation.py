"""The validation loss three ways, on one model and one held-out tail: a
plain single stream (the definition), B streams each started from a zero
state (what pycharrnn measured before), and pycharrnn's evaluate() (B streams,
warmed up, re-read where they started off). Prints each loss, its distance
from the single stream and the median time of each, measured interleaved.

    python benchmarks/validation.py TEXT [--checkpoint FILE | --seconds 60 --cell gru]

Without --checkpoint it first trains a model (1 x 256, one-hot, B=32, T=64,
Adam 2e-3) for --seconds. The tail is the text's last --val-fraction.
"""

import argparse
import statistics
import time

import numpy as np

import pycharrnn as pc
from pycharrnn.files import read_text
from pycharrnn.data import split_validation
from pycharrnn.evaluation import evaluate


def single_stream(model, ids, T=1000):
    state, total = None, 0.0
    for p in range(0, ids.size - 1, T):
        c = np.asarray(ids[p:p + T + 1], dtype=np.int32)
        loss, state = model.loss(c[:-1], c[1:], state)
        total += loss * (c.size - 1)
    return total / (ids.size - 1)


def cold_streams(model, ids, B=32, T=64):
    n = (ids.size - 1) // B
    state, total = None, 0.0
    for p in range(0, n, T):
        t = min(T, n - p)
        c = ids[(np.arange(B) * n)[:, None] + p + np.arange(t + 1)[None, :]]
        loss, state = model.loss(c[:, :-1], c[:, 1:], state)
        total += loss * B * t
    return total / (B * n)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("text")
    p.add_argument("--checkpoint", help="a model to measure (default: train one)")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--cell", default="gru", choices=["rnn", "gru", "lstm"])
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    text = read_text(a.text)
    if a.checkpoint:
        model = pc.load(a.checkpoint)
    else:
        model = pc.CharRNN(pc.Vocab.from_text(text), hidden_size=256, cell=a.cell, seed=0)
        tr = pc.Trainer(model, text, batch_size=32, seq_length=64, val_fraction=a.val_fraction,
                        optimizer=pc.optim.Adam(model, lr=2e-3, clip_value=5.0))
        tr.run(seconds=a.seconds, validate_at_end=False)
        print(f"trained {model} for {tr.step_count} steps ({a.seconds:g} s)")
    ids = model.vocab.encode(text)
    _, val = split_validation(ids, a.val_fraction)
    ways = {"single stream": single_stream, "32 cold streams (before)": cold_streams,
            "evaluate() (32 streams)": lambda m, v: evaluate(m, v, 32, 64)}
    times = {k: [] for k in ways}
    loss = {}
    for _ in range(a.repeats):
        for k, f in ways.items():
            t0 = time.perf_counter()
            loss[k] = f(model, val)
            times[k].append(time.perf_counter() - t0)
    ref = loss["single stream"]
    print(f"validation tail: {val.size:,} characters, {pc.get_num_threads()} threads")
    for k in ways:
        print(f"{k:26s} {loss[k]:.6f} nats/char  {loss[k] - ref:+.2e} from the single "
              f"stream  {statistics.median(times[k]):6.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
