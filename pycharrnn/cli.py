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


# Model options default to None so that --resume can tell which ones the
# user set (and check them against the checkpoint); DEFAULTS fills the rest.
MODEL_DEFAULTS = {"cell": "lstm", "nonlinearity": "tanh", "hidden_size": 256, "num_layers": 1,
                  "embedding_dim": None, "dropout": 0.0, "dtype": "float32"}
DEFAULT_LR = {"sgd": 0.1, "adagrad": 0.02, "rmsprop": 2e-3, "adam": 2e-3, "adamw": 2e-3}
RUN_FILE = "run.json"


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model on a text file or a built-in corpus",
                       description="Train a character-level model. RUN_DIR receives "
                                   "latest.npz (every --checkpoint-every steps, each epoch "
                                   "and at the end), best.npz (lowest validation loss) and "
                                   "run.json (the data and options of the run).")
    p.add_argument("data", nargs="?", help="a UTF-8 text file to train on")
    p.add_argument("--corpus", help="a built-in corpus instead of a file (shakespeare)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in RUN_DIR (same data; --steps is the run's total)")
    p.add_argument("--steps", type=int, help="train until the run has made this many steps")
    p.add_argument("--time", type=float, dest="seconds",
                   help="stop after this many seconds (with --steps: whichever comes first)")
    g = p.add_argument_group("model")
    g.add_argument("--cell", choices=["rnn", "gru", "lstm"], help="default lstm")
    g.add_argument("--nonlinearity", choices=["tanh", "relu"], help="rnn only; default tanh")
    g.add_argument("--hidden-size", type=int, help="default 256")
    g.add_argument("--layers", type=int, dest="num_layers", help="default 1")
    g.add_argument("--embedding-dim", type=int, help="default: one-hot input")
    g.add_argument("--dropout", type=float, help="between layers; default 0")
    g.add_argument("--dtype", choices=["float32", "float64"], help="default float32")
    g = p.add_argument_group("training")
    g.add_argument("--batch-size", type=int, help="default 32")
    g.add_argument("--seq-length", type=int, help="default 64")
    g.add_argument("--optimizer", choices=sorted(DEFAULT_LR), default="adam")
    g.add_argument("--lr", type=float, help="default: 2e-3 (adam, adamw, rmsprop), "
                                            "0.02 (adagrad), 0.1 (sgd)")
    g.add_argument("--clip", type=float, default=5.0,
                   help="clip each gradient element to [-C, C] (0: off)")
    g.add_argument("--clip-norm", type=float, help="clip the global gradient norm")
    g.add_argument("--schedule", choices=["constant", "step", "cosine", "plateau"],
                   default="constant")
    g.add_argument("--lr-decay", type=float, default=0.97,
                   help="step: factor per epoch; plateau: factor per plateau")
    g.add_argument("--lr-decay-after", type=float, default=10,
                   help="step: first epoch to decay after")
    g.add_argument("--warmup", type=int, default=0, help="cosine: warm-up steps")
    g.add_argument("--val-fraction", type=float, default=0.1)
    g.add_argument("--eval-every", type=int, default=1000,
                   help="validation interval (steps); also at each epoch end and the end")
    g.add_argument("--checkpoint-every", type=int, default=500)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--threads", type=int, help="kernel threads (default: all cores)")
    g = p.add_argument_group("output")
    g.add_argument("--log-every", type=int, default=50, help="steps between progress lines")
    g.add_argument("--sample-length", type=int, default=400,
                   help="characters sampled at the end (0: none)")
    g.add_argument("--quiet", action="store_true", help="no progress lines")


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


def _load_text(data: Optional[str], corpus: Optional[str]) -> str:
    if corpus is not None:
        from .corpus import load_corpus

        return load_corpus(corpus)
    return Path(data).read_text(encoding="utf-8")


def _schedule(args, lr: float, total: Optional[int]):
    from . import schedule as sch

    if args.schedule == "step":
        return sch.StepDecay(lr, gamma=args.lr_decay, every=1, start=args.lr_decay_after)
    if args.schedule == "cosine":
        if total is None:
            raise ValueError("--schedule cosine needs --steps")
        return sch.CosineWarmup(lr, total_steps=total, warmup_steps=args.warmup)
    if args.schedule == "plateau":
        return sch.ReduceOnPlateau(lr, factor=args.lr_decay if args.lr_decay < 1 else 0.5)
    return None


def _train(args) -> int:
    import pycharrnn as pc
    from .checkpoint import LATEST
    from .train import check_compatible

    if args.steps is None and args.seconds is None:
        print("error: give --steps N and/or --time SECONDS", file=sys.stderr)
        return 2
    if args.threads is not None:
        pc.set_num_threads(args.threads)
    out = Path(args.out)
    model_args = {k: getattr(args, k) for k in MODEL_DEFAULTS}
    log = print if not args.quiet else (lambda *a, **k: None)
    if args.resume:
        if not (out / LATEST).is_file():
            print(f"error: {out / LATEST} does not exist: nothing to resume", file=sys.stderr)
            return 2
        run = json.loads((out / RUN_FILE).read_text(encoding="utf-8"))
        data, corpus = args.data, args.corpus
        if data is None and corpus is None:
            data, corpus = run.get("data"), run.get("corpus")
        text = _load_text(data, corpus)
        saved = pc.load(out / LATEST).config()
        check_compatible(saved, model_args)
        fixed = {k: getattr(args, k) for k in ("batch_size", "seq_length")
                 if getattr(args, k) is not None}
        trainer = pc.Trainer.resume(out, text, **fixed)
        model = trainer.model
        log(f"resuming {out} at step {trainer.step_count}")
    else:
        if (args.data is None) == (args.corpus is None):
            print("error: give a DATA_FILE or --corpus NAME (one of them)", file=sys.stderr)
            return 2
        if (out / LATEST).exists():
            print(f"error: {out} already holds a run; continue it with --resume or choose "
                  "another --out", file=sys.stderr)
            return 2
        text = _load_text(args.data, args.corpus)
        args.batch_size = args.batch_size or 32
        args.seq_length = args.seq_length or 64
        cfg = {k: (v if v is not None else MODEL_DEFAULTS[k]) for k, v in model_args.items()}
        model = pc.CharRNN(pc.Vocab.from_text(text), seed=args.seed, **cfg)
        lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]
        kw = dict(lr=lr, clip_value=args.clip or None, clip_norm=args.clip_norm)
        if args.optimizer == "adagrad":
            kw.update(eps=1e-8, eps_inside_sqrt=True)
        opt = pc.optim.OPTIMIZERS[args.optimizer](model, **kw)
        trainer = pc.Trainer(model, text, batch_size=args.batch_size,
                             seq_length=args.seq_length, optimizer=opt,
                             schedule=_schedule(args, lr, args.steps),
                             val_fraction=args.val_fraction, eval_every=args.eval_every,
                             checkpoint_dir=out, checkpoint_every=args.checkpoint_every)
        out.mkdir(parents=True, exist_ok=True)
        run = {"data": str(Path(args.data).resolve()) if args.data else None,
               "corpus": args.corpus, "args": {k: v for k, v in vars(args).items()
                                               if k not in ("func",)}}
        from .checkpoint import atomic_write

        atomic_write(out / RUN_FILE, lambda f: f.write(json.dumps(run, indent=2).encode()))
    log(f"{model}\n{len(text):,} characters ({trainer.batches.ids.size:,} for training, "
        f"{trainer.val_ids.size:,} for validation), {model.vocab_size} symbols, "
        f"{trainer.optimizer!r}, {pc.get_num_threads()} threads -> {out}")
    t0 = time.perf_counter()
    chars = 0

    def on_event(tr, event, m) -> None:
        nonlocal chars
        if event == "eval":
            log(f"step {m['step']:6d}  validation loss {m['val_loss']:.4f} "
                f"({m['val_bpc']:.3f} bpc)", flush=True)
            return
        if event != "step":
            return
        chars += tr.batches.batch_size * tr.batches.seq_length
        s = m["step"]
        if s % args.log_every == 0 or s == 1:
            el = time.perf_counter() - t0
            log(f"step {s:6d}  loss {m['loss']:.4f} ({m['bpc']:.3f} bpc)  "
                f"ema {m['ema_loss']:.4f}  lr {m['lr']:.3g}  epoch {m['epoch']:.3f}  "
                f"{chars / el:,.0f} chars/s  {el:6.1f}s", flush=True)

    trainer.callbacks.append(on_event)
    trainer.run(until_step=args.steps, seconds=args.seconds)
    el = time.perf_counter() - t0
    if trainer.history:
        last = trainer.history[-1]
        recent = trainer.history[-min(50, len(trainer.history)):]
        train_loss = sum(h["loss"] for h in recent) / len(recent)
        msg = (f"done: step {int(last['step'])} ({chars / max(el, 1e-9):,.0f} chars/s), "
               f"train loss {train_loss:.4f} (mean of the last {len(recent)} steps)")
        if trainer.val_ids.size:
            vh = trainer.val_history
            v = vh[-1]["val_loss"] if vh and vh[-1]["step"] == trainer.step_count \
                else trainer.evaluate()
            msg += f", validation loss {v:.4f} ({v / math.log(2):.3f} bpc)"
        log(msg)
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
