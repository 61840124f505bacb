"""Looking inside a network: what every unit does along a text
(:func:`trace`), and how far back the gradient of a prediction reaches
(:func:`gradient_flow`). Both run the model's own forward and backward
(:meth:`CharRNN.trace_arrays`, :meth:`CharRNN.gradient_flow`): there is no
second implementation of the model here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

import numpy as np

from .checks import check_int
from .data import text_to_ids

__all__ = ["Trace", "trace", "gradient_flow", "GATES", "unit_scores", "FEATURES"]

#: The gates each cell keeps, in PyTorch's order.
GATES = {"rnn": (), "gru": ("r", "z", "n"), "lstm": ("i", "f", "g", "o")}


@dataclass
class Trace:
    """The inside of a model reading a text, position by position
    (position t has read ``ids[0..t]``).

    hidden: [L, T, H] each layer's output h_t; cell: [L, T, H] the LSTM's
    cell state c_t (None for other cells); gates: name -> [L, T, H] (GRU
    r, z, n; LSTM i, f, g, o; none for a vanilla RNN); top_ids, top_probs:
    [T, k] the k likeliest next characters after position t and their
    probabilities (decreasing); next_logprob: [T - 1] the log-probability
    (nats) given to the character that does come next.
    """

    ids: np.ndarray
    text: Optional[str]
    hidden: np.ndarray
    cell: Optional[np.ndarray]
    gates: Dict[str, np.ndarray]
    top_ids: np.ndarray
    top_probs: np.ndarray
    next_logprob: np.ndarray
    vocab: Any = field(default=None, repr=False)

    def top_chars(self, t: int) -> List[str]:
        """The characters of ``top_ids[t]`` (needs the model's Vocab)."""
        if self.vocab is None:
            raise ValueError("this trace has no vocabulary: use top_ids")
        return [self.vocab.decode(np.array([i], np.int32)) for i in self.top_ids[t]]

    @property
    def next_prob(self) -> np.ndarray:
        """[T - 1] the probability given to the character that comes next."""
        return np.exp(self.next_logprob)

    @property
    def loss(self) -> float:
        """The mean cross-entropy (nats/char) of predicting ids[1:]."""
        return float(-self.next_logprob.mean()) if self.next_logprob.size else math.nan


def trace(model, text: Union[str, Any], top: int = 5) -> Trace:
    """Run ``model`` over ``text`` (a str, or ids) from a zero state in
    evaluation mode and keep every layer's hidden state (and LSTM cell
    state, GRU/LSTM gates) at every position, and the ``top`` likeliest
    next characters there. Also ``model.trace(text)``."""
    top = check_int("top", top, 1)
    ids = text_to_ids(model, text, "text")
    T, H, V = ids.size, model.hidden_size, model.vocab_size
    names = GATES[model.cell]
    arrays = model.trace_arrays(ids)
    z = arrays["logits"].astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    total = p.sum(axis=1, keepdims=True)
    p /= total
    logp = z - np.log(total)
    k = min(top, V)
    order = np.argsort(-p, axis=1, kind="stable")[:, :k]
    gates = arrays["gates"]
    return Trace(ids=ids, text=text if isinstance(text, str) else None,
                 hidden=arrays["hidden"], cell=arrays["cell"],
                 gates={n: gates[:, :, i * H:(i + 1) * H] for i, n in enumerate(names)},
                 top_ids=order.astype(np.int32),
                 top_probs=np.take_along_axis(p, order, axis=1),
                 next_logprob=logp[np.arange(T - 1), ids[1:]], vocab=model.vocab)


def gradient_flow(model, text: Union[str, Any], T: Optional[int] = None) -> np.ndarray:
    """How much the last prediction depends on each earlier step: the
    lecture's vanishing-gradient picture.

    The first ``T + 1`` characters of ``text`` (all of it by default) are
    read from a zero state; L_T is the cross-entropy of predicting
    character T + 1 from the T before it. Returns float64 [L, T] whose
    ``[l, t - 1]`` is || dL_T / dh_t || for layer l's output at position
    t = 1..T (through every path: up the layers and along time). Computed
    by the C++ backward pass in evaluation mode. A vanilla RNN's curve
    typically falls off geometrically with T - t; GRU and LSTM hold on
    longer. Also ``model.gradient_flow(text, T)``."""
    return model.gradient_flow(text, T)


#: Features of a text position that a unit may track (:func:`unit_scores`).
FEATURES = ("inside quotes", "position in line", "inside parentheses", "start of a word")


def text_features(text: str) -> Dict[str, np.ndarray]:
    """Per character of ``text``, float [T]: inside double quotes (1/0;
    the quote marks count as inside), the column in its line, inside
    parentheses (1/0; the parentheses count), whether the character begins
    a word."""
    T = len(text)
    quotes, column, paren, word = (np.zeros(T) for _ in range(4))
    inside, col, depth, prev = False, 0, 0, " "
    for t, ch in enumerate(text):
        closing = ch == "\u201d" or (ch == "\"" and inside)
        if ch in "\"\u201c\u201d":
            inside = not closing
        if ch == "(":
            depth += 1
        quotes[t] = inside or closing
        column[t] = col
        paren[t] = depth > 0
        word[t] = ch.isalnum() and not prev.isalnum()
        if ch == ")":
            depth = max(0, depth - 1)
        col = 0 if ch == "\n" else col + 1
        prev = ch
    return dict(zip(FEATURES, (quotes, column, paren, word)))


def unit_scores(tr: Trace, layer: int = -1) -> Dict[str, np.ndarray]:
    """For each feature of :func:`text_features`, the Pearson correlation of
    each unit's hidden activation (layer ``layer``) with it along the text:
    float [H] per feature name (0 where a unit or the feature is constant).
    A unit tracking quotes scores near +-1 on "inside quotes"."""
    if tr.text is None:
        raise ValueError("unit_scores needs a trace of a str")
    a = tr.hidden[layer].astype(np.float64)  # [T, H]
    a = a - a.mean(axis=0)
    an = np.sqrt((a * a).sum(axis=0))
    out = {}
    for name, f in text_features(tr.text).items():
        f = f - f.mean()
        fn = math.sqrt(float((f * f).sum()))
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (a * f[:, None]).sum(axis=0) / (an * fn)
        out[name] = np.where(np.isfinite(r), r, 0.0)
    return out
