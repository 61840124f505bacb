"""Is a run over- or underfitting its text? Read from the training loss and
the validation points, with the one change that would help most.

Overfitting, once the model has read its text more than once: the
validation loss has risen from its best while the training loss went on
falling (the model learns its training text by heart), or is well above the
training loss and further above it than in the first epoch (it fits its
training text ever better than new text; the note then says whether
validation is still falling).
Underfitting: the gap has stayed level since the first epoch and the
validation loss is still falling fast at the end (the model or the budget
is too small for the text). The constants are nats per
character (see :data:`GAP`).

The advice differs between the two kinds of overfitting. ``python
benchmarks/recipe_spread.py --pairs`` lists the pairs of runs of one model,
text, budget and machine where the second has more dropout, the first's
gap to training above :data:`GAP`. Where the first's validation had risen
from its best, more dropout was better in all 9 such pairs (0.03-0.34;
among them tinyshakespeare in 60 minutes, the moderate level to the strong:
1.354 against 1.437). Where only the gap grew, validation still at its
best, it was worse in all 16 pairs with a gap up to 0.40 (0.008-0.154;
among them tinyshakespeare in 60 minutes with output dropout 0.5 for 0.3:
1.367 against 1.354, less than two seeds of the row differ: 1.354 and
1.365; pairs are made within one seed), and
better in the one pair with a gap of 0.49 (tinyshakespeare, an LSTM 2 x 512
for 15 minutes without dropout: 0.055 better with the moderate level). So
more dropout is suggested where validation has risen or the gap is wider
than :data:`DROPOUT_GAP`; otherwise the model is still learning something
it can use, and more time is what helps (on one machine that LSTM made
1.390 in 15 minutes, and 1.366 in 60 as the 60-minute row).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

__all__ = ["Fit", "diagnose", "advice", "GAP", "GROWTH", "CAPACITY", "ROSE", "LEVEL",
           "STILL_FALLING", "WIDE", "DROPOUT_GAP"]

#: Validation above training by this much may be overfitting ...
GAP = 0.15
#: ... when the gap has also grown by this much since the first epoch (the
#: last validation before the model had read its text twice; the first
#: validation when there was none): before the model has seen a character
#: twice it cannot have learnt it by heart. A gap alone is not overfitting:
#: a validation text unlike the rest has one from the start
#: (tinyshakespeare's last 10%: +0.11 to +0.14 for a GRU 1 x 32 that cannot
#: learn its 1M characters by heart, all run long).
GROWTH = 0.10
#: ... in a model with at least this many parameters per training character.
#: The gap also grows in a model too small to learn its text by heart: a GRU
#: 1 x 32 (8K parameters, 0.008 per character of tinyshakespeare) went from
#: +0.04 after its first epoch to +0.13-0.17 by its tenth, while its training
#: and validation losses fell together; a GRU 1 x 256 on 54K characters (4.6
#: per character) reached +0.31 with its validation loss rising.
CAPACITY = 0.1
#: Validation this far above its best, at its last two points, is
#: overfitting whatever the gap.
ROSE = 0.005
#: A gap that moved less than this since the first epoch is level.
LEVEL = 0.05
#: A validation loss that fell by this share over the last fifth of the run
#: is still falling fast.
STILL_FALLING = 0.01
#: A final gap above this is always explained in the summary.
WIDE = 0.25
#: Overfitting with validation still at its best gains from more dropout
#: only with a gap wider than this: the middle of 0.40 (the widest such gap
#: where one level more was worse) and 0.49 (the one where it was better).
DROPOUT_GAP = 0.45


@dataclass(frozen=True)
class Fit:
    """A diagnosis: ``kind`` is "overfitting", "underfitting", "apart" (a
    wide gap that was there from the start) or "" (none of them); ``gap`` is
    validation - training (nats/char), ``why`` one line on it."""

    kind: str
    gap: float
    why: str
    #: Overfitting only: validation has risen from its best (else only the
    #: gap grew, validation still near its best).
    risen: bool = False


def diagnose(points: Sequence[Mapping[str, float]], final: bool = False,
             capacity: Optional[float] = None) -> Fit:
    """The state of a run from its validation points: ``step``, ``val_loss``,
    ``train_loss`` (the training loss then: the mean of the last steps) and
    ``epoch`` (the epochs read) each.
    Underfitting and a wide gap are judged only at the end (``final``): a
    run in progress is expected to be still falling. ``capacity``: the
    model's parameters per training character (None: not known)."""
    pts = [p for p in points if p["train_loss"] == p["train_loss"]]  # not NaN
    if not pts:
        return Fit("", float("nan"), "")
    vals = [float(p["val_loss"]) for p in pts]
    v, best, last = vals[-1], min(vals), pts[-1]
    gap = v - float(last["train_loss"])
    train = f"training {float(last['train_loss']):.3f}"
    # Before the model has read its text twice it cannot have learnt it by
    # heart: a rise then is the optimizer's (a step size too large), not a fit.
    again = float(last.get("epoch", math.inf)) > 1.0
    at_best = pts[vals.index(best)]
    if (again and len(vals) >= 3 and min(vals[-2:]) > best + ROSE  # two points past the best
            and float(last["train_loss"]) < float(at_best["train_loss"])):  # training went on
        return Fit("overfitting", gap, f"validation loss {v:.3f} has risen from its best "
                                       f"{best:.3f} while {train} goes on", risen=True)
    first = [p for p in pts[:-1] if p.get("epoch", 0.0) <= 1.0]
    base = first[-1] if first else (pts[0] if len(pts) > 1 else None)
    grew = gap - (float(base["val_loss"]) - float(base["train_loss"])) if base else 0.0
    if again and gap > GAP and grew >= GROWTH and (capacity is None or capacity >= CAPACITY):
        # Not (yet) risen: say where validation stands, so that a growing gap
        # does not read as a run that has stopped improving (in the 60-minute
        # runs the note came while validation fell 0.05-0.08 more).
        where = ("validation is still falling" if v == best else
                 f"validation is within {ROSE:g} of its best {best:.3f}" if v <= best + ROSE
                 else f"validation is {v - best:.3f} above its best {best:.3f}")
        return Fit("overfitting", gap, f"validation loss {v:.3f} is {gap:.2f} above {train}, "
                                       f"{grew:.2f} more than at step {int(base['step'])}: "
                                       f"the model fits its training text ever better than new "
                                       f"text; {where}")
    if final and gap > WIDE and base is None:
        return Fit("apart", gap, f"validation loss {v:.3f} is {gap:.2f} above {train}; one "
                                 "validation cannot tell whether the model learnt its "
                                 "training text by heart or the validation text differs")
    if not final or base is None:
        return Fit("", gap, "")
    if gap > WIDE:
        return Fit("apart", gap, f"validation loss {v:.3f} is {gap:.2f} above {train}, "
                                 f"as it was at step {int(base['step'])}: the validation "
                                 "text differs from the training text")
    steps = [float(p["step"]) for p in pts]
    cut = steps[-1] - 0.2 * (steps[-1] - steps[0])
    before = [x for s, x in zip(steps, vals) if s <= cut][-1]
    if abs(grew) <= LEVEL and len(vals) >= 3 and (before - v) / before >= STILL_FALLING:
        return Fit("underfitting", gap, f"validation loss {v:.3f} still fell "
                                        f"{100 * (before - v) / before:.1f}% over the last "
                                        "fifth of the run, its gap to training level")
    return Fit("", gap, "")


def advice(fit: Fit, model_config: Mapping[str, Any], seconds: Optional[float] = None,
           option: Optional[Callable[[str, Any], str]] = None) -> str:
    """The one change to try next for ``fit`` (empty when there is none).
    ``option(field, value)`` writes a setting (default ``field=value``; the
    command line gives its flags)."""
    opt = option or (lambda k, v: f"{k}={v}")
    if fit.kind == "overfitting" and not fit.risen and fit.gap <= DROPOUT_GAP:
        # Validation still near its best, the gap moderate: more dropout
        # measured worse there (the module's docstring).
        lead = "more dropout measured worse in runs whose validation had not risen"
        if seconds is not None:
            return f"{lead}; try a longer budget: {opt('seconds', f'{2 * seconds:g}')}"
        return f"{lead}; try training longer (twice the steps)"
    if fit.kind == "overfitting":
        # Dropout on the output layer's input: it acts in a model of any depth
        # and input ("dropout" acts between layers only).
        d = float(model_config.get("output_dropout", 0.0) or 0.0)
        if d < 0.5:
            new = min(0.5, round(d + 0.2, 2))
            return f"try more dropout: {opt('output_dropout', f'{new:g}')} (now {d:g})"
        h = int(model_config["hidden_size"])
        return f"try a smaller model: {opt('hidden_size', max(16, h // 2))} (now {h})"
    if fit.kind == "underfitting":
        if seconds is not None:
            return f"try a longer budget: {opt('seconds', f'{2 * seconds:g}')}"
        h = int(model_config["hidden_size"])
        return f"try a bigger model: {opt('hidden_size', 2 * h)} (now {h}), or more steps"
    return ""
