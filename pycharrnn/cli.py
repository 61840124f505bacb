"""The ``pycharrnn`` command: train, sample, bench, info, plot."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import List, Optional



# Model options default to None so that --resume can tell which ones the
# user set (and check them against the checkpoint); DEFAULTS fills the rest.
MODEL_DEFAULTS = {"cell": "lstm", "nonlinearity": "tanh", "hidden_size": 256, "num_layers": 1,
                  "embedding_dim": None, "dropout": 0.0, "dtype": "float32"}
DEFAULT_LR = {"sgd": 0.1, "adagrad": 0.02, "rmsprop": 2e-3, "adam": 2e-3, "adamw": 2e-3}
RUN_FILE = "run.json"
CURVES_FILE = "curves.png"


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
    p.add_argument("--epochs", type=float,
                   help="train until the run has made this many passes over the text")
    p.add_argument("--time", type=float, dest="seconds",
                   help="stop after this many seconds of this session "
                        "(with --steps/--epochs: whichever comes first)")
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
    g.add_argument("--log-every", type=int, default=50,
                   help="steps between progress lines (without tqdm, or with --no-bar)")
    g.add_argument("--sample-every", type=int, default=0,
                   help="print a sample every N steps (0: only at the end)")
    g.add_argument("--sample-length", type=int, default=400,
                   help="characters of each sample (0: no samples)")
    g.add_argument("--no-bar", action="store_true", help="progress lines instead of a bar")
    g.add_argument("--quiet", action="store_true", help="no progress output")


def _add_sample(sub) -> None:
    p = sub.add_parser("sample", help="generate text from a checkpoint or run directory")
    p.add_argument("checkpoint", help="a checkpoint file or a run directory")
    p.add_argument("--length", type=int, default=500, help="characters to generate")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--argmax", action="store_true",
                   help="always the most likely character (temperature 0)")
    p.add_argument("--top-k", type=int, default=None, help="sample from the K most likely")
    p.add_argument("--top-p", type=float, default=None,
                   help="sample from the smallest set of characters with probability >= P")
    p.add_argument("--prime", default="", help="text the sample continues (printed first)")
    p.add_argument("--warmup", default="",
                   help="text run through the model before the prime (not printed)")
    p.add_argument("--drop-unknown", action="store_true",
                   help="leave out characters of --prime/--warmup that are not in the "
                        "vocabulary (default: an error naming the first)")
    p.add_argument("--stop", default=None,
                   help=r"end a sample once it ends with this text (\n, \t, \\ are escapes)")
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--no-stream", action="store_true",
                   help="print when done instead of character by character")


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="the quick benchmark: pycharrnn vs PyTorch vs NumPy")
    p.add_argument("--threads", type=int, help="default: all cores")
    p.add_argument("--json", help="also write the results to this file")


def _add_plot(sub) -> None:
    p = sub.add_parser("plot", help="draw a run directory's training curves (PNG)")
    p.add_argument("run_dir")
    p.add_argument("--out", help="PNG file (default RUN_DIR/curves.png)")


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

    if args.steps is None and args.seconds is None and args.epochs is None:
        print("error: give --steps N, --epochs E and/or --time SECONDS", file=sys.stderr)
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
        from .checkpoint import remove_stale_temporaries
        from .metrics import METRICS_FILE

        # Temporary files of writes a killed run left behind (this process
        # now owns the run directory).
        remove_stale_temporaries(out, (LATEST, pc.train.BEST, METRICS_FILE, RUN_FILE,
                                       CURVES_FILE), time.time())
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
    until = args.steps
    if args.epochs is not None:
        by_epochs = int(math.ceil(args.epochs * trainer.batches.chunks_per_epoch))
        until = by_epochs if until is None else min(until, by_epochs)
    from .metrics import MetricsLog

    with MetricsLog(out, resume_step=trainer.step_count) as mlog:
        trainer.callbacks.append(mlog)
        progress = _Progress(trainer, until, args)
        trainer.callbacks.append(progress)
        try:
            trainer.run(until_step=until, seconds=args.seconds)
        finally:
            progress.close()
    _plot_quietly(trainer, log)
    if trainer.history:
        recent = trainer.history[-min(50, len(trainer.history)):]
        train_loss = sum(h["loss"] for h in recent) / len(recent)
        msg = (f"done: step {trainer.step_count}, {progress.rate():,.0f} chars/s, "
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


class _Progress:
    """Trainer callback: a tqdm bar (when tqdm is installed and output is not
    --no-bar/--quiet) or progress lines, validation lines and periodic samples."""

    def __init__(self, trainer, until: Optional[int], args) -> None:
        self.args, self.t0, self.chars = args, time.perf_counter(), 0
        self.start_step = trainer.step_count
        self.bar = None
        if not args.quiet and not args.no_bar:
            try:
                from tqdm import tqdm

                total = None if until is None else max(0, until - trainer.step_count)
                self.bar = tqdm(total=total, unit="step", dynamic_ncols=True,
                                desc="training", initial=0)
            except ImportError:
                self.bar = None
        self.val = None

    def rate(self) -> float:
        return self.chars / max(time.perf_counter() - self.t0, 1e-9)

    def write(self, msg: str) -> None:
        if self.args.quiet:
            return
        if self.bar is not None:
            self.bar.write(msg)
        else:
            print(msg, flush=True)

    def __call__(self, tr, event, m) -> None:
        if event == "eval":
            self.val = m["val_loss"]
            self.write(f"step {m['step']:6d}  validation loss {m['val_loss']:.4f} "
                       f"({m['val_bpc']:.3f} bpc)")
            _plot_quietly(tr, None)
            return
        if event != "step":
            return
        self.chars += tr.batches.batch_size * tr.batches.seq_length
        s = m["step"]
        if self.bar is not None:
            post = {"loss": f"{m['loss']:.3f}", "ema": f"{m['ema_loss']:.3f}",
                    "chars/s": f"{self.rate():,.0f}"}
            if self.val is not None:
                post["val"] = f"{self.val:.3f}"
            self.bar.set_postfix(post, refresh=False)
            self.bar.update(1)
        elif not self.args.quiet and (s % self.args.log_every == 0 or s == self.start_step + 1):
            el = time.perf_counter() - self.t0
            self.write(f"step {s:6d}  loss {m['loss']:.4f} ({m['bpc']:.3f} bpc)  "
                       f"ema {m['ema_loss']:.4f}  lr {m['lr']:.3g}  epoch {m['epoch']:.3f}  "
                       f"{self.rate():,.0f} chars/s  {el:6.1f}s")
        every = self.args.sample_every
        if every and s % every == 0 and self.args.sample_length > 0 and not self.args.quiet:
            text = tr.model.sample(self.args.sample_length, temperature=0.8, seed=s)
            self.write(f"--- sample at step {s} ---\n{text}\n---")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


_PLOT_HINTED = []


def _plot_quietly(trainer, log) -> None:
    """Redraw RUN_DIR/curves.png from the trainer's histories (which a resumed
    run restores in full) when matplotlib is installed; a hint once if not."""
    if trainer.checkpoint_dir is None or not trainer.history:
        return
    try:
        from .plot import plot_curves

        plot_curves([(trainer.model.cell, trainer.history, trainer.val_history)],
                    trainer.checkpoint_dir / CURVES_FILE)
    except ImportError:
        if log is not None and not _PLOT_HINTED:
            _PLOT_HINTED.append(True)
            log('(curves.png needs matplotlib: pip install "pycharrnn[plot]")')


def _unescape(text: Optional[str]) -> Optional[str]:
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


def _sample(args) -> int:
    import pycharrnn as pc

    model = pc.load(args.checkpoint)
    kw = dict(prime=args.prime, temperature=0.0 if args.argmax else args.temperature,
              top_k=args.top_k, top_p=args.top_p, seed=args.seed, warmup=args.warmup,
              unknown="drop" if args.drop_unknown else "error")
    if args.num_samples == 1 and not args.no_stream:
        sys.stdout.write(args.prime)
        for ch in model.generate(args.length, stop=_unescape(args.stop), **kw):
            sys.stdout.write(ch)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return 0
    out = model.sample(args.length, stop=_unescape(args.stop), num_samples=args.num_samples,
                       **kw)
    for i, text in enumerate([out] if isinstance(out, str) else out):
        if args.num_samples > 1:
            sys.stdout.write(f"--- sample {i + 1} ---\n")
        sys.stdout.write(args.prime + text + "\n")
    return 0


def _bench(args) -> int:
    from . import bench

    argv = ["--quick"]
    if args.threads is not None:
        argv += ["--threads", str(args.threads)]
    if args.json:
        argv += ["--json", args.json]
    return bench.main(argv)


def _plot(args) -> int:
    from .plot import plot_run

    print(plot_run(args.run_dir, args.out))
    return 0


def _info(args) -> int:
    import pycharrnn as pc
    from .checkpoint import read_arrays, resolve

    if args.checkpoint is None:
        info = {"version": pc.__version__, **pc.build_info()}
    else:
        path = resolve(args.checkpoint)
        model = pc.load(path)
        info = {"file": str(path), **model.config(), "num_params": model.num_params}
        header, _ = read_arrays(path)
        t = (header.get("extra") or {}).get("trainer")
        if t:
            info.update(step=t["step"], epoch=t["epoch"], best_val_loss=t["best_val_loss"],
                        ema_loss=t["ema_loss"], batch_size=t["batch_size"],
                        seq_length=t["seq_length"],
                        optimizer=header["extra"]["optimizer"]["type"])
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
    _add_bench(sub)
    _add_info(sub)
    _add_plot(sub)
    args = parser.parse_args(argv)
    try:
        commands = {"train": _train, "sample": _sample, "bench": _bench, "info": _info,
                    "plot": _plot}
        return commands[args.command](args)
    except (PyCharRNNError, ValueError, TypeError, OSError, ImportError) as e:
        print(f"pycharrnn: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
