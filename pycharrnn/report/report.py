"""A report on one or more runs: one self-contained HTML file (the data and
the JavaScript inlined; no server, no network) with

- the loss curves (training loss and its moving average, validation; bits
  per character against the step),
- samples at several temperatures,
- a text coloured by any chosen unit's activation, with the model's top-5
  next characters under the pointer and a list of the units that track a
  feature of the text best (inside quotes, position in line, ...),
- the gradient-flow picture, || dL_T / dh_t || against T - t, of each run's
  model beside a vanilla RNN of the same size (untrained), so that a
  vanishing gradient shows.

``pycharrnn report RUN_DIR [--text FILE] --out report.html`` and
``pycharrnn report --compare RUN_A RUN_B --out report.html`` write it;
:func:`write_report` is the same from Python.
"""

from __future__ import annotations

import base64
import html
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from .. import diagnostics as dg
from ..files import atomic_write
from ..metrics import SMOOTHING, rolling_mean
from ..model import CharRNN
from ..rundir import load_training, resolve, run_text

__all__ = ["write_report", "report_html", "run_data", "TEMPERATURES"]

TEMPERATURES = (0.5, 0.8, 1.0)
#: Characters of text traced for the neuron view (the browser colours each).
TRACE_CHARS = 1500
#: Steps back of the gradient-flow picture.
FLOW_STEPS = 100
#: Units listed per feature as the most "interpretable".
TOP_UNITS = 6
#: At most this many points of each training curve (a long run is thinned
#: evenly after its trailing mean is taken over every step).
CURVE_POINTS = 4000

PathLike = Union[str, Path]


def _history(ts) -> Dict[str, List[float]]:
    h, v = ts.history, ts.val_history
    ln2 = math.log(2)
    out = {"step": h["step"].astype(int).tolist() if len(h.get("step", [])) else [],
           "loss": [], "mean": [], "window": 1, "val_step": [], "val": []}
    if out["step"]:
        loss = np.asarray(h["loss"], np.float64) / ln2
        out["loss"] = [round(float(x), 5) for x in loss]
        # The rolling mean curves.png draws too, over every step.
        w = min(SMOOTHING, loss.size)
        mean = np.asarray(rolling_mean(loss, w))
        keep = np.arange(loss.size)
        if loss.size > CURVE_POINTS:
            keep = np.unique(np.linspace(0, loss.size - 1, CURVE_POINTS).round().astype(int))
        out["step"] = [out["step"][i] for i in keep]
        out["loss"] = [out["loss"][i] for i in keep]
        out["mean"] = [round(float(x), 5) for x in mean[keep]]
        out["window"] = w
    if len(v.get("step", [])):
        out["val_step"] = v["step"].astype(int).tolist()
        out["val"] = [round(float(x) / ln2, 5) for x in v["val_loss"]]
    return out


def _run_text(run_dir: Path, model: CharRNN, chars: int) -> Optional[str]:
    """The tail of the run's training data (its validation text), when the
    run directory says where the data is and it is there."""
    try:
        text, _ = run_text(run_dir)
    except Exception:  # noqa: BLE001 - no run.json, moved data, no corpus package
        return None
    return _known(model, text[-chars:])


def _known(model: CharRNN, text: str) -> str:
    """``text`` without the characters the model does not know."""
    return "".join(c for c in text if c in model.vocab)


def _b64_int8(a: np.ndarray) -> Dict[str, Any]:
    """Activations [L, T, H] as int8 (per layer scale) in base64."""
    scale = np.abs(a).reshape(a.shape[0], -1).max(axis=1)
    scale = np.where(scale > 0, scale, 1.0)
    q = np.clip(np.rint(a / scale[:, None, None] * 127), -127, 127).astype(np.int8)
    return {"shape": list(a.shape), "scale": [float(s) for s in scale],
            "data": base64.b64encode(q.tobytes()).decode("ascii")}


def _flow_curve(model: CharRNN, ids: np.ndarray, T: int) -> List[float]:
    """|| dL_T / dh_t || of the top layer for t = T..1 (index 0: t = T)."""
    flow = dg.gradient_flow(model, ids, T=T)[-1]
    return [float(f) for f in flow[::-1]]


def run_data(path: PathLike, text: Optional[str] = None, *, name: Optional[str] = None,
             temperatures: Sequence[float] = TEMPERATURES, sample_length: int = 300,
             trace_chars: int = TRACE_CHARS, seed: int = 0) -> Dict[str, Any]:
    """What the report shows of one run (a run directory or a training
    checkpoint), as JSON-able data."""
    p = resolve(path)
    model, ts = load_training(p)
    if model.vocab is None:
        raise ValueError(f"{p}: the report needs a model with a vocabulary")
    run_dir = p.parent
    title = name or (run_dir.name if p.name == "latest.npz" else str(p))
    samples = [{"temperature": float(t),
                "text": model.sample(sample_length, temperature=float(t), seed=seed)}
               for t in temperatures]
    source = "given"
    if text is not None:
        text = _known(model, text[:4 * trace_chars])[:trace_chars]
    if not text:
        text = _run_text(run_dir, model, trace_chars)
        source = "the end of the run's text (its validation part)"
    if not text:
        text = model.sample(trace_chars, temperature=0.8, seed=seed)
        source = "the model's own sample (the run's text was not found)"
    if len(text) < 2:
        raise ValueError("the text to trace has fewer than 2 characters the model knows")
    tr = dg.trace(model, text)
    scores = []
    for layer in range(model.num_layers):
        for feat, r in dg.unit_scores(tr, layer).items():
            for u in np.argsort(-np.abs(r), kind="stable")[:TOP_UNITS]:
                if abs(r[u]) >= 0.1:  # a feature the text lacks scores 0 everywhere
                    scores.append({"layer": layer, "unit": int(u), "feature": feat,
                                   "r": round(float(r[u]), 4)})
    scores.sort(key=lambda s: -abs(s["r"]))
    ids = tr.ids
    T = int(min(FLOW_STEPS, ids.size - 1))
    vanilla = CharRNN(model.vocab, hidden_size=model.hidden_size, num_layers=model.num_layers,
                      cell="rnn", embedding_dim=model.embedding_dim, dtype="float64", seed=seed)
    fresh = CharRNN(model.vocab, hidden_size=model.hidden_size, num_layers=model.num_layers,
                    cell=model.cell, nonlinearity=model.nonlinearity,
                    embedding_dim=model.embedding_dim, dtype="float64", seed=seed)
    t = ts.trainer
    vocab = list(model.vocab.chars)
    return {
        "name": title, "model": repr(model), "cell": model.cell, "layers": model.num_layers,
        "hidden": model.hidden_size, "step": int(t["step"]),
        "best_val_bpc": None if t.get("best_val_loss") is None else
        round(float(t["best_val_loss"]) / math.log(2), 4),
        "history": _history(ts), "samples": samples,
        "trace": {"text": text, "source": source, "vocab": vocab,
                  "hidden": _b64_int8(tr.hidden.astype(np.float64)),
                  "top_ids": tr.top_ids.tolist(),
                  "top_probs": np.round(tr.top_probs, 4).tolist(),
                  "loss_bpc": round(tr.loss / math.log(2), 4)},
        "units": scores[:TOP_UNITS * 3],
        "flow": {"T": T, "trained": _flow_curve(model, ids, T),
                 "init": _flow_curve(fresh, ids, T), "vanilla": _flow_curve(vanilla, ids, T)},
    }


def report_html(runs: List[Dict[str, Any]]) -> str:
    """The page for ``runs`` (:func:`run_data` of each)."""
    data = json.dumps({"runs": runs}, separators=(",", ":")).replace("</", "<\\/")
    title = " vs ".join(r["name"] for r in runs)
    page, script = (resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
                    for name in ("page.html", "report.js"))
    return (page.replace("__TITLE__", html.escape(title))
            .replace("__DATA__", data).replace("__SCRIPT__", script))


def write_report(paths: Sequence[PathLike], out: PathLike, text: Optional[str] = None,
                 **kw: Any) -> Path:
    """Write the report on the runs ``paths`` (one, or several to compare)
    to ``out``, atomically. ``text``: what the neuron view reads (default:
    the end of each run's training text). Returns ``out``."""
    if not paths:
        raise ValueError("give at least one run")
    runs = [run_data(p, text, **kw) for p in paths]
    page = report_html(runs).encode("utf-8")
    out = Path(out)
    atomic_write(out, lambda f: f.write(page))
    return out
