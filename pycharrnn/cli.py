"""The ``pycharrnn`` command: train, sample, bench, info, plot."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import List, Optional

from .errors import count
from .recipes import RECIPES



# Model options default to None so that --resume can tell which ones the
# user set (and check them against the checkpoint); DEFAULTS fills the rest.
MODEL_DEFAULTS = {"cell": "lstm", "nonlinearity": "tanh", "hidden_size": 256, "num_layers": 1,
                  "embedding_dim": None, "dropout": 0.0, "dtype": "float32",
                  "input_dropout": 0.0, "output_dropout": 0.0, "weight_drop": 0.0,
                  "embedding_dropout": 0.0, "locked_dropout": False}
# Training options that also default to None, so that a recipe can fill them.
TRAIN_DEFAULTS = {"batch_size": 32, "seq_length": 64, "optimizer": "adam", "lr": None,
                  "weight_decay": 0.0, "schedule": "constant", "warmup": 0}
DEFAULT_LR = {"sgd": 0.1, "adagrad": 0.02, "rmsprop": 2e-3, "adam": 2e-3, "adamw": 2e-3}
#: Validation: every EVAL_EVERY steps, or in runs limited by --time alone at
#: EVALS_BY_TIME evenly spaced times (a run ends validated either way).
EVAL_EVERY, EVALS_BY_TIME = 1000, 5
#: The sampling temperature of `pycharrnn sample` and of the samples `train` prints.
SAMPLE_TEMPERATURE = 0.8
PLOT_EVERY = 30.0

# Python parameter names in error messages from the library, and the flags
# that set them (the CLI's errors name its flags).
_FLAGS = {"batch_size": "--batch-size", "seq_length": "--seq-length",
          "val_fraction": "--val-fraction", "hidden_size": "--hidden-size",
          "num_layers": "--layers", "embedding_dim": "--embedding-dim", "top_k": "--top-k",
          "top_p": "--top-p", "num_samples": "--num-samples", "temperature": "--temperature",
          "eval_every": "--eval-every", "checkpoint_every": "--checkpoint-every",
          "input_dropout": "--input-dropout", "output_dropout": "--output-dropout",
          "weight_drop": "--weight-drop", "embedding_dropout": "--embedding-dropout",
          "weight_decay": "--weight-decay"}


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" after every option that has a default (not for
    switches, nor where the help already says its default)."""

    def _get_help_string(self, action):
        h = action.help or ""
        d = action.default
        if d is None or d is False or d is argparse.SUPPRESS or "(default" in h:
            return h
        return super()._get_help_string(action)


def _number(kind, lo=None, hi=None, lo_open=False, hi_open=False):
    """An argparse type: ``kind`` (int or float) within [lo, hi] (an open end
    with lo_open / hi_open); argparse names the flag in the error."""
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        if kind is float and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if lo is not None and (v <= lo if lo_open else v < lo):
            raise argparse.ArgumentTypeError(f"must be {'>' if lo_open else '>='} {lo}, got {v}")
        if hi is not None and (v >= hi if hi_open else v > hi):
            raise argparse.ArgumentTypeError(f"must be {'<' if hi_open else '<='} {hi}, got {v}")
        return v
    parse.__name__ = kind.__name__  # argparse's "invalid int value" wording
    return parse


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model on a text file or a built-in corpus",
                       formatter_class=_Help,
                       description="Train a character-level model. RUN_DIR receives "
                                   "latest.npz (every --checkpoint-every steps, each epoch "
                                   "and at the end), best.npz (lowest validation loss), "
                                   "run.json (the data and options of the run), "
                                   "metrics.jsonl and curves.png. Every run ends with a "
                                   "validation and a checkpoint, also when stopped by "
                                   "--time or Ctrl-C.")
    p.add_argument("data", nargs="?", help="a UTF-8 text file to train on")
    p.add_argument("--corpus", help="a built-in corpus instead of a file (shakespeare)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in RUN_DIR (same data; --steps is the run's total)")
    p.add_argument("--steps", type=_number(int, 0),
                   help="train until the run has made this many steps")
    p.add_argument("--epochs", type=_number(float, 0, lo_open=True),
                   help="train until the run has made this many passes over the text")
    p.add_argument("--time", type=_number(float, 0, lo_open=True), dest="seconds",
                   help="stop after this many seconds of this session "
                        "(with --steps/--epochs: whichever comes first)")
    g = p.add_argument_group("model (with --resume: must match the checkpoint)")
    g.add_argument("--cell", choices=["rnn", "gru", "lstm"],
                   help=f"(default: {MODEL_DEFAULTS['cell']})")
    g.add_argument("--nonlinearity", choices=["tanh", "relu"],
                   help=f"rnn only (default: {MODEL_DEFAULTS['nonlinearity']})")
    g.add_argument("--hidden-size", type=_number(int, 1),
                   help=f"units per layer (default: {MODEL_DEFAULTS['hidden_size']})")
    g.add_argument("--layers", type=_number(int, 1), dest="num_layers",
                   help=f"(default: {MODEL_DEFAULTS['num_layers']})")
    g.add_argument("--embedding-dim", type=_number(int, 1),
                   help="size of a trained embedding (default: one-hot input)")
    rate = _number(float, 0, 1, hi_open=True)
    g.add_argument("--dropout", type=rate,
                   help=f"between layers (default: {MODEL_DEFAULTS['dropout']})")
    g.add_argument("--input-dropout", type=rate,
                   help="on the embedded characters (needs --embedding-dim; default: 0)")
    g.add_argument("--output-dropout", type=rate,
                   help="on the top layer's output, before the decoder (default: 0)")
    g.add_argument("--weight-drop", type=rate,
                   help="DropConnect on the recurrent weights, a new mask every step "
                        "(default: 0)")
    g.add_argument("--embedding-dropout", type=rate,
                   help="drop whole characters' embedding rows (needs --embedding-dim; "
                        "default: 0)")
    g.add_argument("--locked-dropout", action="store_const", const=True,
                   help="dropout, input and output dropout draw one mask per sequence, "
                        "shared by its time steps")
    g.add_argument("--dtype", choices=["float32", "float64"],
                   help=f"(default: {MODEL_DEFAULTS['dtype']})")
    g = p.add_argument_group("training")
    g.add_argument("--recipe", default="auto",
                   choices=["auto", "none"] + [r.name for r in RECIPES],
                   help="a row of the recipe table (" + ", ".join(r.name for r in RECIPES)
                        + ") that sets model, batch, optimizer, schedule and dropout; "
                        "auto: the row for --time when --time is the only limit; none: "
                        "off. Options you give override it")
    g.add_argument("--batch-size", type=_number(int, 1),
                   help=f"parallel streams (default: {TRAIN_DEFAULTS['batch_size']})")
    g.add_argument("--seq-length", type=_number(int, 1),
                   help=f"characters per chunk of BPTT (default: "
                        f"{TRAIN_DEFAULTS['seq_length']})")
    g.add_argument("--optimizer", choices=sorted(DEFAULT_LR),
                   help="torch.optim's update rules and defaults (default: "
                        f"{TRAIN_DEFAULTS['optimizer']})")
    g.add_argument("--lr", type=_number(float, 0, lo_open=True),
                   help="learning rate (default: 2e-3 for adam, adamw and rmsprop, "
                        "0.02 for adagrad, 0.1 for sgd)")
    g.add_argument("--clip", type=_number(float, 0), default=5.0,
                   help="clip each gradient element to [-C, C] (0: off)")
    g.add_argument("--clip-norm", type=_number(float, 0, lo_open=True),
                   help="clip the global gradient norm (default: off)")
    g.add_argument("--weight-decay", type=_number(float, 0),
                   help="adamw: decoupled weight decay; the others: an L2 term in the "
                        "gradient, as torch.optim (default: 0)")
    g.add_argument("--schedule", choices=["constant", "step", "cosine", "plateau"],
                   help="learning-rate schedule; cosine runs to --steps, or without it "
                        "to the --time deadline (default: constant)")
    g.add_argument("--lr-decay", type=_number(float, 0, 1, lo_open=True), default=0.97,
                   help="step: factor per epoch; plateau: factor per plateau")
    g.add_argument("--lr-decay-after", type=_number(float, 0), default=10,
                   help="step: first epoch to decay after")
    g.add_argument("--warmup", type=_number(int, 0),
                   help="cosine: warm-up steps (default: 0)")
    g.add_argument("--val-fraction", type=_number(float, 0, 1, hi_open=True), default=0.1,
                   help="the text's tail held out for validation")
    g.add_argument("--eval-every", type=_number(int, 1),
                   help="validate every N steps, at each epoch end and at the end (default: "
                        f"{EVAL_EVERY}; with --time as the only limit: {EVALS_BY_TIME} times "
                        "evenly spread over the time instead)")
    g.add_argument("--checkpoint-every", type=_number(int, 1), default=500,
                   help="steps between writes of latest.npz")
    g.add_argument("--seed", type=_number(int, 0), default=0,
                   help="seeds the weights, dropout and the final sample")
    g.add_argument("--threads", type=_number(int, 1, 1024),
                   help="kernel threads (default: all cores; in a distributed run, "
                        "the cores shared out among the ranks on each machine)")
    g.add_argument("--distributed", action="store_true",
                   help="train data-parallel over the processes of an MPI job: "
                        "mpiexec -n N pycharrnn train ... (automatic when an MPI launcher "
                        "starts more than one process); --batch-size must be a multiple "
                        "of N. Needs pip install \"pycharrnn[mpi]\"")
    g = p.add_argument_group("output")
    g.add_argument("--log-every", type=_number(int, 1), default=50,
                   help="steps between progress lines (without tqdm, or with --no-bar)")
    g.add_argument("--sample-every", type=_number(int, 0), default=0,
                   help="print a sample every N steps (0: only at the end)")
    g.add_argument("--sample-length", type=_number(int, 0), default=400,
                   help="characters of each sample (0: no samples)")
    g.add_argument("--sample-temperature", type=_number(float, 0), default=SAMPLE_TEMPERATURE,
                   help="temperature of the samples printed")
    g.add_argument("--no-bar", action="store_true", help="progress lines instead of a bar")
    g.add_argument("--quiet", action="store_true", help="no progress output")


def _add_sample(sub) -> None:
    p = sub.add_parser("sample", help="generate text from a checkpoint or run directory",
                       formatter_class=_Help)
    p.add_argument("checkpoint", help="a checkpoint file or a run directory (its latest.npz)")
    p.add_argument("--length", type=_number(int, 0), default=500,
                   help="characters to generate")
    p.add_argument("--seed", type=_number(int, 0), help="random seed (default: a random one)")
    p.add_argument("--temperature", type=_number(float, 0), default=SAMPLE_TEMPERATURE,
                   help="below 1: safer, more repetitive text; above 1: wilder; 0: argmax")
    p.add_argument("--argmax", action="store_true",
                   help="always the most likely character (temperature 0)")
    p.add_argument("--top-k", type=_number(int, 1),
                   help="sample from the K most likely (default: all)")
    p.add_argument("--top-p", type=_number(float, 0, 1, lo_open=True),
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
    p.add_argument("--num-samples", type=_number(int, 1), default=1,
                   help="samples drawn side by side (one batch)")
    p.add_argument("--no-stream", action="store_true",
                   help="print when done instead of character by character")
    p.add_argument("--beam", type=_number(int, 1), metavar="K",
                   help="the most likely text instead of a random one: beam search over K "
                        "hypotheses (1: greedy); its log-probability goes to stderr")
    p.add_argument("--length-penalty", type=_number(float, 0), default=0.0, metavar="A",
                   help="with --beam and --stop: score a finished text by log-probability / "
                        "length**A (above 0 favours longer texts)")


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="the loss of a model on its run's validation text or on "
                                    "any text", formatter_class=_Help,
                       description="The mean cross-entropy of predicting each character "
                                   "from all before it, read as one pass with the state "
                                   "carried (as the validation loss during training), in "
                                   "nats and bits per character.")
    p.add_argument("checkpoint", help="a checkpoint file, or a run directory (its latest.npz)")
    p.add_argument("text", nargs="?",
                   help="a UTF-8 text file (default: the run's validation text, the tail "
                        "of its data that training held out)")
    p.add_argument("--drop-unknown", action="store_true",
                   help="leave out characters of TEXT that are not in the vocabulary "
                        "(default: an error naming the first)")
    p.add_argument("--batch-size", type=_number(int, 1),
                   help="streams read side by side (default: the run's batch size, else 32)")
    p.add_argument("--seq-length", type=_number(int, 1),
                   help="characters per chunk (default: the run's, else 64)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="the quick benchmark: pycharrnn vs PyTorch vs NumPy",
                       formatter_class=_Help)
    p.add_argument("--threads", type=_number(int, 1, 1024),
                   help="kernel threads (default: all cores)")
    p.add_argument("--json", help="also write the results to this file")


def _add_plot(sub) -> None:
    p = sub.add_parser("plot", help="draw a run directory's training curves (PNG)",
                       formatter_class=_Help)
    p.add_argument("run_dir", help="a run directory (its metrics.jsonl)")
    p.add_argument("--out", help="PNG file (default: RUN_DIR/curves.png)")


def _add_report(sub) -> None:
    p = sub.add_parser("report", formatter_class=_Help,
                       help="an HTML report on a run: curves, samples, units, gradient flow",
                       description="Write one self-contained HTML file (no server, no "
                                   "network) on a run, or on several side by side: loss "
                                   "curves in bits/char, samples at several temperatures, a "
                                   "text coloured by any unit's activation with the model's "
                                   "top-5 next characters under the pointer and the units "
                                   "that follow quotes, line position, ..., and the "
                                   "gradient flow beside a vanilla RNN's.")
    p.add_argument("run", nargs="?", help="a run directory or training checkpoint")
    p.add_argument("--compare", nargs="+", metavar="RUN",
                   help="more runs, side by side (pycharrnn report --compare RUN_A RUN_B)")
    p.add_argument("--out", required=True, help="the HTML file to write")
    p.add_argument("--text", help="a UTF-8 text file for the unit view (default: the end "
                                  "of each run's training text)")
    p.add_argument("--temperatures", type=_number(float, 0, lo_open=True), nargs="+",
                   default=[0.5, 0.8, 1.0], help="of the samples")
    p.add_argument("--sample-length", type=_number(int, 1), default=300)
    p.add_argument("--trace-chars", type=_number(int, 2), default=1500,
                   help="characters of the text in the unit view")
    p.add_argument("--seed", type=_number(int, 0), default=0, help="of the samples")


def _report(args) -> int:
    from .report import write_report

    runs = ([args.run] if args.run else []) + (args.compare or [])
    if not runs:
        print("error: give a RUN_DIR, or --compare RUN_A RUN_B", file=sys.stderr)
        return 2
    text = None
    if args.text is not None:
        from .files import read_text

        text = read_text(args.text)
    out = write_report(runs, args.out, text, temperatures=args.temperatures,
                       sample_length=args.sample_length, trace_chars=args.trace_chars,
                       seed=args.seed)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); open it in a browser")
    return 0


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="build information, or a checkpoint's configuration",
                       formatter_class=_Help)
    p.add_argument("checkpoint", nargs="?", help="a checkpoint file or a run directory")


def _load_text(data: Optional[str], corpus: Optional[str]) -> str:
    if corpus is not None:
        from .corpus import load_corpus

        return load_corpus(corpus)
    from .files import read_text

    return read_text(data)


def _apply_recipe(args, log):
    """Fill the options the user left unset from the recipe table (see
    pycharrnn.recipes), then from the plain defaults; print what was chosen.
    Returns the recipe, or None."""
    from . import recipes

    recipe = None
    if args.recipe not in ("auto", "none"):
        recipe = recipes.by_name(args.recipe)
    elif args.recipe == "auto" and args.seconds is not None and args.steps is None \
            and args.epochs is None:
        recipe = recipes.for_budget(args.seconds)
    if recipe is not None:
        opts = recipe.options()
        if args.steps is not None or args.seconds is not None:
            opts["schedule"] = "cosine"  # to --steps, or else to the --time deadline
        yours = [k for k, v in opts.items() if getattr(args, k) is not None and
                 getattr(args, k) != v]
        for k, v in opts.items():
            if getattr(args, k) is None:
                setattr(args, k, v)
                if k == "warmup" and args.steps is not None and v > args.steps // 10:
                    args.warmup = args.steps // 10  # a tenth of a short run at most
        how = f"for --time {args.seconds:g}" if args.recipe == "auto" else "--recipe"
        until = f"step {args.steps}" if args.steps is not None else "the deadline"
        log(f"recipe {recipe.name} ({how}): {recipe.describe(until)}"
            + (f"; yours: {', '.join('--' + k.replace('_', '-') for k in yours)}"
               if yours else ""))
    for k, v in TRAIN_DEFAULTS.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return recipe


def _eval_cadence(args) -> dict:
    """Trainer options for when to validate (besides epoch ends and the end)."""
    if args.eval_every is None and args.seconds is not None and args.steps is None \
            and args.epochs is None:
        return {"eval_every": None, "eval_every_seconds": args.seconds / EVALS_BY_TIME}
    return {"eval_every": args.eval_every or EVAL_EVERY}


def _schedule(args, lr: float, total: Optional[int]):
    from . import schedule as sch

    if args.schedule == "step":
        return sch.StepDecay(lr, gamma=args.lr_decay, every=1, start=args.lr_decay_after)
    if args.schedule == "cosine":
        if total is not None:
            return sch.CosineWarmup(lr, total_steps=total, warmup_steps=args.warmup)
        if args.seconds is None:
            raise ValueError("--schedule cosine needs --steps or --time")
        return sch.CosineToDeadline(lr, seconds=args.seconds, warmup_steps=args.warmup)
    if args.schedule == "plateau":
        return sch.ReduceOnPlateau(lr, factor=args.lr_decay if args.lr_decay < 1 else 0.5)
    return None


class _Interrupted(BaseException):
    """A second Ctrl-C or SIGTERM (or one before training started): abandon now."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


#: The signals whose handler raised :class:`_Interrupted` in this process; see
#: :func:`entry`.
_SIGNALLED: List[int] = []


def _raise_interrupt(signum: int) -> None:
    """From a signal handler: abandon whatever is under way. The exception may
    surface anywhere, even inside an extension module's import (which turns it
    into an ImportError) or a class body (a RuntimeError); ``_SIGNALLED``
    remembers it whatever becomes of it."""
    _SIGNALLED.append(int(signum))
    raise _Interrupted(signum)


def _interrupted_by(e: BaseException) -> Optional[int]:
    """The signal of the interruption (:class:`_Interrupted`; SIGINT for a
    KeyboardInterrupt) that ``e`` is or was raised from or during, if any: a
    signal that arrived inside an import, say, reaches the caller as
    ``ImportError("initialization failed")`` whose cause is the interruption."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, _Interrupted):
            return e.signum
        if isinstance(e, KeyboardInterrupt):
            return int(signal.SIGINT)
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def _exit_code(signum: int) -> int:
    return 128 + int(signum)  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class _StopOnSignals:
    """While active, the first SIGINT or SIGTERM asks the trainer to stop after
    its step (the run then validates and saves latest.npz); a second one
    raises :class:`_Interrupted` at once, wherever the run is (a checkpoint
    being written is then abandoned: its temporary file is removed and the
    previous checkpoint stays)."""

    def __init__(self, trainer) -> None:
        self.trainer, self.signum = trainer, None

    def _handler(self, signum, frame) -> None:
        if self.signum is not None:
            _raise_interrupt(signum)
        self.signum = signum
        self.trainer.request_stop()
        if self.trainer.is_main:  # os.write, not print: it may interrupt a print
            os.write(2, f"\n{signal.Signals(signum).name}: stopping after this step to "
                        "validate and save (again to abandon)\n".encode())

    def __enter__(self) -> "_StopOnSignals":
        if _SIGNALLED:  # one came during the start, and something swallowed its exception
            raise _Interrupted(_SIGNALLED[-1])
        # A signal the process was told to ignore (nohup, a background job) stays ignored.
        self._old = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)
                     if signal.getsignal(s) is not signal.SIG_IGN}
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def _train(args) -> int:
    if args.steps is None and args.seconds is None and args.epochs is None:
        print("error: give --steps N, --epochs E and/or --time SECONDS", file=sys.stderr)
        return 2
    from .distributed import Group, launched_size

    if not args.distributed and launched_size() == 1:
        return _train_in(args, None)
    group = Group()
    try:
        return _train_in(args, group)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - the other ranks would wait for this one
        signum = _interrupted_by(e)
        if signum is not None:
            what, code = "interrupted", _exit_code(signum)
        else:
            what, code = f"error: {_flags(str(e)) or type(e).__name__}", 1
        print(f"pycharrnn: rank {group.rank} of {group.size}: {what}; stopping every rank",
              file=sys.stderr, flush=True)
        group.abort(code)
        raise  # not reached: abort ends the process


def _train_in(args, group) -> int:
    """``pycharrnn train``, alone (group None) or as one rank of an MPI job:
    checks of the run directory are rank 0's, shared; only rank 0 writes
    and prints."""
    import pycharrnn as pc
    from .rundir import LATEST, read_run_info, write_run_info
    from .train import check_compatible

    main = group is None or group.is_main

    def on_main(fn):
        return fn() if group is None else group.on_main(fn)

    threads = args.threads
    if threads is None and group is not None:  # the ranks on a machine share its cores
        threads = max(1, pc.get_num_threads() // group.local_size())
    if threads is not None:
        pc.set_num_threads(threads)
    out = Path(args.out)
    model_args = {k: getattr(args, k) for k in MODEL_DEFAULTS}
    log = print if not args.quiet and main else (lambda *a, **k: None)
    if not main:
        args = argparse.Namespace(**{**vars(args), "quiet": True})
    if args.resume:
        if not on_main(lambda: (out / LATEST).is_file()):
            if main:
                print(f"error: {out / LATEST} does not exist: nothing to resume",
                      file=sys.stderr)
            return 2
        run = on_main(lambda: read_run_info(out))
        data, corpus = args.data, args.corpus
        if data is None and corpus is None:
            data, corpus = run.get("data"), run.get("corpus")
        text = _load_text(data, corpus)
        fixed = {k: getattr(args, k) for k in ("batch_size", "seq_length")
                 if getattr(args, k) is not None}
        # also cleans up temporaries
        trainer = pc.Trainer.resume(out, text, distributed=group, **fixed)
        model = trainer.model
        check_compatible(model.config(), model_args)
        log(f"resuming {out} at step {trainer.step_count}")
    else:
        if (args.data is None) == (args.corpus is None):
            print("error: give a DATA_FILE or --corpus NAME (one of them)", file=sys.stderr)
            return 2
        if on_main(lambda: (out / LATEST).exists()):
            if main:
                print(f"error: {out} already holds a run; continue it with --resume or "
                      "choose another --out", file=sys.stderr)
            return 2
        text = _load_text(args.data, args.corpus)
        recipe = _apply_recipe(args, log)
        cfg = {k: (v if v is not None else MODEL_DEFAULTS[k])
               for k, v in ((k, getattr(args, k)) for k in MODEL_DEFAULTS)}
        model = pc.CharRNN(pc.Vocab.from_text(text), seed=args.seed, **cfg)
        lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]
        kw = dict(lr=lr, clip_value=args.clip or None, clip_norm=args.clip_norm,
                  weight_decay=args.weight_decay)
        if args.optimizer == "adagrad":
            kw.update(eps=1e-8, eps_inside_sqrt=True)
        opt = pc.optim.OPTIMIZERS[args.optimizer](model, **kw)
        trainer = pc.Trainer(model, text, batch_size=args.batch_size,
                             seq_length=args.seq_length, optimizer=opt,
                             schedule=_schedule(args, lr, args.steps),
                             val_fraction=args.val_fraction, **_eval_cadence(args),
                             checkpoint_dir=out, checkpoint_every=args.checkpoint_every,
                             distributed=group)
        if main:
            out.mkdir(parents=True, exist_ok=True)
            write_run_info(out, {"data": str(Path(args.data).resolve()) if args.data
                                 else None, "corpus": args.corpus, "args": vars(args),
                                 "recipe": recipe.name if recipe else None})
    workers = count(pc.get_num_threads(), 'thread')
    if group is not None:
        workers = f"{group.size} ranks x {workers} ({trainer.batches.rows} of the " \
                  f"{trainer.batches.batch_size} streams each)"
    log(f"{model}\n{count(len(text), 'character')} ({trainer.batches.ids.size:,} for "
        f"training, {trainer.val_ids.size:,} for validation), "
        f"{count(model.vocab_size, 'symbol')}, {trainer.optimizer!r}, {workers} -> {out}")
    until = args.steps
    if args.epochs is not None:
        by_epochs = int(math.ceil(args.epochs * trainer.batches.chunks_per_epoch))
        until = by_epochs if until is None else min(until, by_epochs)
    from .metrics import MetricsLog

    with MetricsLog(out, resume_step=trainer.step_count) if main else \
            contextlib.nullcontext() as mlog:
        if mlog is not None:
            trainer.callbacks.append(mlog)
        progress = _Progress(trainer, until, args)
        trainer.callbacks.append(progress)
        try:
            with _StopOnSignals(trainer) as signals:
                trainer.run(until_step=until, seconds=args.seconds)
                progress.close()
                if main:
                    _plot_quietly(trainer, log)
        finally:
            progress.close()
    if not main:
        return _exit_code(signals.signum) if signals.signum is not None else 0
    if trainer.history and trainer.step_count > progress.start_step:
        recent = trainer.history[-min(50, len(trainer.history)):]
        train_loss = sum(h["loss"] for h in recent) / len(recent)
        msg = (f"done: step {trainer.step_count}, {progress.rate():,.0f} chars/s, "
               f"train loss {train_loss:.4f} (mean of the last {count(len(recent), 'step')})")
        if trainer.val_history:
            v = trainer.val_history[-1]["val_loss"]
            msg += f", validation loss {v:.4f} ({v / math.log(2):.3f} bits/char)"
        log(msg)
    if signals.signum is not None:
        if (out / LATEST).is_file():
            again = [f"--{k} {getattr(args, a):g}" for k, a in
                     (("steps", "steps"), ("epochs", "epochs")) if getattr(args, a) is not None]
            if args.seconds is not None:  # the time this session had left
                again.append(f"--time {max(1, math.ceil(args.seconds - progress.elapsed()))}")
            print(f"saved step {trainer.step_count} to {out}; continue with: pycharrnn train "
                  f"--out {shlex.quote(str(out))} --resume {' '.join(again)}".rstrip(),
                  file=sys.stderr)
        else:
            print("stopped before the first step: nothing saved", file=sys.stderr)
        return _exit_code(signals.signum)
    if args.sample_length > 0:
        print("--- sample ---")
        print(model.sample(args.sample_length, temperature=args.sample_temperature,
                           seed=args.seed))
    return 0


def _clock(seconds: float) -> str:
    """A duration as m:ss or h:mm:ss."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class _Progress:
    """Trainer callback: a tqdm bar (when tqdm is installed and output is not
    --no-bar/--quiet) or progress lines, validation lines and periodic samples.
    With --time the bar measures time (elapsed of total, and the time left);
    else steps."""

    def __init__(self, trainer, until: Optional[int], args) -> None:
        self.args, self.t0, self.chars = args, time.perf_counter(), 0
        self.start_step = trainer.step_count
        self.until, self.seconds = until, args.seconds
        self.bar = None
        if not args.quiet and not args.no_bar:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None and self.seconds is not None:
                fmt = ("{desc}: {percentage:3.0f}%|{bar}| {elapsed} of "
                       + tqdm.format_interval(self.seconds) + ", ETA {remaining}{postfix}")
                self.bar = tqdm(total=self.seconds, desc="training", bar_format=fmt,
                                dynamic_ncols=True)
            elif tqdm is not None:
                total = None if until is None else max(0, until - trainer.step_count)
                self.bar = tqdm(total=total, unit="step", dynamic_ncols=True,
                                desc="training", initial=0)
        self.val = None
        self.plotted = -math.inf
        self.plot_due = False

    #: Step events may come after several steps ran (Trainer's steps_per_call) ...
    batched_steps = True

    def due(self, step: int) -> bool:
        """... except at a step that prints a sample of the model as it is then."""
        every = self.args.sample_every
        return bool(every and step % every == 0 and self.args.sample_length > 0
                    and not self.args.quiet)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def rate(self) -> float:
        return self.chars / max(self.elapsed(), 1e-9)

    def eta(self, step: int) -> Optional[float]:
        """Seconds left: to the --time deadline or the last step, whichever is sooner."""
        el, left = self.elapsed(), []
        if self.seconds is not None:
            left.append(self.seconds - el)
        if self.until is not None and step > self.start_step:
            left.append((self.until - step) * el / (step - self.start_step))
        return max(0.0, min(left)) if left else None

    def write(self, msg: str) -> None:
        if self.args.quiet:
            return
        if self.bar is not None:
            self.bar.write(msg, file=sys.stdout)
        else:
            print(msg, flush=True)

    def __call__(self, tr, event, m) -> None:
        if self.plot_due:  # after the validation's step is saved (its "checkpoint" event)
            self.plot_due = False
            _plot_quietly(tr, None)
            self.plotted = time.perf_counter()
        if event == "eval":
            self.val = m["val_loss"]
            self.write(f"step {m['step']:6d}  validation loss {m['val_loss']:.4f} "
                       f"({m['val_bpc']:.3f} bits/char)")
            # curves.png follows the validations, redrawn at most every
            # PLOT_EVERY seconds (a drawing takes a fraction of a second, the
            # first in a process more to import matplotlib), at the next event:
            # latest.npz due at this step is written first.
            self.plot_due = tr.is_main and time.perf_counter() - self.plotted >= PLOT_EVERY
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
            if self.seconds is not None:
                post = {"step": str(s), **post}
                self.bar.set_postfix(post, refresh=False)
                self.bar.update(min(self.elapsed(), self.seconds) - self.bar.n)
            else:
                self.bar.set_postfix(post, refresh=False)
                self.bar.update(1)
        elif not self.args.quiet and (s % self.args.log_every == 0 or s == self.start_step + 1):
            eta = self.eta(s)
            self.write(f"step {s:6d}  loss {m['loss']:.4f} ({m['bpc']:.3f} bits/char)  "
                       f"ema {m['ema_loss']:.4f}  lr {m['lr']:.3g}  epoch {m['epoch']:.3f}  "
                       f"{self.rate():,.0f} chars/s  {_clock(self.elapsed())}"
                       + (f"  ETA {_clock(eta)}" if eta is not None else ""))
        every = self.args.sample_every
        if every and s % every == 0 and self.args.sample_length > 0 and not self.args.quiet:
            text = tr.model.sample(self.args.sample_length,
                                   temperature=self.args.sample_temperature, seed=s)
            self.write(f"--- sample at step {s} ---\n{text}\n---")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


_PLOT_HINTED = []
_PLOT_FAILED = []


def _plot_quietly(trainer, log) -> None:
    """Redraw RUN_DIR/curves.png from the trainer's histories (which a resumed
    run restores in full) when matplotlib is installed; a hint once if not."""
    if trainer.checkpoint_dir is None or not trainer.history:
        return
    try:
        from .plot import plot_curves
        from .rundir import CURVES_FILE

        plot_curves([(trainer.model.cell, trainer.history, trainer.val_history)],
                    trainer.checkpoint_dir / CURVES_FILE)
    except Exception as e:  # a picture that cannot be drawn must not end the run
        signum = _interrupted_by(e)  # but a signal must: it may come as any exception here
        if signum is not None:
            raise _Interrupted(signum) from e
        if isinstance(e, ImportError):
            if log is not None and not _PLOT_HINTED:
                _PLOT_HINTED.append(True)
                log('(curves.png needs matplotlib: pip install "pycharrnn[plot]")')
            return
        if not _PLOT_FAILED:
            _PLOT_FAILED.append(True)
            print(f"pycharrnn: warning: curves.png not drawn: {type(e).__name__}: {e}",
                  file=sys.stderr)


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
    if model.vocab is None:
        raise ValueError(f"{args.checkpoint}: the model has no vocabulary (it was built from "
                         "a vocabulary size), so it cannot write text")
    unknown = "drop" if args.drop_unknown else "error"
    stop = _unescape(args.stop)
    for flag, text in (("--prime", args.prime), ("--warmup", args.warmup), ("--stop", stop)):
        if text:
            try:
                model.vocab.encode(text, unknown="error" if flag == "--stop" else unknown)
            except ValueError as e:
                raise ValueError(f"{flag}: {e}") from None
        elif flag == "--stop" and text is not None:
            raise ValueError("--stop must not be empty")
    kw = dict(prime=args.prime, temperature=0.0 if args.argmax else args.temperature,
              top_k=args.top_k, top_p=args.top_p, seed=args.seed, warmup=args.warmup,
              unknown=unknown, stop=stop)
    if args.beam is not None:
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
    elif args.length_penalty:
        raise ValueError("--length-penalty applies to --beam only")
    if args.num_samples == 1 and not args.no_stream:
        chars = model.generate(args.length, **kw)  # checks every argument first
        sys.stdout.write(args.prime)
        for ch in chars:
            sys.stdout.write(ch)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return 0
    out = model.sample(args.length, num_samples=args.num_samples, **kw)
    for i, text in enumerate([out] if isinstance(out, str) else out):
        if args.num_samples > 1:
            sys.stdout.write(f"--- sample {i + 1} ---\n")
        sys.stdout.write(args.prime + text + "\n")
    return 0


def _eval(args) -> int:
    from .rundir import RUN_FILE, read_checkpoint, read_run_info
    from .train import evaluate, fingerprint, split_validation
    from .vocab import compact_dtype

    model, header, path = read_checkpoint(args.checkpoint)
    if model.vocab is None:
        raise ValueError(f"{path}: the model has no vocabulary, so it cannot read text")
    t = (header.get("extra") or {}).get("trainer") or {}
    unknown = "drop" if args.drop_unknown else "error"
    if args.text is not None:
        source = args.text
        text = _load_text(args.text, None)
        try:
            ids = model.vocab.encode(text, compact_dtype(model.vocab_size), unknown=unknown)
        except ValueError as e:
            raise ValueError(f"{args.text}: {e} (--drop-unknown leaves such characters out)"
                             ) from None
        what = str(args.text)
    else:
        if not t:
            raise ValueError(f"{path} holds a model but no training run, so no validation "
                             "text: give a TEXT_FILE")
        try:
            run = read_run_info(path.parent)
        except FileNotFoundError:
            raise ValueError(f"no {RUN_FILE} beside {path} names the run's data: give a "
                             "TEXT_FILE") from None
        source = run.get("data") or f"--corpus {run.get('corpus')}"
        try:
            ids = model.vocab.encode(_load_text(run.get("data"), run.get("corpus")),
                                     compact_dtype(model.vocab_size))
        except ValueError:  # a character the model never saw
            ids = None
        if ids is None or fingerprint(ids) != t["data"]:
            raise ValueError(f"the run's data ({source}) is no longer the text it was "
                             "trained on (its length or hash differs): give a TEXT_FILE")
        _, ids = split_validation(ids, t["val_fraction"])
        if ids.size < 2:
            raise ValueError("the run held out no validation text (--val-fraction 0): give a "
                             "TEXT_FILE")
        what = f"the validation text (the last {t['val_fraction']:.0%}) of {source}"
    loss = evaluate(model, ids, args.batch_size or t.get("batch_size", TRAIN_DEFAULTS["batch_size"]),
                    args.seq_length or t.get("seq_length", TRAIN_DEFAULTS["seq_length"]))
    result = {"checkpoint": str(path), "step": t.get("step"), "text": str(source),
              "characters": int(ids.size), "predicted": int(ids.size - 1),
              "loss": loss, "bits_per_char": loss / math.log(2)}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        step = f" (step {t['step']})" if t else ""
        print(f"{loss:.4f} nats/char ({loss / math.log(2):.4f} bits/char): {path}{step} on "
              f"{what}, {count(ids.size - 1, 'character')} predicted")
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
    from .rundir import read_checkpoint

    if args.checkpoint is None:
        info = {"version": pc.__version__, **pc.build_info()}
    else:
        model, header, path = read_checkpoint(args.checkpoint)
        info = {"file": str(path), **model.config(), "num_params": model.num_params}
        t = (header.get("extra") or {}).get("trainer")
        if t:
            info.update(step=t["step"], epoch=t["epoch"], best_val_loss=t["best_val_loss"],
                        ema_loss=t.get("ema_loss"), batch_size=t["batch_size"],
                        seq_length=t["seq_length"],
                        optimizer=header["extra"]["optimizer"]["type"])
    print(json.dumps(info, indent=2))
    return 0


def _flags(message: str) -> str:
    """A library error message with its parameter names as the CLI's flags."""
    return re.sub(r"\b(" + "|".join(_FLAGS) + r")\b", lambda m: _FLAGS[m.group(1)], message)


def _terminate(signum, frame) -> None:
    _raise_interrupt(signum)


def main(argv: Optional[List[str]] = None) -> int:
    from . import __version__
    from .errors import PyCharRNNError

    parser = argparse.ArgumentParser(prog="pycharrnn",
                                     description="Character-level RNN language models.")
    parser.add_argument("--version", action="version", version=f"pycharrnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_sample(sub)
    _add_eval(sub)
    _add_bench(sub)
    _add_info(sub)
    _add_plot(sub)
    _add_report(sub)
    args = parser.parse_args(argv)
    commands = {"train": _train, "sample": _sample, "eval": _eval, "bench": _bench,
                "info": _info, "plot": _plot, "report": _report}
    _SIGNALLED.clear()
    # SIGTERM as Ctrl-C: a clean exit, 143. Ctrl-C's own KeyboardInterrupt is
    # replaced too, so that entry() knows of it however it surfaces.
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s, h in old.items():
        if h is not signal.SIG_IGN and (s != signal.SIGINT or h is signal.default_int_handler):
            signal.signal(s, _terminate)
    try:
        code = commands[args.command](args)
        if _SIGNALLED and not code:  # a signal whose exception something swallowed
            raise _Interrupted(_SIGNALLED[-1])
        return code
    except BaseException as e:  # noqa: BLE001 - sorted here
        signum = None if isinstance(e, SystemExit) else _interrupted_by(e)
        if signum is None:
            if not isinstance(e, (PyCharRNNError, ValueError, TypeError, OSError,
                                  ImportError)):
                raise
            print(f"pycharrnn: error: {_flags(str(e))}", file=sys.stderr)
            return 1
        print(f"\ninterrupted ({signal.Signals(signum).name}); files already written are whole "
              "(a checkpoint being written was abandoned, the previous one kept)",
              file=sys.stderr)
        return _exit_code(signum)
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def entry() -> None:
    """The ``pycharrnn`` command (and ``python -m pycharrnn``): :func:`main`,
    then exit with its status.

    After a signal that abandoned work (a second Ctrl-C or SIGTERM, or one
    before training started), the process ends without the interpreter's
    teardown: the exception may have cut an extension module's import short
    (matplotlib's ft2font, drawing curves.png), and tearing such a module
    down can abort the process ("Fatal Python error: PyThreadState_Get").
    Every file pycharrnn writes is closed by then; stdout and stderr are
    flushed first."""
    code = main()
    if not _SIGNALLED:
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed pipe: nothing more to say
            pass
    os._exit(code)
