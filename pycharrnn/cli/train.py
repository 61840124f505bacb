"""``pycharrnn train``: its flags are fields of :class:`pycharrnn.config.ModelConfig`
and :class:`pycharrnn.config.TrainConfig` (each flag's ``dest`` is the field),
and the command is :func:`pycharrnn.config.resolve` then
:meth:`pycharrnn.Trainer.from_config` (or :meth:`pycharrnn.Trainer.resume`)
and :meth:`pycharrnn.Trainer.run`."""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Dict

from .. import data as text_data
from ..config import EVALS_BY_TIME, MODEL_KEYS, TRAIN_KEYS, resolve
from ..optim import DEFAULT_LR, OPTIMIZERS
from ..recipes import RECIPES
from ..schedule import NAMES as SCHEDULES
from .args import (DEFAULTS, Help, config_option, describe, fail, flag_of, flags_named,
                   number, rate)

__all__ = ["add", "run"]


def _lr_help() -> str:
    by_rate: Dict[float, list] = {}
    for name, lr in DEFAULT_LR.items():
        by_rate.setdefault(lr, []).append(name)
    return ", ".join(f"{lr:g} for {' and '.join(names)}" for lr, names in by_rate.items())


def add(sub: Any) -> None:
    p = sub.add_parser("train", help="train a model on a text file or a built-in corpus",
                       formatter_class=Help,
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
    config_option(p, "--steps", "steps", "train until the run has made this many steps",
                  type=number(int, 1))
    config_option(p, "--epochs", "epochs", "train until the run has made this many passes "
                  "over the text", type=number(float, 0, lo_open=True))
    config_option(p, "--time", "seconds", "stop after this many seconds of this session "
                  "(with --steps/--epochs: whichever comes first)",
                  type=number(float, 0, lo_open=True))
    g = p.add_argument_group("model (with --resume: must match the checkpoint)")
    config_option(g, "--cell", "cell", "", choices=["rnn", "gru", "lstm"])
    config_option(g, "--nonlinearity", "nonlinearity", "rnn only", choices=["tanh", "relu"])
    config_option(g, "--hidden-size", "hidden_size", "units per layer", type=number(int, 1))
    config_option(g, "--layers", "num_layers", "", type=number(int, 1))
    config_option(g, "--embedding-dim", "embedding_dim", "size of a trained embedding",
                  "one-hot input", type=number(int, 1))
    config_option(g, "--dropout", "dropout", "between layers", type=rate)
    config_option(g, "--input-dropout", "input_dropout",
                  "on the embedded characters (needs --embedding-dim)", type=rate)
    config_option(g, "--output-dropout", "output_dropout",
                  "on the top layer's output, before the decoder", type=rate)
    config_option(g, "--weight-drop", "weight_drop",
                  "DropConnect on the recurrent weights, a new mask every step", type=rate)
    config_option(g, "--embedding-dropout", "embedding_dropout",
                  "drop whole characters' embedding rows (needs --embedding-dim)", type=rate)
    config_option(g, "--locked-dropout", "locked_dropout", "dropout, input and output "
                  "dropout draw one mask per sequence, shared by its time steps",
                  action="store_const", const=True)
    config_option(g, "--dtype", "dtype", "", choices=["float32", "float64"])
    _add_training(p)
    g = p.add_argument_group("output")
    config_option(g, "--log-every", "log_every",
                  "steps between progress lines (without tqdm, or with --no-bar)",
                  type=number(int, 1))
    config_option(g, "--sample-every", "sample_every",
                  "print a sample every N steps (0: only at the end)", type=number(int, 0))
    config_option(g, "--sample-length", "sample_length",
                  "characters of each sample (0: no samples)", type=number(int, 0))
    config_option(g, "--sample-temperature", "sample_temperature",
                  "temperature of the samples printed", type=number(float, 0))
    g.add_argument("--no-bar", action="store_true", help="progress lines instead of a bar")
    g.add_argument("--quiet", action="store_true", help="no progress output")


def _add_training(p: Any) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--recipe", default="auto",
                   choices=["auto", "none"] + [r.name for r in RECIPES],
                   help="a row of the recipe table (" + ", ".join(r.name for r in RECIPES)
                        + ") that sets model, batch, optimizer, schedule and dropout; "
                        "auto: the row for --time when --time is the only limit, its "
                        "dropout fitted to the epochs the time buys on this text at this "
                        "machine's measured speed; none: off. Options you give override it")
    config_option(g, "--batch-size", "batch_size", "parallel streams", type=number(int, 1))
    config_option(g, "--seq-length", "seq_length", "characters per chunk of BPTT",
                  type=number(int, 1))
    config_option(g, "--optimizer", "optimizer", "torch.optim's update rules and defaults",
                  choices=sorted(OPTIMIZERS))
    config_option(g, "--lr", "lr", "learning rate", _lr_help(),
                  type=number(float, 0, lo_open=True))
    config_option(g, "--clip", "clip_value", "clip each gradient element to [-C, C] (0: off)",
                  type=number(float, 0))
    config_option(g, "--clip-norm", "clip_norm", "clip the global gradient norm",
                  type=number(float, 0, lo_open=True))
    config_option(g, "--weight-decay", "weight_decay", "adamw: decoupled weight decay; the "
                  "others: an L2 term in the gradient, as torch.optim", type=number(float, 0))
    config_option(g, "--schedule", "schedule", "learning-rate schedule; cosine runs to "
                  "--steps, or without it to the --time deadline", choices=list(SCHEDULES))
    config_option(g, "--lr-decay", "lr_decay", "step: factor per epoch; plateau: factor per "
                  "plateau", type=number(float, 0, 1, lo_open=True))
    config_option(g, "--lr-decay-after", "lr_decay_after", "step: first epoch to decay after",
                  type=number(float, 0))
    config_option(g, "--warmup", "warmup", "cosine: warm-up steps", type=number(int, 0))
    config_option(g, "--val-fraction", "val_fraction", "the text's tail held out for "
                  "validation", type=number(float, 0, 1, hi_open=True))
    config_option(g, "--eval-every", "eval_every", "validate every N steps, at each epoch end "
                  "and at the end", f"{DEFAULTS['eval_every']}; with --time as the only limit: "
                  f"{EVALS_BY_TIME} times evenly spread over the time instead",
                  type=number(int, 1))
    config_option(g, "--checkpoint-every", "checkpoint_every",
                  "steps between writes of latest.npz", type=number(int, 1))
    config_option(g, "--seed", "seed", "seeds the weights, dropout and the final sample",
                  type=number(int, 0))
    config_option(g, "--threads", "threads", "kernel threads", "chosen while it runs, "
                  "by timing, up to the usable cores; in a distributed run, the cores "
                  "shared out among the ranks on each machine",
                  type=number(int, 1, 1024))
    g.add_argument("--distributed", action="store_true",
                   help="train data-parallel over the processes of an MPI job: "
                        "mpiexec -n N pycharrnn train ... (automatic when an MPI launcher "
                        "starts more than one process); --batch-size must be a multiple "
                        "of N. Needs pip install \"pycharrnn[mpi]\"")


def _parser() -> argparse.ArgumentParser:
    """This command's own parser (its flags name the library's parameters)."""
    sub = argparse.ArgumentParser(prog="pycharrnn").add_subparsers()
    add(sub)
    return sub.choices["train"]


#: Seconds a rank that failed waits before it ends the job (see run()).
ABORT_DELAY = 0.3

#: Config fields that have no flag: Python only (pycharrnn.config.TrainConfig).
PYTHON_ONLY = ("eval_every_seconds", "checkpoint_each_epoch", "ema_decay", "steps_per_call",
               "grad_norms_every")


def run(args: argparse.Namespace) -> int:
    """The command: alone, or as one rank of an MPI job (an error on any
    rank then stops every rank)."""
    given = {k: v for k, v in vars(args).items() if k in MODEL_KEYS or k in TRAIN_KEYS}
    if not {"steps", "epochs", "seconds"} & set(given):
        return fail("give --steps N, --epochs E and/or --time SECONDS")
    from ..distributed import Group, launched_size

    if not args.distributed and launched_size() == 1:
        return _train(args, given, None)
    group = Group()
    try:
        return _train(args, given, group)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - the other ranks would wait for this one
        from ..signals import exit_code, interrupted_by

        signum = interrupted_by(e)
        if signum is not None:
            what, code = "interrupted", exit_code(signum)
        else:
            what, code = f"error: {flags_named(describe(e), _parser())}", 1
        print(f"pycharrnn: rank {group.rank} of {group.size}: {what}; stopping every rank",
              file=sys.stderr, flush=True)
        # MPI_Abort tears the job down at once, and the launcher may not yet
        # have passed on what the ranks printed (mpich, 3 ranks that all hit
        # the same error: 1-3 of the 3 lines came through in 25 runs, none in
        # one CI run). A moment for it first.
        time.sleep(ABORT_DELAY)
        group.abort(code)
        raise  # not reached: abort ends the process


def _train(args: argparse.Namespace, given: Dict[str, Any], group: Any) -> int:
    """Build (or resume) the trainer the flags describe and run it; only rank
    0 of a distributed run checks the run directory, writes and prints."""
    import pycharrnn as pc
    from ..progress import Progress
    from ..rundir import LATEST, check_new_run
    from ..runs import check_compatible, measure_rate
    from ..signals import Interrupted, check_signalled, exit_code

    main = group is None or group.is_main
    on_main = (lambda fn: fn()) if group is None else group.on_main
    out = Path(args.out)
    progress = Progress(bar=not args.no_bar, quiet=args.quiet, **{
        k: given.get(k, DEFAULTS[k]) for k in ("log_every", "sample_every", "sample_length",
                                               "sample_temperature", "seed")})
    progress.option = lambda k, v, own=_parser(): f"{flag_of(k, own)} {v}"
    if args.resume:
        if not on_main(lambda: (out / LATEST).is_file()):
            if main:
                fail(f"{out / LATEST} does not exist: nothing to resume")
            return 2
        text = None
        if args.data is not None or args.corpus is not None:
            text = text_data.load_text(args.data, args.corpus)
        fixed = {k: given[k] for k in ("batch_size", "seq_length") if k in given}
        trainer = pc.Trainer.resume(out, text, distributed=group or False, progress=progress,
                                    threads=given.get("threads"), **fixed)
        check_compatible(trainer.model.config(), {k: given[k] for k in MODEL_KEYS if k in given})
        limits = {k: given.get(k) for k in ("steps", "epochs", "seconds")}
        trainer.limits = {"until_step": limits["steps"], "until_epoch": limits["epochs"],
                          "seconds": limits["seconds"]}
    else:
        if (args.data is None) == (args.corpus is None):
            return fail("give a DATA_FILE or --corpus NAME (one of them)")
        try:
            on_main(lambda: check_new_run(out))
        except pc.RunExistsError:
            if main:
                fail(f"{out} already holds a run; continue it with --resume or "
                     "choose another --out")
            return 2
        text = text_data.load_text(args.data, args.corpus)
        # The recipe's regularisation fits the text (by the epochs its budget
        # buys at this machine's measured speed) in a run of one process; the
        # ranks of a data-parallel run share the machines, so theirs is the row's.
        model_cfg, cfg, recipe = resolve(given, recipe=args.recipe,
                                         text=text if group is None else None,
                                         rate=measure_rate)
        own = _parser()
        notes = [recipe.announce(cfg, given, auto=args.recipe == "auto",
                                 naming=lambda k: flag_of(k, own))] if recipe else []
        trainer = pc.Trainer.from_config(
            text, model_cfg, cfg, run_dir=out, source=text_data.source_of(args.data, args.corpus),
            recipe=recipe, notes=notes, distributed=group or False, progress=progress)
    check_signalled()  # a signal during the start whose exception something swallowed
    try:
        trainer.run()
    except Interrupted as e:
        if not e.clean:
            raise
        if main:
            print(_stopped(trainer, out, args, given, progress), file=sys.stderr)
        return exit_code(e.signum)
    return 0


def _stopped(trainer: Any, out: Path, args: argparse.Namespace, given: Dict[str, Any],
             progress: Any) -> str:
    """What a run stopped by a signal says: the step saved and how to continue."""
    if not (out / "latest.npz").is_file():
        return "stopped before the first step: nothing saved"
    again = [f"--{k} {given[k]:g}" for k in ("steps", "epochs") if k in given]
    if "seconds" in given:  # the time this session had left
        again.append(f"--time {max(1, math.ceil(given['seconds'] - progress.elapsed()))}")
    return (f"saved step {trainer.step_count} to {out}; continue with: pycharrnn train "
            f"--out {shlex.quote(str(out))} --resume {' '.join(again)}".rstrip())
