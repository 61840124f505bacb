"""A run from its configs and back: the Trainer that ``pycharrnn train``
builds (:func:`from_config`), what its run.json says (:func:`run_info`),
and a run continued from its checkpoint (:func:`resume`). The Trainer's
classmethods of the same names call these."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import statistics
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np

from .checks import check_int, check_number
from .config import ModelConfig, TrainConfig
from .data import fingerprint, load_text, read_if_path, training_ids
from .distributed import strategy
from .errors import CheckpointError
from .memory import check_training
from .model import CharRNN
from .optim import create as create_optimizer, from_state_dict
from .progress import end_parts
from .rundir import (METRICS_FILE, RUN_FILE, TrainingState, check_new_run, load_training, remove_temporaries,
                     resolve, run_source, write_run_info)
from .schedule import create as create_schedule, from_config as schedule_from_config
from .vocab import Vocab
from .words import plural

__all__ = ["from_config", "resume", "attach", "run_info", "session", "training_state",
           "check_compatible", "measure_rate", "Rate", "FIXED", "FREE"]

#: Resume options: those fixed by the checkpoint, and those that may change.
FIXED = {"batch_size", "seq_length", "val_fraction"}
FREE = {"eval_every", "eval_every_seconds", "checkpoint_every", "checkpoint_each_epoch",
        "steps_per_call"}
#: The training options run.json records of a trainer built without a TrainConfig.
_TRAINER_KEYS = ("val_fraction", "eval_every", "eval_every_seconds", "checkpoint_every",
                 "checkpoint_each_epoch", "ema_decay", "steps_per_call", "grad_norms_every")


def target_step(trainer: Any, steps: Optional[int], until_step: Optional[int],
                until_epoch: Optional[float], seconds: Optional[float]):
    """(the step a run ends at, or inf; its seconds) for :meth:`Trainer.run`'s
    limits; none given: the trainer's :attr:`limits` (from its config)."""
    if steps is None and seconds is None and until_step is None and until_epoch is None:
        if not any(v is not None for v in trainer.limits.values()):
            raise ValueError("give steps, until_step, until_epoch, seconds, or a combination")
        until_step, until_epoch, seconds = (trainer.limits.get(k) for k in
                                            ("until_step", "until_epoch", "seconds"))
    target = math.inf
    if steps is not None:
        target = trainer.step_count + check_int("steps", steps, 0)
    if until_step is not None:
        target = min(target, check_int("until_step", until_step, 0))
    if until_epoch is not None:
        epochs = check_number("until_epoch", until_epoch, 0, lo_open=True)
        target = min(target, int(math.ceil(epochs * trainer.batches.chunks_per_epoch)))
    return target, seconds


def run_info(trainer: Any, config: Optional[TrainConfig] = None,
             recipe: Any = None) -> Dict[str, Any]:
    """What run.json records of a run: where its text comes from (a file or a
    corpus; None for a text given in memory), the recipe, the model's config,
    the training options, the optimizer and the schedule."""
    src = trainer.source or {"data": None, "corpus": None}
    train = asdict(config) if config is not None else \
        {k: getattr(trainer, k) for k in _TRAINER_KEYS}
    train.update(batch_size=trainer.batches.batch_size, seq_length=trainer.batches.seq_length)
    opt, sched = trainer.optimizer, trainer.schedule
    info = {**src, "recipe": getattr(recipe, "name", recipe), "model": trainer.model.config(),
            "train": train, "optimizer": {"type": type(opt).__name__, **opt.hparams()},
            "schedule": None if sched is None else sched.state_dict().get("config")}
    if getattr(recipe, "level", ""):  # fitted to the text: by what it measured
        info["recipe_fit"] = {k: getattr(recipe, k) for k in
                              ("level", "epochs", "rate", "exposure", "others", "cores")}
    return info


def from_config(cls, data: Any, model: Any, config: TrainConfig = TrainConfig(), *,
                run_dir: Any = None, source: Optional[Dict[str, Any]] = None,
                recipe: Any = None, notes: Optional[Sequence[str]] = None,
                distributed: Any = False, progress: Any = True, **options: Any):
    """A trainer (of class ``cls``) as ``pycharrnn train`` makes it: the model
    (a CharRNN, or a :class:`ModelConfig` to build one on the text's
    vocabulary with ``config.seed``), the optimizer and schedule that
    ``config`` names (:func:`pycharrnn.optim.create`,
    :func:`pycharrnn.schedule.create`), ``config.threads`` set (None: all
    cores, shared among the ranks of a machine), a
    :class:`pycharrnn.progress.Progress` of its output options (when
    ``progress`` is True), and :meth:`Trainer.run`'s default limits
    ``config.steps``, ``config.epochs`` and ``config.seconds``.

    ``data``: the text, ids, or a path (the run directory records it);
    ``source``: what run.json records of a text given otherwise
    (:func:`pycharrnn.data.source_of`); ``recipe``: the recipe the configs
    came from (:func:`pycharrnn.config.resolve`), announced at the start
    (:meth:`pycharrnn.recipes.Recipe.announce`) unless ``notes`` (lines to
    print first) are given. ``run_dir``: the new run's directory. Other
    ``options`` go to the Trainer (callbacks, stop_on_signals). A model
    config too large to train in the memory this process can get is refused
    (MemoryError, :func:`pycharrnn.memory.check_training`) before anything is
    allocated or written."""
    from .progress import Progress

    parallel = strategy(distributed)
    use_threads(config.threads, parallel)
    data, read_from = read_if_path(data)
    source = read_from or source
    if isinstance(model, ModelConfig):
        if not isinstance(data, str):
            raise TypeError("a ModelConfig needs the text (a str) for its vocabulary")
        vocab = Vocab.from_text(data)
        check_training(len(vocab), model.checked(), config.batch_size, config.seq_length,
                       config.optimizer)  # before anything is allocated or written
        model = CharRNN.from_config(vocab, model, seed=config.seed)
    opt = create_optimizer(config.optimizer, model, config.lr, config.clip_value,
                           config.clip_norm, config.weight_decay)
    sched = create_schedule(config.schedule, opt.lr, config.steps, config.seconds,
                            config.warmup, config.lr_decay, config.lr_decay_after)
    if progress is True:
        progress = Progress.from_config(config)
    tr = cls(model, data, config.batch_size, config.seq_length, opt, sched,
             config.val_fraction, config.eval_every, None, config.checkpoint_every,
             config.checkpoint_each_epoch, config.ema_decay,
             eval_every_seconds=config.eval_every_seconds, steps_per_call=config.steps_per_call,
             distributed=parallel.group or False, grad_norms_every=config.grad_norms_every,
             progress=progress, **options)
    tr.source = source
    tr.limits = {"until_step": config.steps, "until_epoch": config.epochs,
                 "seconds": config.seconds}
    if notes is None:  # the options that differ from the recipe's were the user's
        mine = {**asdict(config), **vars(model.model_config())}
        mine.pop("warmup")  # (resolve shortens the recipe's warm-up in short runs)
        notes = [recipe.announce(config, mine)] if recipe is not None else []
    tr.notes.extend(notes)
    if run_dir is not None:
        attach(tr, run_dir, new=True, info=run_info(tr, config, recipe))
    return tr


def attach(trainer: Any, run_dir: Any, new: bool, info: Optional[Dict[str, Any]] = None
           ) -> None:
    """Make ``run_dir`` the trainer's run directory. A new run's must not
    hold a run (:class:`pycharrnn.RunExistsError`) and gets its run.json
    (``info``, default :func:`run_info`); a resumed run's loses the
    temporary files a killed write left (this process owns it now); the
    metrics.jsonl of either loses the lines after the trainer's step."""
    run_dir = Path(run_dir)
    main = trainer.is_main
    if new:
        trainer.parallel.on_main(lambda: check_new_run(run_dir))
    elif main:
        remove_temporaries(run_dir)
    # metrics.jsonl keeps the lines up to this step (none of a new run: an
    # attempt killed before its first checkpoint may have left some)
    trainer.metrics_resume = trainer.step_count
    if main and (new or not (run_dir / RUN_FILE).exists()):
        write_run_info(run_dir, info or run_info(trainer))
    trainer.run_dir = run_dir


#: A validation's time per held-out character before any was measured, as
#: a fraction of a training step's time per character (see :func:`validation_cost`).
VALIDATION_PER_STEP = 0.45


def validation_cost(trainer: Any) -> float:
    """Seconds a validation is expected to take: the last one's measured
    time, or before any, the validation text at :data:`VALIDATION_PER_STEP`
    of a training step's time per character (a forward pass without the
    backward one and the update, and the warm-up of its streams), the step's
    time the median of the last steps' (a governor's probe or another
    program's moment of work slows single steps); 0 before the first step.
    (On a 2-core AVX2 EPYC, five ``--time 20`` and ``--time 60`` runs on the
    built-in Shakespeare corpus validated its 498,694 held-out characters at
    0.34-0.45 of their last nine steps' median time per character.)"""
    val = trainer._last_eval_seconds
    times = trainer._step_times
    step = statistics.median(times) if times else trainer._step_seconds
    if not val and trainer.val_ids.size and step:
        b = trainer.batches
        val = VALIDATION_PER_STEP * step * trainer.val_ids.size / (b.rows * b.seq_length)
    return val


def eval_by_time(trainer: Any, clock: float) -> bool:
    """Whether the trainer's ``eval_every_seconds`` asks for a validation at
    ``clock``: never sooner than 9 validations' time after the last, so that
    they take at most a tenth of the run; the first, 9 times its estimate
    (:func:`validation_cost`). A minute's run of a GRU 1x384 on the built-in
    Shakespeare corpus validated 500,000 characters at 12 s and spent 15 s
    on it, then as long on the last)."""
    return trainer.eval_every_seconds is not None and clock >= trainer.last_eval_clock + \
        max(trainer.eval_every_seconds, 9 * validation_cost(trainer))


def end_cost(trainer: Any, seconds: Optional[float] = None) -> float:
    """Seconds the end of a run is expected to take after its last step
    (:meth:`Trainer.run` with ``seconds`` stops this much earlier): the last
    validation, the last save and what the callbacks do at the end
    (:func:`end_parts`), each as measured last time. Before any validation,
    :func:`validation_cost`'s estimate; until the run has timed as many
    steps as that estimate takes the median of, at most a quarter of
    ``seconds``: a run's first steps, slow while caches and the thread
    governor warm up, would make it too large and end the run at once. Past
    that, the estimate holds whatever its size: a validation that takes most
    of the budget leaves the steps the rest (on a 2-core AVX2 EPYC a
    ``--time 20`` run validated the built-in corpus for 14 s after training
    for 16 when the estimate was held to a quarter, and ended at 30 s)."""
    val = validation_cost(trainer)
    times = trainer._step_times
    if not trainer._last_eval_seconds and seconds is not None and len(times) < times.maxlen:
        val = min(val, 0.25 * seconds)
    return val + (trainer._last_save_seconds if trainer.run_dir is not None else 0.0) + \
        sum(s for _, s in end_parts(trainer))


class Rate(float):
    """A training speed in characters a second (:func:`measure_rate`), with
    what the other programs on this process's cores used while it was
    measured: ``others`` cores' worth of CPU time of ``cores`` usable
    (None: unknown)."""

    others: Optional[float]
    cores: Optional[float]

    def __new__(cls, value: float, others: Optional[float] = None,
                cores: Optional[float] = None) -> "Rate":
        r = super().__new__(cls, value)
        r.others, r.cores = others, cores
        return r


def measure_rate(model_config: ModelConfig, train_config: TrainConfig, vocab_size: int,
                 seconds: float = 0.5) -> Rate:
    """Training characters a second of the model ``model_config`` with the
    batch, optimizer and threads of ``train_config``, on this machine, now:
    bare training steps (forward, backward, update) on random ids, one
    untimed first, then at least 3 and ``seconds`` of them. No dropout: a
    step with it costs little more. (What :func:`pycharrnn.config.resolve`
    takes as ``rate`` to fit a recipe to a text.) The :class:`Rate` also
    says how much of the cores other programs took meanwhile: a speed
    measured beside them holds only while they run."""
    from .backend import get_num_threads, set_num_threads, set_threads_auto, threads_auto
    from .cpuload import CpuLoad

    before = None if threads_auto() else get_num_threads()
    if train_config.threads is not None:
        set_num_threads(train_config.threads)
    try:
        plain = dataclasses.replace(model_config, dropout=0.0, input_dropout=0.0,
                                    output_dropout=0.0, weight_drop=0.0, embedding_dropout=0.0)
        model = CharRNN.from_config(vocab_size, plain.checked())
        opt = create_optimizer(train_config.optimizer, model, 1e-9)
        B, T = train_config.batch_size, train_config.seq_length
        ids = np.random.default_rng(0).integers(0, vocab_size, (B, T + 1))
        n, t0, load = -1, 0.0, None
        while n < 3 or time.perf_counter() - t0 < seconds:
            model.forward_backward(ids[:, :-1], ids[:, 1:])
            opt.step()
            n += 1
            if n == 0:
                t0 = time.perf_counter()
                load = CpuLoad()
        window = load.window(min_seconds=0.0) if load is not None else None
        rate = n * B * T / (time.perf_counter() - t0)
        return Rate(rate, *((window["others"], window["cores"]) if window else (None, None)))
    finally:
        if before is None:
            set_threads_auto()
        else:
            set_num_threads(before)


def use_threads(threads: Optional[int], parallel: Any) -> None:
    """Kernel threads for a run: ``threads``; None leaves the process's
    setting (by default chosen at run time up to the usable cores, see
    :func:`pycharrnn.set_num_threads`), shared among the ranks of a machine
    in a distributed run."""
    from .backend import set_num_threads

    if threads is not None:
        set_num_threads(check_int("threads", threads, 1))
    else:
        parallel.share_threads()


def resume(cls, path: Any, data: Any = None,
           callbacks: Optional[Sequence[Callable[..., Any]]] = None, run_dir: Any = "auto",
           distributed: Any = False, progress: Any = True, stop_on_signals: bool = True,
           checkpoint_dir: Any = "auto", threads: Optional[int] = None, **overrides: Any):
    """Continue a run from a checkpoint file or run directory, exactly as if
    it had never stopped.

    ``data``: the same text (checked by length and hash), ids, or a path;
    None reads the file or corpus the run's run.json names. ``overrides``
    may change eval_every, eval_every_seconds, checkpoint_every,
    checkpoint_each_epoch and steps_per_call; batch_size, seq_length or
    val_fraction that differ from the checkpoint raise ValueError naming them.
    ``run_dir`` defaults to the checkpoint's directory (``checkpoint_dir`` is
    its older name); resuming into it removes the temporary files a killed
    write left there, and its metrics.jsonl drops the lines of steps after
    the checkpoint's.

    ``distributed``: as for the Trainer; rank 0 reads the checkpoint and
    sends it to the others, so only rank 0 needs to see the run directory. A
    run may resume on any number of ranks (each takes its streams' part of
    the saved state). ``threads``: as :func:`use_threads`."""
    bad = [k for k in overrides if k not in FIXED | FREE]
    if bad:
        raise TypeError(f"unknown resume options: {bad}")
    parallel = strategy(distributed)
    use_threads(threads, parallel)
    src = Path(parallel.on_main(lambda: str(resolve(path))))
    model, ts = load_training(src, blob=parallel.file_bytes(src))
    t = ts.trainer
    clash = [f"{k}={overrides[k]!r} (checkpoint: {t[k]!r})" for k in FIXED & set(overrides)
             if overrides[k] != t[k]]
    if clash:
        raise ValueError("cannot resume with a different " + ", ".join(clash))
    if data is None:  # every rank reads the text the run's run.json names
        source = parallel.on_main(lambda: run_source(src.parent))
        data = load_text(source["data"], source["corpus"])
    else:
        data, source = read_if_path(data)
    ids = training_ids(model, data)
    fp = fingerprint(ids)
    if fp != t["data"]:
        raise ValueError(f"the training data differs from the checkpoint's: "
                         f"{plural(fp['length'], 'character')} (sha256 "
                         f"{fp['sha256'][:12]}...) vs {t['data']['length']:,} (sha256 "
                         f"{t['data']['sha256'][:12]}...)")
    try:
        opt = from_state_dict(model, ts.optimizer)
    except ValueError as e:
        raise CheckpointError(f"{src}: {e}") from None
    schedule = None
    if ts.schedule is not None:
        schedule = schedule_from_config(ts.schedule["config"])
        schedule.load_state_dict(ts.schedule)
    kw = {k: overrides.get(k, t.get(k)) for k in FREE if k in overrides or k in t}
    tr = cls(model, ids, batch_size=t["batch_size"], seq_length=t["seq_length"],
             optimizer=opt, schedule=schedule, val_fraction=t["val_fraction"],
             ema_decay=t["ema_decay"], callbacks=callbacks, distributed=parallel.group or False,
             progress=progress, stop_on_signals=stop_on_signals, **kw)
    tr.source = source
    _restore(tr, ts, path)
    where = run_dir if run_dir != "auto" else checkpoint_dir
    if where == "auto":
        where = src.parent
    if where is not None:
        attach(tr, where, new=False)
    tr.notes.append(f"resuming {src.parent} at step {tr.step_count}")
    return tr


def _restore(tr: Any, ts: Any, path: Any) -> None:
    """The counters, state and histories of a training checkpoint into a
    new trainer for it."""
    t = ts.trainer
    tr.step_count = int(t["step"])
    tr.batches.epoch, tr.batches.position = int(t["epoch"]), int(t["position"])
    if "ema_sum" in t:
        tr.ema_sum = float(t["ema_sum"])
    else:  # written before the bias correction: an average started at ln(V)
        tr.ema_sum = float(t["ema_loss"]) - \
            tr.ema_decay ** tr.step_count * math.log(tr.model.vocab_size)
    tr.best_val_loss = t["best_val_loss"]
    tr.elapsed = float(t["elapsed"])
    tr.clock = float(t.get("clock", t["elapsed"]))  # older checkpoints: step time only
    tr.last_eval_clock = tr.clock
    b = tr.batches
    if ts.state.ndim != 4 or ts.state.shape[2] != b.batch_size:
        raise CheckpointError(f"{path}: the carried state has shape "
                              f"{ts.state.shape}, not that of batch_size={b.batch_size}")
    tr.state = tr.model.unpack_state(
        np.ascontiguousarray(ts.state[:, :, b.first_row:b.first_row + b.rows]))
    tr.history = _rows(ts.history, tr.HISTORY_KEYS)
    tr.val_history = _rows(ts.val_history, tr.VAL_KEYS)
    tr.model.rng_state = ts.rng


def _rows(columns: Dict[str, np.ndarray], keys: Sequence[str]):
    """Per-metric arrays as one dict per step ("step" as an int)."""
    n = len(columns["step"])
    rows = [{k: float(columns[k][i]) for k in keys} for i in range(n)]
    for r in rows:
        r["step"] = int(r["step"])
    return rows


def check_compatible(saved: Dict[str, Any], requested: Dict[str, Any]) -> None:
    """Raise ValueError naming every key whose requested value differs from
    the saved one (keys absent from ``requested`` or set to None are ignored)."""
    diff = [f"{k}: checkpoint has {saved.get(k)!r}, asked for {v!r}"
            for k, v in requested.items() if v is not None and saved.get(k) != v]
    if diff:
        raise ValueError("the checkpoint's configuration does not match: " + "; ".join(diff))


class _Run:
    """A run in progress (:func:`session`): ``end()`` tells the callbacks,
    then raises :class:`pycharrnn.signals.Interrupted` if a signal stopped it."""

    def __init__(self, trainer: Any, signals: Any):
        self.trainer, self.signals = trainer, signals
        self.ended = False

    def end(self) -> None:
        tr = self.trainer
        self.ended = True
        signum = None if self.signals is None else self.signals.signum
        for cb in tr.run_callbacks or ():
            if hasattr(cb, "on_run_end"):
                cb.on_run_end(tr, signum)
        if signum is not None:
            from .signals import Interrupted

            raise Interrupted(signum, tr.step_count, clean=True)


@contextlib.contextmanager
def session(trainer: Any, target: float, seconds: Optional[float]) -> Iterator[_Run]:
    """What brackets every :meth:`Trainer.run`: the run directory's
    callbacks (metrics.jsonl, curves.png) and the progress, opened and
    closed (the progress by its ``on_run_end``, or when an exception ends
    the run); the signal handlers (:class:`pycharrnn.signals.StopOnSignals`)."""
    from .metrics import MetricsLog
    from .plot import CurvesPlot
    from .signals import StopOnSignals

    own: List[Any] = []
    log = None
    if trainer.run_dir is not None and trainer.is_main:
        path = trainer.run_dir / METRICS_FILE
        if not any(isinstance(cb, MetricsLog) and cb.path == path for cb in trainer.callbacks):
            log = MetricsLog(trainer.run_dir, resume_step=trainer.metrics_resume)
            trainer.metrics_resume = None
            own.append(log)
        quiet = trainer.progress is None or getattr(trainer.progress, "quiet", False)
        own.append(CurvesPlot(trainer.run_dir, log=_silent if quiet else print))
    if trainer.progress is not None:
        own.append(trainer.progress)
    trainer.run_callbacks = trainer.callbacks + own
    signals = StopOnSignals(trainer, announce=trainer.is_main) \
        if trainer.stop_on_signals else None
    run = _Run(trainer, signals)
    try:
        with signals if signals is not None else contextlib.nullcontext():
            for cb in trainer.run_callbacks:
                if hasattr(cb, "on_run_start"):
                    cb.on_run_start(trainer, target, seconds)
            yield run
    finally:
        if log is not None:
            log.close()
        if not run.ended and trainer.progress is not None:
            trainer.progress.close()
        trainer.run_callbacks = None


def _silent(*args: Any, **kw: Any) -> None:
    pass


def training_state(trainer: Any) -> Optional[TrainingState]:
    """Everything exact resume needs besides the model's parameters (see
    :func:`_restore` for the way back); None on a rank that writes no files."""
    b = trainer.batches
    state = trainer.parallel.gather_state(trainer.model.pack_state(trainer.state, b.rows))
    if state is None:
        return None
    t = {
        "step": trainer.step_count, "epoch": b.epoch, "position": b.position,
        "batch_size": b.batch_size, "seq_length": b.seq_length,
        "val_fraction": trainer.val_fraction, "eval_every": trainer.eval_every,
        "eval_every_seconds": trainer.eval_every_seconds,
        "checkpoint_every": trainer.checkpoint_every,
        "checkpoint_each_epoch": trainer.checkpoint_each_epoch,
        "ema_decay": trainer.ema_decay, "ema_sum": trainer.ema_sum,
        "ema_loss": trainer.ema_loss if trainer.step_count else None,
        "best_val_loss": trainer.best_val_loss, "elapsed": trainer.elapsed,
        "clock": trainer.clock, "data": trainer.data_fingerprint,
    }
    sched = trainer.schedule
    return TrainingState(
        trainer=t, optimizer=trainer.optimizer.state_dict(),
        schedule=sched.state_dict() if sched is not None else None,
        rng=trainer.model.rng_state, state=state,
        history={k: [h[k] for h in trainer.history] for k in trainer.HISTORY_KEYS},
        val_history={k: [h[k] for h in trainer.val_history] for k in trainer.VAL_KEYS})
