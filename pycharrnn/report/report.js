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

