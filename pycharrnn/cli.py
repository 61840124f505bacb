"""The ``pycharrnn`` command: train, sample, info."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import List, Optional

import numpy as np


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model on a text file or a built-in corpus",
                       description="Train a character-level model. Writes RUN_DIR/latest.npz "
                                   "and prints progress and a final sample.")
    p.add_argument("data", nargs="?", help="a UTF-8 text file to train on")
    p.add_argument("--corpus", help="a built-in corpus instead of a file (shakespeare)")
    p.add_argument("--out", required=True, help="run directory for checkpoints")
    p.add_argument("--steps", type=int, help="training steps (chunks of B x T characters)")
    p.add_argument("--time", type=float, dest="seconds",
                   help="stop after this many seconds (with --steps: whichever comes first)")
    p.add_argument("--cell", default="lstm", choices=["rnn", "gru", "lstm"])
    p.add_argument("--nonlinearity", default="tanh", choices=["tanh", "relu"])
    p.add_argument("--hidden-size", type=int, default=256)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--embedding-dim", type=int, default=None,
                   help="embedding size (default: one-hot input)")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-length", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.02, help="AdaGrad learning rate")
    p.add_argument("--clip", type=float, default=5.0, help="clip each gradient element")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="kernel threads (default: all cores)")
    p.add_argument("--log-every", type=int, default=50, help="steps between progress lines")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--sample-length", type=int, default=400,
                   help="characters sampled at the end (0: none)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def _add_sample(sub) -> None:
    p = sub.add_parser("sample", help="generate text from a checkpoint or run directory")
    p.add_argument("checkpoint", help="a checkpoint file or a run directory")
    p.add_argument("--length", type=int, default=500)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--prime", default="", help="text the sample continues")


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="build information, or a checkpoint's configuration")
    p.add_argument("checkpoint", nargs="?")


def _train(args) -> int:
    import pycharrnn as pc
    from .checkpoint import LATEST

    if (args.data is None) == (args.corpus is None):
        print("error: give a DATA_FILE or --corpus NAME (one of them)", file=sys.stderr)
        return 2
    if args.steps is None and args.seconds is None:
        print("error: give --steps N and/or --time SECONDS", file=sys.stderr)
        return 2
    if args.threads is not None:
        pc.set_num_threads(args.threads)
    if args.corpus is not None:
        from .corpus import load_corpus

        text = load_corpus(args.corpus)
    else:
        text = Path(args.data).read_text(encoding="utf-8")
    vocab = pc.Vocab.from_text(text)
    model = pc.CharRNN(vocab, hidden_size=args.hidden_size, num_layers=args.layers,
                       cell=args.cell, nonlinearity=args.nonlinearity,
                       embedding_dim=args.embedding_dim, dropout=args.dropout,
                       seed=args.seed)
    opt = pc.optim.AdaGrad(model, lr=args.lr, eps=1e-8, clip_value=args.clip or None,
                           eps_inside_sqrt=True)
    trainer = pc.Trainer(model, text, batch_size=args.batch_size,
                         seq_length=args.seq_length, optimizer=opt)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = print if not args.quiet else (lambda *a, **k: None)
    log(f"{model}\n{len(text):,} characters, {len(vocab)} symbols, "
        f"{pc.get_num_threads()} threads; writing {out / LATEST}")
    t0 = time.perf_counter()
    chars = 0

    def on_step(m) -> None:
        nonlocal chars
        chars += args.batch_size * args.seq_length
        s = m["step"]
        if s % args.log_every == 0 or s == 1:
            el = time.perf_counter() - t0
            log(f"step {s:6d}  loss {m['loss']:.4f} ({m['bpc']:.3f} bpc)  "
                f"ema {m['ema_loss']:.4f}  epoch {m['epoch']:.3f}  "
                f"{chars / el:,.0f} chars/s  {el:6.1f}s", flush=True)
        if args.checkpoint_every and s % args.checkpoint_every == 0:
            model.save(out / LATEST)

    trainer.run(steps=args.steps, seconds=args.seconds, callback=on_step)
    model.save(out / LATEST)
    el = time.perf_counter() - t0
    last = trainer.history[-1] if trainer.history else None
    if last is not None:
        log(f"done: {last['step']} steps in {el:.1f}s, {chars / el:,.0f} chars/s, "
            f"final loss {last['loss']:.4f} nats ({last['bpc']:.3f} bpc), "
            f"ema {last['ema_loss']:.4f}")
    if args.sample_length > 0:
        print("--- sample ---")
        print(model.sample(args.sample_length, temperature=0.8, seed=args.seed))
    return 0


def _sample(args) -> int:
    import pycharrnn as pc

    model = pc.load(args.checkpoint)
    text = model.sample(args.length, prime=args.prime, temperature=args.temperature,
                        top_k=args.top_k, seed=args.seed)
    sys.stdout.write(args.prime + text + "\n")
    return 0


def _info(args) -> int:
    import pycharrnn as pc

    if args.checkpoint is None:
        info = {"version": pc.__version__, **pc.build_info()}
    else:
        model = pc.load(args.checkpoint)
        info = {**model.config(), "num_params": model.num_params}
    print(json.dumps(info, indent=2))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    from . import __version__
    from .errors import PyCharRNNError

    parser = argparse.ArgumentParser(prog="pycharrnn",
                                     description="Character-level RNN language models.")
    parser.add_argument("--version", action="version", version=f"pycharrnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_sample(sub)
    _add_info(sub)
    args = parser.parse_args(argv)
    try:
        return {"train": _train, "sample": _sample, "info": _info}[args.command](args)
    except (PyCharRNNError, ValueError, TypeError, OSError, ImportError) as e:
        print(f"pycharrnn: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
