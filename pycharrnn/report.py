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
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from . import diagnostics as dg
from .files import atomic_write, read_text
from .model import CharRNN
from .rundir import load_training, read_run_info, resolve

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
        # A trailing rolling mean over about a fiftieth of the run (at most 200 steps).
        w = int(min(200, max(1, loss.size // 50)))
        c = np.concatenate([[0.0], np.cumsum(loss)])
        n = np.minimum(np.arange(1, loss.size + 1), w)
        mean = (c[1:] - c[np.arange(1, loss.size + 1) - n]) / n
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
        info = read_run_info(run_dir)
        if info.get("data"):
            text = read_text(info["data"])
        elif info.get("corpus"):
            from .corpus import load_corpus

            text = load_corpus(info["corpus"])
        else:
            return None
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
    return (_PAGE.replace("__TITLE__", html.escape(title))
            .replace("__DATA__", data).replace("__SCRIPT__", _SCRIPT))


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


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pycharrnn report: __TITLE__</title>
<style>
:root { --ink:#1d2430; --muted:#5b6575; --line:#d9dee7; --bg:#f6f7f9; --card:#fff;
        --a:#2364aa; --b:#d1495b; --c:#3a9e6f; --d:#e09f3e; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif;
       color:var(--ink); background:var(--bg); }
header { background:#1d2430; color:#fff; padding:18px 32px; }
header h1 { margin:0; font-size:22px; font-weight:600; }
header p { margin:4px 0 0; color:#c9d1de; font-size:13px; }
main { max-width:1180px; margin:0 auto; padding:20px 32px 48px; }
section { background:var(--card); border:1px solid var(--line); border-radius:10px;
          padding:18px 22px; margin:18px 0; }
h2 { margin:0 0 10px; font-size:17px; }
.note { color:var(--muted); font-size:13px; margin:4px 0 10px; }
.grid { display:grid; grid-template-columns:repeat(auto-fit, minmax(320px, 1fr)); gap:14px; }
.stat { display:inline-block; margin-right:22px; }
.stat b { font-size:18px; }
svg text { font:12px system-ui, sans-serif; fill:var(--muted); }
.legend span { display:inline-block; margin-right:16px; font-size:13px; }
.legend i { display:inline-block; width:18px; height:3px; vertical-align:middle;
            margin-right:6px; border-radius:2px; }
pre.sample { white-space:pre-wrap; font:13px/1.45 ui-monospace, Menlo, Consolas, monospace;
             background:var(--bg); border-radius:6px; padding:10px 12px; margin:6px 0 0;
             max-height:260px; overflow:auto; }
.controls { display:flex; flex-wrap:wrap; gap:14px; align-items:center; margin-bottom:10px; }
.controls label { font-size:13px; color:var(--muted); }
select, input[type=number] { font:inherit; padding:2px 6px; }
#neuron-text { font:14px/1.9 ui-monospace, Menlo, Consolas, monospace; white-space:pre-wrap;
               word-break:break-all; background:#fcfcfd; border:1px solid var(--line);
               border-radius:6px; padding:10px 12px; max-height:420px; overflow:auto; }
#neuron-text span { border-radius:2px; cursor:default; }
#neuron-text span.nl { color:#99a; }
#units li { cursor:pointer; padding:2px 4px; border-radius:4px; list-style:none; }
#units li:hover, #units li.on { background:#eef3fb; }
#units { padding:0; margin:0; font-size:13px; max-height:380px; overflow:auto; }
#tooltip { position:fixed; pointer-events:none; background:#1d2430; color:#fff;
           font:12px/1.5 ui-monospace, Menlo, monospace; padding:8px 10px; border-radius:6px;
           display:none; z-index:10; min-width:150px; box-shadow:0 4px 14px rgba(0,0,0,.25); }
#tooltip .bar { display:inline-block; height:8px; background:#7fb2ff; margin-left:6px;
                vertical-align:middle; border-radius:2px; }
.scale { display:flex; align-items:center; gap:6px; font-size:12px; color:var(--muted); }
.scale .ramp { width:160px; height:10px; border-radius:3px;
  background:linear-gradient(90deg, rgb(35,100,170), #fff, rgb(209,73,91)); }
</style></head>
<body>
<header><h1>pycharrnn report: __TITLE__</h1><p id="subtitle"></p></header>
<main>
<section id="summary"><h2>Runs</h2><div id="run-stats"></div></section>
<section id="loss"><h2>Loss (bits per character)</h2>
<p class="note">Training loss of each step (faint), its trailing mean, and the validation
loss (points) against the training step.</p>
<div class="legend" id="loss-legend"></div><div id="loss-chart"></div></section>
<section id="samples-section"><h2>Samples</h2>
<p class="note">The same seed at each temperature: lower is safer, higher is more varied.</p>
<div id="samples" class="grid"></div></section>
<section id="neurons"><h2>Inside the network: one unit along a text</h2>
<p class="note" id="neuron-note"></p>
<div class="controls">
<label>run <select id="run-pick"></select></label>
<label>layer <select id="layer-pick"></select></label>
<label>unit <input type="number" id="unit-pick" min="0" value="0" style="width:80px"></label>
<div class="scale"><span>-1</span><div class="ramp"></div><span>+1</span></div>
</div>
<div class="grid" style="grid-template-columns: 3fr 1fr">
<div id="neuron-text"></div>
<div><p class="note" style="margin-top:0">Units that follow a feature of the text most
closely (correlation r of the activation with it); click one.</p><ul id="units"></ul></div>
</div></section>
<section id="flow"><h2>Gradient flow: how far back the last prediction reaches</h2>
<p class="note">|| dL<sub>T</sub> / dh<sub>t</sub> || of the top layer against the steps back
T - t, on a log scale, for the trained model, the same cell untrained, and a vanilla tanh RNN
of the same size (untrained). A line that falls steeply is a vanishing gradient.</p>
<div class="legend" id="flow-legend"></div><div id="grad-chart"></div></section>
</main>
<div id="tooltip"></div>
<script type="application/json" id="report-data">__DATA__</script>
<script>__SCRIPT__</script>
</body></html>
"""

_SCRIPT = r"""
(function () {
"use strict";
const DATA = JSON.parse(document.getElementById("report-data").textContent);
const RUNS = DATA.runs;
const COLORS = ["#2364aa", "#d1495b", "#3a9e6f", "#e09f3e", "#7b4bb7"];
const NS = "http://www.w3.org/2000/svg";
function el(tag, attrs, parent) {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}
function h(tag, text, parent, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = text;
  if (cls) e.className = cls;
  if (parent) parent.appendChild(e);
  return e;
}
function fmt(x) {
  if (Number.isInteger(x)) return String(x);
  return Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 1 ? x.toFixed(2) : x.toPrecision(2);
}
function niceTicks(lo, hi, n) {
  const span = hi - lo || 1, step0 = span / n, mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map(m => m * mag).find(s => span / s <= n) || 10 * mag;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step) out.push(v);
  return out;
}
// A line chart: series [{xs, ys, color, width, opacity, dots}], log: y on log10.
function chart(host, series, opts) {
  const W = host.clientWidth || 900, H = opts.height || 300;
  const m = {l: 58, r: 16, t: 10, b: 40};
  const svg = el("svg", {width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img"}, host);
  const tf = v => opts.log ? Math.log10(Math.max(v, 1e-300)) : v;
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const s of series) s.xs.forEach((x, i) => {
    const y = tf(s.ys[i]);
    if (!isFinite(y)) return;
    x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  });
  if (!isFinite(x0)) { x0 = 0; x1 = 1; y0 = 0; y1 = 1; }
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
  const X = x => m.l + (x - x0) / (x1 - x0) * (W - m.l - m.r);
  const Y = y => H - m.b - (y - y0) / (y1 - y0) * (H - m.t - m.b);
  const yt = opts.log ? niceTicks(Math.floor(y0), Math.ceil(y1), 6).filter(v => v >= y0 && v <= y1
                                                                          && Number.isInteger(v))
                      : niceTicks(y0, y1, 6);
  for (const v of yt) {
    el("line", {x1: m.l, x2: W - m.r, y1: Y(v), y2: Y(v), stroke: "#e6e9ef"}, svg);
    el("text", {x: m.l - 6, y: Y(v) + 4, "text-anchor": "end"}, svg).textContent =
      opts.log ? "1e" + v : fmt(v);
  }
  for (const v of niceTicks(x0, x1, 8)) {
    el("text", {x: X(v), y: H - m.b + 16, "text-anchor": "middle"}, svg).textContent = fmt(v);
  }
  el("line", {x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b, stroke: "#9aa3b2"}, svg);
  el("line", {x1: m.l, x2: m.l, y1: m.t, y2: H - m.b, stroke: "#9aa3b2"}, svg);
  el("text", {x: (W + m.l) / 2, y: H - 6, "text-anchor": "middle"}, svg).textContent = opts.xlabel;
  const yl = el("text", {x: 14, y: (H - m.b) / 2, "text-anchor": "middle",
                         transform: `rotate(-90 14 ${(H - m.b) / 2})`}, svg);
  yl.textContent = opts.ylabel;
  for (const s of series) {
    const pts = s.xs.map((x, i) => [X(x), Y(tf(s.ys[i]))]).filter(p => isFinite(p[1]));
    if (s.dots) {
      for (const p of pts) el("circle", {cx: p[0], cy: p[1], r: 4, fill: s.color,
                                          stroke: "#fff", "stroke-width": 1.5,
                                          class: "dot"}, svg);
    } else if (pts.length) {
      el("path", {d: "M" + pts.map(p => p[0].toFixed(1) + "," + p[1].toFixed(1)).join("L"),
                  fill: "none", stroke: s.color, "stroke-width": s.width || 2,
                  opacity: s.opacity || 1, "stroke-dasharray": s.dash || "",
                  class: "series"}, svg);
    }
  }
  return svg;
}
function legend(host, items) {
  for (const it of items) {
    const s = h("span", null, host);
    const i = h("i", null, s); i.style.background = it.color;
    if (it.dash) i.style.background = `repeating-linear-gradient(90deg, ${it.color} 0 5px,
                                                                 transparent 5px 8px)`;
    s.appendChild(document.createTextNode(it.label));
  }
}

// --- summary
document.getElementById("subtitle").textContent = RUNS.map(r => r.model).join("  |  ");
const stats = document.getElementById("run-stats");
RUNS.forEach((r, k) => {
  const d = h("div", null, stats);
  const name = h("div", null, d); name.innerHTML = "";
  const b = h("b", r.name, name); b.style.color = COLORS[k % COLORS.length];
  name.appendChild(document.createTextNode("  " + r.model));
  const addStat = (label, v) => { const s = h("span", null, d, "stat");
    h("b", v, s); s.appendChild(document.createTextNode(" " + label)); };
  addStat("steps", String(r.step));
  if (r.best_val_bpc !== null) addStat("bits/char, best validation", r.best_val_bpc.toFixed(3));
  addStat("bits/char on the traced text", r.trace.loss_bpc.toFixed(3));
});

// --- loss curves
(function () {
  const series = [], items = [];
  RUNS.forEach((r, k) => {
    const c = COLORS[k % COLORS.length], hist = r.history;
    const who = RUNS.length > 1 ? r.name + ": " : "";
    if (hist.step.length) {
      series.push({xs: hist.step, ys: hist.loss, color: c, width: 1, opacity: 0.25});
      series.push({xs: hist.step, ys: hist.mean, color: c, width: 2.2});
      items.push({label: who + `training (mean of ${hist.window} steps)`, color: c});
    }
    if (hist.val_step.length) {
      series.push({xs: hist.val_step, ys: hist.val, color: c, dots: true});
      items.push({label: who + "validation", color: c, dash: true});
    }
  });
  legend(document.getElementById("loss-legend"), items);
  chart(document.getElementById("loss-chart"), series,
        {xlabel: "training step", ylabel: "bits per character", height: 320});
})();

// --- samples
(function () {
  const host = document.getElementById("samples");
  RUNS.forEach(r => r.samples.forEach(s => {
    const d = h("div", null, host, "sample-card");
    h("b", (RUNS.length > 1 ? r.name + ", " : "") + "temperature " + s.temperature, d);
    h("pre", s.text, d, "sample");
  }));
})();

// --- the neuron view
const tip = document.getElementById("tooltip");
const runPick = document.getElementById("run-pick"), layerPick = document.getElementById("layer-pick");
const unitPick = document.getElementById("unit-pick"), textHost = document.getElementById("neuron-text");
RUNS.forEach((r, k) => { const o = h("option", r.name, runPick); o.value = k; });
const decoded = RUNS.map(r => {
  const hd = r.trace.hidden, raw = atob(hd.data), q = new Int8Array(raw.length);
  for (let i = 0; i < raw.length; i++) q[i] = raw.charCodeAt(i) << 24 >> 24;
  return {q, shape: hd.shape, scale: hd.scale};
});
let cur = {run: 0, layer: 0, unit: 0};
function act(run, layer, t, unit) {
  const d = decoded[run], [L, T, H] = d.shape;
  return d.q[(layer * T + t) * H + unit] / 127;  // in [-1, 1] of the layer's scale
}
function color(v) {
  const a = Math.min(1, Math.abs(v)), base = v >= 0 ? [209, 73, 91] : [35, 100, 170];
  const mix = base.map(c => Math.round(255 + (c - 255) * a));
  return `rgb(${mix[0]},${mix[1]},${mix[2]})`;
}
function drawText() {
  const r = RUNS[cur.run], text = r.trace.text;
  textHost.textContent = "";
  const frag = document.createDocumentFragment();
  for (let t = 0; t < text.length; t++) {
    const s = document.createElement("span");
    s.dataset.t = t;
    const ch = text[t];
    if (ch === "\n") { s.className = "nl"; s.textContent = "\u21b5\n"; }
    else s.textContent = ch;
    s.style.background = color(act(cur.run, cur.layer, t, cur.unit));
    frag.appendChild(s);
  }
  textHost.appendChild(frag);
  document.getElementById("neuron-note").textContent =
    `Each character's background is unit ${cur.unit} of layer ${cur.layer} after reading it ` +
    `(red positive, blue negative; layer scale ${decoded[cur.run].scale[cur.layer].toPrecision(3)}). ` +
    `Text: ${r.trace.source}, ${text.length} characters. Point at a character for the five ` +
    `characters the model expects next.`;
}
function fillLayers() {
  layerPick.textContent = "";
  for (let l = 0; l < RUNS[cur.run].layers; l++) { const o = h("option", String(l), layerPick); o.value = l; }
  layerPick.value = cur.layer;
  unitPick.max = RUNS[cur.run].hidden - 1;
}
function fillUnits() {
  const host = document.getElementById("units");
  host.textContent = "";
  for (const u of RUNS[cur.run].units) {
    const li = h("li", `layer ${u.layer} unit ${u.unit}: ${u.feature} (r = ${u.r.toFixed(2)})`, host);
    li.dataset.layer = u.layer; li.dataset.unit = u.unit;
    if (u.layer === cur.layer && u.unit === cur.unit) li.className = "on";
    li.addEventListener("click", () => select(cur.run, u.layer, u.unit));
  }
}
function select(run, layer, unit) {
  cur = {run, layer, unit};
  runPick.value = run; fillLayers(); unitPick.value = unit; fillUnits(); drawText();
}
runPick.addEventListener("change", () => { const u = RUNS[+runPick.value].units[0];
  select(+runPick.value, u ? u.layer : 0, u ? u.unit : 0); });
layerPick.addEventListener("change", () => select(cur.run, +layerPick.value, Math.min(cur.unit, RUNS[cur.run].hidden - 1)));
unitPick.addEventListener("change", () => {
  const u = Math.max(0, Math.min(RUNS[cur.run].hidden - 1, Math.floor(+unitPick.value || 0)));
  select(cur.run, cur.layer, u);
});
function show(char) { return char === "\n" ? "\u21b5" : char === " " ? "\u2423" : char; }
textHost.addEventListener("mouseover", e => {
  const s = e.target.closest("span[data-t]");
  if (!s) return;
  const t = +s.dataset.t, tr = RUNS[cur.run].trace;
  tip.textContent = "";
  h("div", `after "${show(tr.text[t])}" (position ${t}): activation ` +
           act(cur.run, cur.layer, t, cur.unit).toFixed(2), tip);
  tr.top_ids[t].forEach((id, i) => {
    const row = h("div", null, tip, "pred");
    row.appendChild(document.createTextNode(`${show(tr.vocab[id])}  ${(100 * tr.top_probs[t][i]).toFixed(1).padStart(5)}%`));
    const bar = h("span", null, row, "bar"); bar.style.width = Math.round(80 * tr.top_probs[t][i]) + "px";
  });
  tip.style.display = "block";
  const r = s.getBoundingClientRect();
  tip.style.left = Math.min(window.innerWidth - 200, r.left) + "px";
  tip.style.top = (r.bottom + 6) + "px";
});
textHost.addEventListener("mouseleave", () => { tip.style.display = "none"; });
const first = RUNS[0].units[0];
select(0, first ? first.layer : 0, first ? first.unit : 0);

// --- gradient flow
(function () {
  const series = [], items = [];
  RUNS.forEach((r, k) => {
    const c = COLORS[k % COLORS.length], xs = r.flow.trained.map((_, i) => i);
    const who = RUNS.length > 1 ? r.name + " " : "";
    series.push({xs, ys: r.flow.trained, color: c, width: 2.4});
    items.push({label: `${who}${r.cell}, trained`, color: c});
    series.push({xs, ys: r.flow.init, color: c, width: 1.5, dash: "5 3"});
    items.push({label: `${who}${r.cell}, untrained`, color: c, dash: true});
  });
  const r0 = RUNS[0], xs0 = r0.flow.vanilla.map((_, i) => i);
  series.push({xs: xs0, ys: r0.flow.vanilla, color: "#8a93a3", width: 1.8, dash: "2 3"});
  items.push({label: `vanilla tanh RNN ${r0.layers}x${r0.hidden}, untrained`, color: "#8a93a3", dash: true});
  legend(document.getElementById("flow-legend"), items);
  chart(document.getElementById("grad-chart"), series,
        {xlabel: "steps back (T - t)", ylabel: "|| dL_T / dh_t ||", log: true, height: 300});
})();
document.body.dataset.ready = "1";
})();
"""
