"""Training recipes by time budget: what ``pycharrnn train FILE --time S``
trains when nothing else is said.

Each :class:`Recipe` is the model, batch, optimizer, schedule and
regularisation that reached the lowest validation loss in its budget on a
2-core machine (benchmarks/quality.py measures them; docs/recipes.md gives
the numbers and how the table was found).
:func:`for_budget` picks the row for a budget: the one made for the largest
budget that fits in it (the smallest row for shorter ones);
:func:`fit_to_text` then sets its regularisation by the epochs the budget
buys on the text and the model's parameters per character of it
(:data:`REGULARISATION`, :func:`exposure`, :func:`level_for`). Every field can
be overridden by its own flag; the learning rate follows a linear warm-up,
then a cosine to the deadline (:class:`pycharrnn.schedule.CosineToDeadline`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Dict, List, Mapping, Optional

__all__ = ["Recipe", "RECIPES", "for_budget", "by_name", "REGULARISATION", "level_for",
           "exposure", "EXPOSURE_MODERATE", "EXPOSURE_STRONG", "EXPOSURE_HEAVY",
           "SECONDS_TO_REGULARISE",
           "fit_to_text", "BUSY_SHARE"]


@dataclass(frozen=True)
class Recipe:
    """One row of the table. ``seconds`` is the budget it was chosen for;
    the other fields are fields of :class:`pycharrnn.config.ModelConfig` and
    :class:`pycharrnn.config.TrainConfig` (``pycharrnn train``'s options of
    the same names; ``num_layers`` is --layers)."""

    name: str
    seconds: float
    cell: str
    hidden_size: int
    num_layers: int
    embedding_dim: int
    batch_size: int
    seq_length: int
    optimizer: str
    lr: float
    weight_decay: float
    warmup: int
    dropout: float = 0.0
    input_dropout: float = 0.0
    output_dropout: float = 0.0
    weight_drop: float = 0.0
    embedding_dropout: float = 0.0
    locked_dropout: bool = False
    #: Set by :func:`fit_to_text`: the regularisation level chosen for the
    #: text, the epochs the budget buys on it, the training speed measured and
    #: the exposure (:func:`exposure`) the level was chosen by.
    level: str = ""
    epochs: Optional[float] = None
    rate: Optional[float] = None
    exposure: Optional[float] = None
    #: Set by :func:`fit_to_text` when the speed was measured beside other
    #: programs: the cores' worth of CPU time they used then, of ``cores``.
    others: Optional[float] = None
    cores: Optional[float] = None
    #: A text this row's model would read fewer than ``min_epochs`` times in
    #: the budget is trained with the row named ``fallback`` instead (a
    #: faster model: more passes pay more than depth there); a row with
    #: ``alternate`` set is reached only that way, never by budget alone.
    min_epochs: float = 0.0
    fallback: str = ""
    alternate: bool = False

    def options(self) -> Dict[str, Any]:
        """The fields that are config fields, by name."""
        d = asdict(self)
        for k in ("name", "seconds", "level", "epochs", "rate", "exposure", "others", "cores",
                  "min_epochs", "fallback", "alternate"):
            del d[k]
        return d

    def announce(self, config: Any, given: Mapping[str, Any] = (),
                 auto: Optional[bool] = None,
                 naming: Optional[Callable[[str], str]] = None) -> str:
        """The line a run made from this recipe starts with: its row, why
        (``auto``: chosen for the time limit, as when ``seconds`` is the
        config's only limit; else asked for by name), the cosine's end, and
        the options of ``given`` that differ from the row, with their values
        (``naming`` gives a field's flag; without it, ``field=value``)."""
        name = naming or (lambda k: k)
        if auto is None:
            auto = config.seconds is not None and config.steps is None and \
                config.epochs is None
        how = f"for {name('seconds')} {config.seconds:g}" if auto else \
            (name("recipe") if naming else "by name")
        if self.level and self.epochs is not None:
            how += (f"; about {self.epochs:.3g} epochs of this text at {self.rate:,.0f} chars/s"
                    + (f", exposure {self.exposure:.3g}" if self.exposure is not None else "")
                    + f": {'no' if self.level == 'none' else self.level} regularisation")
        parent = next((r for r in RECIPES if r.fallback == self.name), None)
        if auto and parent is not None and self.epochs is not None:
            how += (f"; instead of {parent.name}, whose {parent.cell} "
                    f"{parent.num_layers}x{parent.hidden_size} would read this text fewer than "
                    f"{parent.min_epochs:g} times")
        if auto and self.busy():  # the row by budget alone, as an idle machine would pick
            row = parent if parent is not None and self.epochs is not None else self
            how += (f"; measured while other programs used {self.others:.1f} of the "
                    f"{self.cores:g} cores: the choice holds while they run (an idle machine "
                    f"trains faster: {name('recipe')} {row.name} trains that row with its own "
                    "regularisation)")
        until = f"step {config.steps}" if config.steps is not None else "the deadline"
        opts = self.options()

        def setting(k: str, v: Any) -> str:  # as it was given: a flag or field=value
            if naming is None:
                return f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
            if isinstance(v, bool):
                return name(k) if v else f"{name(k)} off"
            return f"{name(k)} {v:g}" if isinstance(v, float) else f"{name(k)} {v}"
        yours = [setting(k, given[k]) for k in opts if k in given and given[k] is not None
                 and given[k] != opts[k]]
        return (f"recipe {self.name} ({how}): {self.describe(until)}"
                + (f"; yours: {', '.join(yours)}" if yours else ""))

    def busy(self) -> bool:
        """Whether the speed this row was fitted at was measured while other
        programs took at least :data:`BUSY_SHARE` of the cores."""
        return self.others is not None and bool(self.cores) and \
            self.others >= BUSY_SHARE * self.cores

    def describe(self, until: str = "the deadline") -> str:
        """One line for the start of a run (its cosine runs to ``until``)."""
        reg = [f"{k.replace('_', ' ')} {v:g}" for k, v in
               (("dropout", self.dropout), ("input_dropout", self.input_dropout),
                ("output_dropout", self.output_dropout), ("weight_drop", self.weight_drop),
                ("embedding_dropout", self.embedding_dropout)) if v]
        locked = " (locked)" if self.locked_dropout and reg else ""
        return (f"{self.cell} {self.num_layers}x{self.hidden_size}, embedding "
                f"{self.embedding_dim}, batch {self.batch_size} x {self.seq_length}, "
                f"{self.optimizer} lr {self.lr:g} weight decay {self.weight_decay:g}, "
                f"{self.warmup} warm-up steps then a cosine to {until}, "
                + (", ".join(reg) + locked if reg else "no dropout"))


#: The table, shortest budget first. The 15-minute row's LSTM 2 x 512 (lr
#: 3e-3) reads tinyshakespeare 8.5 times and ends at 1.390, where the GRU
#: 1 x 768 reads it 14.6 times and ends at 1.424; on the 3.4M-character
#: Sherlock text the LSTM reads 2.2 epochs and ends at 1.091, the GRU 4.8
#: and 1.058. Its min_epochs, 4.5, lies between the two (benchmarks/
#: recipe_spread.py); the start's estimate for tinyshakespeare was 7.6. The
#: 60-minute row's LSTM, also at lr 3e-3 (1.366 against 1.377 at 2e-3), reads
#: tinyshakespeare 34 times (52 on a faster VM: 1.354 and 1.365 at two seeds;
#: at lr 4e-3 there 1.351 and 1.356, not separable from 3e-3 by two seeds
#: each; with output dropout 0.5 there 1.367); an LSTM 2 x 768 reads it 14.8
#: times and ends at 1.383.
RECIPES: List[Recipe] = [
    Recipe("1min", 60, cell="gru", hidden_size=384, num_layers=1, embedding_dim=64,
           batch_size=32, seq_length=64, optimizer="adamw", lr=3e-3, weight_decay=0.1,
           warmup=50),
    Recipe("3min", 180, cell="gru", hidden_size=512, num_layers=1, embedding_dim=64,
           batch_size=32, seq_length=64, optimizer="adamw", lr=3e-3, weight_decay=0.1,
           warmup=100),
    Recipe("15min", 900, cell="lstm", hidden_size=512, num_layers=2, embedding_dim=64,
           batch_size=32, seq_length=64, optimizer="adamw", lr=3e-3, weight_decay=0.1,
           warmup=200, input_dropout=0.1, output_dropout=0.25, weight_drop=0.2,
           locked_dropout=True, min_epochs=4.5, fallback="15min-gru"),
    Recipe("15min-gru", 900, cell="gru", hidden_size=768, num_layers=1, embedding_dim=64,
           batch_size=32, seq_length=64, optimizer="adamw", lr=2e-3, weight_decay=0.1,
           warmup=200, input_dropout=0.1, output_dropout=0.25, weight_drop=0.2,
           locked_dropout=True, alternate=True),
    Recipe("60min", 3600, cell="lstm", hidden_size=512, num_layers=2, embedding_dim=64,
           batch_size=32, seq_length=64, optimizer="adamw", lr=3e-3, weight_decay=0.1,
           warmup=300, dropout=0.25, input_dropout=0.1, output_dropout=0.3, weight_drop=0.4,
           locked_dropout=True),
]


#: The regularisation levels of the table's rows: none (the 1- and 3-minute
#: rows), moderate (the 15-minute row's), strong (the 60-minute row's), and
#: heavy for a text so small that the budget reads it hundreds of times
#: (``dropout`` acts between layers, so only in a model of two or more).
REGULARISATION: Dict[str, Dict[str, Any]] = {
    "none": dict(dropout=0.0, input_dropout=0.0, output_dropout=0.0, weight_drop=0.0,
                 locked_dropout=False),
    "moderate": dict(dropout=0.0, input_dropout=0.1, output_dropout=0.25, weight_drop=0.2,
                     locked_dropout=True),
    "strong": dict(dropout=0.25, input_dropout=0.1, output_dropout=0.3, weight_drop=0.4,
                   locked_dropout=True),
    "heavy": dict(dropout=0.4, input_dropout=0.2, output_dropout=0.5, weight_drop=0.5,
                  locked_dropout=True),
}
#: How much a run can overfit its text: the epochs the budget buys times the
#: model's parameters per training character (:func:`exposure`). Epochs alone
#: do not say it: tinyshakespeare read 6.5 times in 3 minutes by a GRU 1 x 512
#: (0.9M parameters; exposure 6.6) learns best without dropout, read 8.5
#: times in 15 minutes by an LSTM 2 x 512 (3.3M; exposure 31) best with the
#: moderate level (1.390 against 1.445 without). The largest exposure where
#: no dropout was best is 7.9 (NumPy's sources, 3 minutes), the smallest
#: where the moderate level was 31: the moderate level from the middle, ...
EXPOSURE_MODERATE = 16.0
#: ... and the strong one from the middle of 31 (tinyshakespeare, 15
#: minutes: strong 0.03 worse than moderate) and 143 (the 60-minute row,
#: strong, 39 epochs; at 181, 55 epochs on a faster machine, strong 1.354
#: and moderate 1.437, its validation risen from 1.388). A
#: 200,000-character text in 3 minutes (exposure 166) ends at 1.313
#: strong, 1.305 moderate, 1.650 without.
EXPOSURE_STRONG = 70.0
#: ... and the heavy one from the geometric middle of 150 (a 200,000-character
#: text in 3 minutes, GRU 1 x 512: strong already 0.008 behind moderate) and
#: 861 (the same text in 15 minutes, LSTM 2 x 512, 47 epochs: heavy 1.244,
#: strong 1.278 with its validation loss 0.33 above training, moderate's GRU
#: 1 x 768 1.471).
EXPOSURE_HEAVY = 360.0
#: Shorter budgets never regularise: the noise slows learning more than it
#: saves (a 200,000-character text in 1 minute, 15 epochs: none 1.335,
#: moderate 1.398, strong 1.408). benchmarks/recipe_spread.py measures these.
SECONDS_TO_REGULARISE = 180.0


#: A speed measured while other programs took this share of the cores or
#: more is said to be so in the recipe line (:meth:`Recipe.busy`): the epochs
#: it predicts hold only while they run. Beside two busy Python loops on two
#: cores, tinyshakespeare's 15-minute start measured the LSTM at fewer than
#: 4.5 epochs (7.6 on the idle machine) and chose the GRU row without
#: dropout (5.3 epochs at 5,882 chars/s): on an idle machine that row ends
#: at 1.537 (benchmarks/recipe_spread.py), the LSTM's at 1.388.
BUSY_SHARE = 0.25


def exposure(epochs: float, parameters: int, train_chars: int) -> float:
    """``epochs`` (passes over the training text) times the model's
    ``parameters`` per character of the ``train_chars`` it trains on: how
    far a run can learn its text by heart."""
    return epochs * parameters / max(1, train_chars)


def level_for(value: float, seconds: float = math.inf) -> str:
    """The regularisation level (a key of :data:`REGULARISATION`) for a run
    of ``seconds`` whose :func:`exposure` is ``value``."""
    if seconds < SECONDS_TO_REGULARISE:
        return "none"
    if value >= EXPOSURE_HEAVY:
        return "heavy"
    if value >= EXPOSURE_STRONG:
        return "strong"
    return "moderate" if value >= EXPOSURE_MODERATE else "none"


def fit_to_text(recipe: Recipe, seconds: float, train_chars: int, rate: float,
                parameters: int) -> Recipe:
    """``recipe`` with the regularisation :func:`level_for` gives the
    :func:`exposure` of ``seconds`` on a training text of ``train_chars``
    characters at ``rate`` training characters a second
    (:func:`pycharrnn.runs.measure_rate`; its ``others`` and ``cores``, the
    other programs' load while it was measured, are kept), for a model of
    ``parameters`` (:meth:`pycharrnn.config.ModelConfig.parameters`)."""
    others, cores = getattr(rate, "others", None), getattr(rate, "cores", None)
    rate = float(rate)
    epochs = seconds * rate / max(1, train_chars)
    expo = exposure(epochs, parameters, train_chars)
    level = level_for(expo, seconds)
    reg = dict(REGULARISATION[level])
    if recipe.num_layers < 2:
        reg["dropout"] = 0.0  # between layers: none in one
    return replace(recipe, **reg, level=level, epochs=epochs, rate=rate, exposure=expo,
                   others=others, cores=cores)


def for_budget(seconds: float) -> Recipe:
    """The recipe for a budget of ``seconds``: the row made for the largest
    budget that fits, or the smallest row."""
    rows = [r for r in RECIPES if not r.alternate]
    fits = [r for r in rows if r.seconds <= seconds]
    return fits[-1] if fits else rows[0]


def by_name(name: str) -> Recipe:
    for r in RECIPES:
        if r.name == name:
            return r
    raise ValueError(f"no recipe {name!r}; there are {', '.join(r.name for r in RECIPES)}")
