"""The HTML report (pycharrnn.report, ``pycharrnn report``): the data it
embeds against independent computations, that it is self-contained, and
in a real browser (headless Chromium over the DevTools protocol) that its
scripts draw what they should, a hover shows the model's predictions and
the page is not blank."""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pycharrnn import diagnostics as dg
from pycharrnn.report import TEMPERATURES, run_data, write_report
from pycharrnn.rundir import load_training

from browser import Browser, find_browser

LINES = ['"Come in," said Holmes (who was reading). "Sit down."\n',
         'The doctor (a tall man) nodded. "Thank you," he said.\n',
         '"What is it?" I asked, and he smiled (as he does).\n']


def _text(n: int = 300) -> str:
    rng = np.random.default_rng(3)
    return "".join(LINES[i] for i in rng.integers(0, len(LINES), n))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two short runs from the command line: a vanilla RNN and a GRU."""
    root = tmp_path_factory.mktemp("runs")
    data = root / "holmes.txt"
    data.write_text(_text(), encoding="utf-8")
    out = {}
    for cell in ("rnn", "gru"):
        out[cell] = root / cell
        p = subprocess.run([sys.executable, "-m", "pycharrnn", "train", str(data), "--out",
                            str(out[cell]), "--cell", cell, "--hidden-size", "32", "--steps",
                            "60", "--eval-every", "20", "--batch-size", "8", "--seq-length",
                            "32", "--quiet", "--sample-length", "0", "--threads", "1"],
                           cwd=root, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
    return out


def _page_data(path: Path) -> dict:
    page = path.read_text(encoding="utf-8")
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page,
                  re.S)
    return json.loads(m.group(1).replace("<\\/", "</"))


def test_the_data_means_what_it_says(runs):
    d = run_data(runs["gru"])
    model, ts = load_training(runs["gru"])
    ln2 = math.log(2)
    # Curves: every step and validation, in bits per character.
    assert d["history"]["step"] == list(range(1, 61))
    np.testing.assert_allclose(d["history"]["loss"], ts.history["loss"] / ln2, atol=1e-5)
    assert d["history"]["val_step"] == ts.val_history["step"].astype(int).tolist()
    assert {20, 40, 60} <= set(d["history"]["val_step"])  # and an epoch end
    np.testing.assert_allclose(d["history"]["val"], ts.val_history["val_loss"] / ln2,
                               atol=1e-5)
    # The smoothed curve is curves.png's centred mean: step i averages steps
    # i-k..i+k, k = min(window // 2, i // 4), cut at the end.
    w, loss = d["history"]["window"], ts.history["loss"] / ln2
    for i in (0, 7, 30, loss.size - 1):
        k = min(w // 2, i // 4)
        np.testing.assert_allclose(d["history"]["mean"][i],
                                   loss[i - k:min(loss.size, i + k + 1)].mean(), atol=1e-5)
    assert d["best_val_bpc"] == pytest.approx(ts.trainer["best_val_loss"] / ln2, abs=1e-4)
    # Samples: the model's own, at each temperature.
    assert [s["temperature"] for s in d["samples"]] == list(TEMPERATURES)
    assert d["samples"][1]["text"] == model.sample(300, temperature=0.8, seed=0)
    # The traced text is the end of the run's data (its validation part).
    text = d["trace"]["text"]
    assert _text().endswith(text) and len(text) == 1500
    ids = model.vocab.encode(text)
    loss, _ = model.loss(ids[None, :-1], ids[None, 1:])
    assert d["trace"]["loss_bpc"] == pytest.approx(loss / ln2, abs=1e-4)
    tr = dg.trace(model, text)
    assert d["trace"]["top_ids"] == tr.top_ids.tolist()
    hd = d["trace"]["hidden"]
    q = np.frombuffer(__import__("base64").b64decode(hd["data"]), np.int8).reshape(hd["shape"])
    np.testing.assert_allclose(q / 127 * hd["scale"][0], tr.hidden, atol=hd["scale"][0] / 127)
    # Units: sorted by |r|, each r the correlation unit_scores gives.
    scores = dg.unit_scores(tr, 0)
    rs = [u["r"] for u in d["units"]]
    assert rs and all(abs(a) >= abs(b) for a, b in zip(rs, rs[1:]))
    for u in d["units"]:
        assert u["r"] == pytest.approx(scores[u["feature"]][u["unit"]], abs=1e-4)
    # Gradient flow: the top layer's norms, t = T first.
    T = d["flow"]["T"]
    assert T == 100 and len(d["flow"]["trained"]) == T
    np.testing.assert_allclose(d["flow"]["trained"], dg.gradient_flow(model, ids, T)[-1][::-1])
    assert d["flow"]["vanilla"][-1] < 1e-3 * d["flow"]["vanilla"][0]


def test_long_runs_are_thinned(monkeypatch, runs):
    import pycharrnn.report.report as rp

    monkeypatch.setattr(rp, "CURVE_POINTS", 25)
    full = run_data(runs["rnn"])["history"]
    _, ts = load_training(runs["rnn"])
    h = rp._history(ts)
    assert len(h["step"]) == len(h["loss"]) == len(h["mean"]) == 25
    assert h["step"][0] == 1 and h["step"][-1] == 60
    # The trailing mean is of every step, not of the points kept.
    monkeypatch.setattr(rp, "CURVE_POINTS", 4000)
    assert h["mean"][-1] == full["mean"][-1]


def test_the_page_is_self_contained(runs, tmp_path):
    out = write_report([runs["rnn"], runs["gru"]], tmp_path / "r.html")
    page = out.read_text(encoding="utf-8")
    assert "<script src" not in page and "<link" not in page and "url(" not in page
    # The only URL is SVG's namespace name (never fetched).
    assert set(re.findall(r"https?://[^\s\"'`]+", page)) == {"http://www.w3.org/2000/svg"}
    data = _page_data(out)
    assert [r["name"] for r in data["runs"]] == ["rnn", "gru"]


def test_command_line(runs, tmp_path):
    own = tmp_path / "mine.txt"
    own.write_text('He said "yes" (twice).\n' * 40, encoding="utf-8")
    p = subprocess.run([sys.executable, "-m", "pycharrnn", "report", str(runs["gru"]),
                        "--text", str(own), "--out", str(tmp_path / "one.html"),
                        "--temperatures", "0.7", "1.2", "--sample-length", "50"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "wrote" in p.stdout
    d = _page_data(tmp_path / "one.html")["runs"][0]
    assert d["trace"]["text"] == own.read_text()[:1500] and d["trace"]["source"] == "given"
    assert [len(s["text"]) for s in d["samples"]] == [50, 50]
    p = subprocess.run([sys.executable, "-m", "pycharrnn", "report", "--compare",
                        str(runs["rnn"]), str(runs["gru"]), "--out", str(tmp_path / "c.html")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert len(_page_data(tmp_path / "c.html")["runs"]) == 2
    p = subprocess.run([sys.executable, "-m", "pycharrnn", "report", "--out", "x.html"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "give a RUN_DIR" in p.stderr
    p = subprocess.run([sys.executable, "-m", "pycharrnn", "report", str(tmp_path / "none"),
                        "--out", "x.html"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 1 and "none" in p.stderr
    assert not (tmp_path / "x.html").exists()


BROWSER = find_browser()


@pytest.mark.skipif(BROWSER is None, reason="no Chromium (CI installs Debian's chromium)")
def test_in_a_browser(runs, tmp_path):
    out = write_report([runs["rnn"], runs["gru"]], tmp_path / "report.html")
    data = _page_data(out)["runs"]
    b = Browser(BROWSER)
    try:
        b.open(out.as_uri())
        assert b.js("document.body.dataset.ready") == "1"  # the script ran to its end
        q = "document.querySelectorAll"
        # Loss chart: per run the steps and their mean, and a point per validation.
        assert b.js(f'{q}("#loss-chart path.series").length') == 4
        assert b.js(f'{q}("#loss-chart circle.dot").length') == \
            sum(len(r["history"]["val_step"]) for r in data)
        # Gradient flow: trained and untrained per run, and the vanilla RNN.
        assert b.js(f'{q}("#grad-chart path.series").length') == 5
        assert b.js(f'{q}("#samples pre.sample").length') == 2 * len(TEMPERATURES)
        assert b.js(f'{q}("#samples pre.sample")[1].textContent') == data[0]["samples"][1]["text"]
        stats = b.js('document.getElementById("run-stats").innerText')
        assert f"{data[1]['best_val_bpc']:.3f} bits/char, best validation" in stats
        text = data[0]["trace"]["text"]
        assert b.js(f'{q}("#neuron-text span[data-t]").length') == len(text)
        assert b.js(f'{q}("#units li").length') == len(data[0]["units"])
        # A hover shows the model's top-5 next characters after that character.
        t = 40
        b.js(f'document.querySelector("#neuron-text span[data-t=\'{t}\']")'
             '.scrollIntoView({block: "center"})')
        x, y = b.js(f'(() => {{ const r = document.querySelector("#neuron-text '
                    f'span[data-t=\'{t}\']").getBoundingClientRect(); '
                    'return [r.left + r.width / 2, r.top + r.height / 2]; })()')
        b.mouse_move(x, y)
        assert b.js('document.getElementById("tooltip").style.display') == "block"
        tip = b.js('document.getElementById("tooltip").innerText')
        assert f"(position {t})" in tip
        p0 = data[0]["trace"]["top_probs"][t][0]
        assert f"{100 * p0:.1f}%" in tip
        assert b.js(f'{q}("#tooltip .pred").length') == 5
        # Choosing a unit in the list recolours the text for it.
        before = b.js(f'Array.from({q}("#neuron-text span[data-t]")).slice(0, 200)'
                      '.map(s => s.style.background).join()')
        u = data[0]["units"][1]
        b.js(f'{q}("#units li")[1].scrollIntoView({{block: "center"}})')
        x, y = b.js(f'(() => {{ const r = {q}("#units li")[1].getBoundingClientRect(); '
                    'return [r.left + 10, r.top + r.height / 2]; })()')
        b.click(x, y)
        note = b.js('document.getElementById("neuron-note").textContent')
        assert f"unit {u['unit']} of layer {u['layer']}" in note
        after = b.js(f'Array.from({q}("#neuron-text span[data-t]")).slice(0, 200)'
                     '.map(s => s.style.background).join()')
        assert after != before
        b.js("window.scrollTo(0, 0)")
        png = b.screenshot()
        assert b.errors() == []
    finally:
        b.close()
    (tmp_path / "report.png").write_bytes(png)
    from PIL import Image  # matplotlib's dependency, in the test extra

    im = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    assert im.shape[0] > 1500 and im.shape[1] >= 1200
    background = np.array([246, 247, 249])
    share = (np.abs(im - background).sum(axis=2) > 30).mean()
    colours = len(np.unique(im.reshape(-1, 3) // 8, axis=0))
    assert share > 0.1 and colours > 100, (share, colours)
