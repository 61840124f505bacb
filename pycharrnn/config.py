"""The one source of every default: a model's architecture (:class:`ModelConfig`)
and a training run's settings (:class:`TrainConfig`).

:class:`pycharrnn.CharRNN` and :class:`pycharrnn.Trainer` take their keyword
defaults from these classes, a checkpoint's header stores a model's
:class:`ModelConfig`, the recipes are partial configs, and every option of
``pycharrnn train`` is a field of one of them (its help shows the field's
default). :func:`resolve` fills a run's configs from what the user gave, as
``pycharrnn train`` does::

    model_cfg, train_cfg, recipe = pycharrnn.config.resolve({"seconds": 60})
    trainer = pycharrnn.Trainer.from_config(text, model_cfg, train_cfg, run_dir="runs/x")
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, Dict, Mapping, Optional, Tuple

__all__ = ["ModelConfig", "TrainConfig", "MODEL_KEYS", "TRAIN_KEYS", "resolve",
           "EVALS_BY_TIME"]


#: Gate blocks per cell: the rows of W_ih and W_hh are G * hidden_size.
GATES = {"rnn": 1, "gru": 3, "lstm": 4}


@dataclass(frozen=True)
class ModelConfig:
    """A CharRNN's architecture: every constructor argument but the vocabulary,
    the seed and ``forget_bias`` (see :class:`pycharrnn.CharRNN` for each)."""

    hidden_size: int = 128
    num_layers: int = 1
    cell: str = "lstm"
    nonlinearity: str = "tanh"
    embedding_dim: Optional[int] = None
    dropout: float = 0.0
    dtype: str = "float32"
    input_dropout: float = 0.0
    output_dropout: float = 0.0
    weight_drop: float = 0.0
    embedding_dropout: float = 0.0
    locked_dropout: bool = False

    def parameters(self, vocab_size: int) -> int:
        """The number of parameters of this model on ``vocab_size``
        characters (csrc/model.hpp's count), without building it."""
        V, H, L, G = vocab_size, self.hidden_size, self.num_layers, GATES[self.cell]
        E = self.embedding_dim or 0
        first = E if E > 0 else V
        return V * E + G * H * (first + H + 2) + (L - 1) * G * H * (2 * H + 2) + V * (H + 1)

    def checked(self) -> "ModelConfig":
        """This config with every field checked (errors name the field) and
        normalised (numpy ints and dtypes as Python's)."""
        import numpy as np

        from .checks import check_bool, check_choice, check_int, check_rate

        check_choice("cell", self.cell, ("rnn", "gru", "lstm"))
        check_choice("nonlinearity", self.nonlinearity, ("tanh", "relu"))
        if self.cell != "rnn" and self.nonlinearity != "tanh":
            raise ValueError("nonlinearity applies to cell='rnn' only")
        dtype = self.dtype
        if isinstance(dtype, np.dtype) or (isinstance(dtype, type) and
                                           issubclass(dtype, np.generic)):
            dtype = np.dtype(dtype).name  # np.float32 / np.dtype("float64")
        check_choice("dtype", dtype if isinstance(dtype, str) else repr(dtype),
                     ("float32", "float64"))
        rates = {k: check_rate(k, getattr(self, k)) for k in
                 ("dropout", "input_dropout", "output_dropout", "weight_drop",
                  "embedding_dropout")}
        emb = None if self.embedding_dim is None else \
            check_int("embedding_dim", self.embedding_dim, 1)
        for name in ("input_dropout", "embedding_dropout"):
            if rates[name] > 0 and emb is None:
                raise ValueError(f"{name} needs an embedding: set embedding_dim (one-hot "
                                 "input has no embedding to drop)")
        return ModelConfig(hidden_size=check_int("hidden_size", self.hidden_size, 1),
                           num_layers=check_int("num_layers", self.num_layers, 1),
                           cell=self.cell, nonlinearity=self.nonlinearity, embedding_dim=emb,
                           dtype=dtype,
                           locked_dropout=check_bool("locked_dropout", self.locked_dropout),
                           **rates)


#: The regularisers beyond ``dropout`` (a checkpoint made before they existed
#: has none of these keys: all off).
REGULARIZERS = ("input_dropout", "output_dropout", "weight_drop", "embedding_dropout",
                "locked_dropout")


@dataclass(frozen=True)
class TrainConfig:
    """A training run: its length, the data's batching, the optimizer and its
    schedule, when to validate and save, and what it prints.

    Length (give one or more; the first reached ends the run): ``steps`` and
    ``epochs`` are the run's totals (a resumed run continues to them);
    ``seconds`` is the wall time of this session.

    ``lr`` None is the optimizer's default rate for this library's mean loss
    (:data:`pycharrnn.optim.DEFAULT_LR`). ``clip_value`` clips every gradient
    element to [-clip_value, clip_value] (None or 0: off); ``clip_norm`` the
    global norm. ``schedule``: "constant", "step" (x ``lr_decay`` per epoch
    from epoch ``lr_decay_after``), "cosine" (``warmup`` steps, then a cosine
    to ``steps``, or without them to the ``seconds`` deadline) or "plateau"
    (x ``lr_decay`` when the validation loss stalls).

    Validation runs every ``eval_every`` steps and/or every
    ``eval_every_seconds`` of the training clock, at each epoch's end and at
    the end of a run; ``latest.npz`` is written every ``checkpoint_every``
    steps, at epoch ends (``checkpoint_each_epoch``) and at the end.
    ``threads``: kernel threads (None: chosen while the run goes, by
    timing, up to the usable cores; in a distributed run, the cores shared
    out among the ranks on each machine).
    ``seed`` seeds the weights, the dropout masks and the samples printed.
    ``log_every``: steps between progress lines (without a bar);
    ``sample_every``: print a sample every N steps (0: only at the end);
    ``sample_length`` characters at ``sample_temperature`` (0: no samples);
    ``pycharrnn sample`` takes the same two defaults.
    """

    steps: Optional[int] = None
    epochs: Optional[float] = None
    seconds: Optional[float] = None
    batch_size: int = 32
    seq_length: int = 64
    val_fraction: float = 0.1
    optimizer: str = "adam"
    lr: Optional[float] = None
    clip_value: Optional[float] = 5.0
    clip_norm: Optional[float] = None
    weight_decay: float = 0.0
    schedule: str = "constant"
    lr_decay: float = 0.97
    lr_decay_after: float = 10.0
    warmup: int = 0
    eval_every: Optional[int] = 1000
    eval_every_seconds: Optional[float] = None
    checkpoint_every: Optional[int] = 500
    checkpoint_each_epoch: bool = True
    ema_decay: float = 0.99
    steps_per_call: int = 256
    grad_norms_every: Optional[int] = 50
    threads: Optional[int] = None
    seed: int = 0
    log_every: int = 50
    sample_every: int = 0
    sample_length: int = 500
    sample_temperature: float = 0.8


MODEL_KEYS = tuple(f.name for f in fields(ModelConfig))
TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig))
#: A run limited by time alone (and no validation cadence given) validates
#: this many times, evenly spread over its time.
EVALS_BY_TIME = 5


def defaults(cls) -> Dict[str, Any]:
    """{field: default} of a config class."""
    return {f.name: f.default for f in fields(cls)}


def resolve(given: Mapping[str, Any], recipe: str = "auto", text: Optional[str] = None,
            rate: Any = None) -> Tuple[ModelConfig, TrainConfig, Any]:
    """The configs of a new run from the options the user set (``given``:
    field names of both classes; None values count as not given), as
    ``pycharrnn train`` makes them.

    ``recipe``: "auto" takes the recipe of :func:`pycharrnn.recipes.for_budget`
    when ``seconds`` is the only limit (or, for a text that recipe's model
    would read fewer than its ``min_epochs`` times, its ``fallback`` row,
    unless you set the cell, size or depth); "none" takes none; any other name
    that row of the table. With ``text`` (the text to train on) and
    ``rate``, "auto" also fits the row's regularisation to the text
    (:func:`pycharrnn.recipes.fit_to_text`) as ``pycharrnn train`` does: by
    the epochs the budget buys on its training part at ``rate`` characters
    a second (or at what ``rate(model_config, train_config, vocab_size)``
    returns: :func:`pycharrnn.runs.measure_rate` measures the model as
    configured) and the model's parameters per character of it; the user's
    own regularisation options stay. A recipe fills what the user did not set (its
    learning rate then runs a cosine: to ``steps`` when given, else to the
    deadline), then the defaults fill the rest. A run limited by time alone
    without ``eval_every`` or ``eval_every_seconds`` validates
    :data:`EVALS_BY_TIME` times spread over its time.

    Returns (ModelConfig, TrainConfig, the Recipe or None); TypeError names
    an unknown option."""
    from . import recipes

    given = {k: v for k, v in given.items() if v is not None}
    unknown = sorted(set(given) - set(MODEL_KEYS) - set(TRAIN_KEYS))
    if unknown:
        raise TypeError(f"unknown options: {', '.join(unknown)}")
    steps, seconds = given.get("steps"), given.get("seconds")
    time_only = seconds is not None and steps is None and given.get("epochs") is None
    chosen = None
    if recipe not in ("auto", "none"):
        chosen = recipes.by_name(recipe)
    elif recipe == "auto" and time_only:
        chosen = recipes.for_budget(seconds)

    def configs(row: Any) -> Tuple[ModelConfig, TrainConfig]:
        values = dict(given)
        if row is not None:
            opts = row.options()
            if steps is not None or seconds is not None:
                opts["schedule"] = "cosine"  # to the steps, or else to the deadline
            if steps is not None:
                opts["warmup"] = min(opts["warmup"], steps // 10)  # a tenth of a short run at most
            for k, v in opts.items():
                values.setdefault(k, v)
        if time_only and "eval_every" not in given and "eval_every_seconds" not in given:
            values["eval_every"] = None
            values["eval_every_seconds"] = seconds / EVALS_BY_TIME
        return (ModelConfig(**{k: v for k, v in values.items() if k in MODEL_KEYS}),
                TrainConfig(**{k: v for k, v in values.items() if k in TRAIN_KEYS}))

    model, train = configs(chosen)
    if chosen is not None and recipe == "auto" and text is not None and rate is not None:
        from .data import validation_size

        vocab = len(set(text))
        n_train = len(text) - validation_size(len(text), train.val_fraction)
        speed = rate(model, train, vocab) if callable(rate) else rate
        if chosen.fallback and seconds * speed / max(1, n_train) < chosen.min_epochs and \
                not {"cell", "hidden_size", "num_layers"} & set(given):
            chosen = recipes.by_name(chosen.fallback)  # a large text: the faster model
            model, train = configs(chosen)
            speed = rate(model, train, vocab) if callable(rate) else speed
        fitted = recipes.fit_to_text(chosen, seconds, n_train, speed, model.parameters(vocab))
        reg = {k: v for k, v in fitted.options().items()
               if k in recipes.REGULARISATION["none"] and k not in given}
        model = replace(model, **reg)
        chosen = fitted
    return model, train, chosen


def replace(cfg, **changes):
    """A copy of a config with ``changes`` (dataclasses.replace)."""
    return dataclasses.replace(cfg, **changes)
