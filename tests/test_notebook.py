"""The Sherlock lab as a notebook (examples/sherlock_lab.ipynb) runs top to
bottom under nbclient, on a small budget put into its "parameters" cell, and
shows what a student should see: the training's progress, the curves (a PNG),
the final losses in bits per character, samples at three temperatures, the
gradient-flow picture and the report (HTML).

Needs the notebook extra's packages (nbclient, nbformat, ipykernel; CI
installs them for this test) and skips without them. The kernel is this
interpreter (ipykernel's own kernel spec, not whatever a user's Jupyter
folders name "python3"), and it runs in tmp_path: from inside the checkout
``import pycharrnn`` would find the source folder, which has no compiled core.
"""

from __future__ import annotations

import base64
import importlib.util
import math
import random
import re
import struct
import sys
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402  (nbclient's dependency)
from jupyter_client.manager import KernelManager  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "sherlock_lab.ipynb"
SHERLOCK = Path(__file__).resolve().parents[2] / "shared" / "data" / "sherlock.txt"
#: The small budget: a few dozen steps of small models.
BUDGET = {"STEPS": 30, "HIDDEN": 32, "SEED": 0}
#: Characters of the text the test trains on (of sherlock.txt: from the start
#: of "The Adventures of Sherlock Holmes").
TEXT_CHARS = 300_000
TEMPERATURES = ("0.5", "0.8", "1.0")
MODELS = ("RNN (tanh)", "GRU")
CELL_TIMEOUT = 600  # seconds per cell: generous, but a hung kernel still ends


def english_like(n: int, seed: int = 0) -> str:
    """About ``n`` characters of made-up prose: sentences of common words,
    dialogue in quotes, commas, paragraphs of indented lines."""
    words = ("the of and to a in that it was he i his you had my with as at for "
             "which but not be is on her said upon by have from this one all there "
             "man so we were Holmes there no him very what an little could me then "
             "would been out some into time any Watson door room house night should "
             "street hand face eyes back nothing matter case lady letter window").split()
    rng = random.Random(seed)
    paras, size = [], 0
    while size < n:
        sentences = []
        for _ in range(rng.randint(2, 6)):
            w = [rng.choice(words) for _ in range(rng.randint(4, 14))]
            for i in range(1, len(w) - 1):
                if rng.random() < 0.08:
                    w[i] += ","
            s = " ".join(w)
            s = s[0].upper() + s[1:] + rng.choice(".....?!")
            if rng.random() < 0.3:
                s = f'"{s}" said {rng.choice(["Holmes", "Watson", "the lady"])}.'
            sentences.append(s)
        lines, line = [], "    "
        for word in " ".join(sentences).split(" "):
            if len(line) + len(word) > 70:
                lines.append(line.rstrip())
                line = "    "
            line += word + " "
        lines.append(line.rstrip())
        paras.append("\n".join(lines))
        size += len(paras[-1]) + 2
    return "\n\n".join(paras) + "\n"


@pytest.fixture(scope="module")
def kernel_spec():
    """ipykernel's own "python3" kernel spec (this interpreter)."""
    ksm = KernelSpecManager(kernel_dirs=[])  # only the native spec: sys.executable
    if "python3" not in ksm.find_kernel_specs():
        pytest.skip("no ipykernel kernel spec for this interpreter")
    return ksm


def text_file(tmp_path: Path) -> Path:
    """The text to train on: part of ../shared/data/sherlock.txt when it is
    there, else made-up English."""
    if SHERLOCK.is_file():
        text = SHERLOCK.read_text(encoding="utf-8")
        start = max(0, text.find("A SCANDAL IN BOHEMIA"))
        text = text[start:start + TEXT_CHARS]
    else:
        text = english_like(TEXT_CHARS // 3)
    path = tmp_path / "input.txt"
    path.write_text(text, encoding="utf-8")
    return path


def set_parameters(nb, **values) -> None:
    """Replace the values of the parameters cell (tagged "parameters"), each
    name's assignment line in place; every name must be there."""
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "the notebook needs exactly one cell tagged 'parameters'"
    src = cells[0].source
    for name, value in values.items():
        src, n = re.subn(rf"^{name}\s*=.*$", f"{name} = {value!r}  # tests/test_notebook.py",
                         src, flags=re.M)
        assert n == 1, f"the parameters cell has no line '{name} = ...'"
    cells[0].source = src


def execute(nb, cwd: Path, ksm: KernelSpecManager):
    """Run every cell of ``nb`` (in place) with the kernel started in ``cwd``;
    an error in a cell raises nbclient's CellExecutionError."""
    km = KernelManager(kernel_name="python3", kernel_spec_manager=ksm)
    client = nbclient.NotebookClient(nb, km=km, timeout=CELL_TIMEOUT,
                                     resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb


def cell(nb, cell_id: str):
    found = [c for c in nb.cells if c.get("id") == cell_id]
    assert found, f"the notebook has no cell {cell_id!r}"
    return found[0]


def stdout(c) -> str:
    return "".join(o.text for o in c.outputs if o.output_type == "stream" and o.name == "stdout")


def outputs_of(c, mime: str) -> list:
    return [o.data[mime] for o in c.outputs
            if o.output_type in ("display_data", "execute_result") and mime in o.data]


def png_size(data: str):
    """(width, height) of a base64 PNG."""
    raw = base64.b64decode(data)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", raw[16:24])


def check_outputs(nb, prefix: str) -> None:
    """What a student sees, cell by cell."""
    errors = [(c.get("id"), o.ename) for c in nb.cells if c.cell_type == "code"
              for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code"), \
        "a code cell did not run"

    kernel = stdout(cell(nb, "test-kernel"))
    assert f"prefix={prefix}\n" in kernel, f"the kernel is not this interpreter: {kernel!r}"

    steps = BUDGET["STEPS"]
    for cid in ("train-rnn", "train-gru"):
        out = stdout(cell(nb, cid))
        assert re.search(rf"step +{steps}  validation loss \d+\.\d+ \(\d+\.\d+ bits/char\)",
                         out), out
        assert f"done: step {steps}," in out, out
        bars = outputs_of(cell(nb, cid), "application/vnd.jupyter.widget-view+json") + \
            [o.text for o in cell(nb, cid).outputs
             if o.output_type == "stream" and o.name == "stderr" and "training:" in o.text]
        if importlib.util.find_spec("tqdm") is not None:  # else progress lines only
            assert bars, f"{cid}: no progress bar (tqdm's widget or text)"

    for cid, (w_min, h_min) in (("curves", (600, 300)), ("flow", (600, 250))):
        pngs = outputs_of(cell(nb, cid), "image/png")
        assert len(pngs) == 1, f"{cid}: {len(pngs)} pictures"
        w, h = png_size(pngs[0])
        assert w >= w_min and h >= h_min, (cid, w, h)

    losses = stdout(cell(nb, "losses"))
    for label in MODELS:
        m = re.search(rf"^{re.escape(label)} +[\d,]+ parameters +training loss (\d+\.\d+) "
                      r"bits/char +validation loss (\d+\.\d+) bits/char$", losses, re.M)
        assert m, losses
        for bits in map(float, m.groups()):
            assert 0 < bits < 8, losses  # better than nothing, below a uniform guess's ~6.5

    samples = stdout(cell(nb, "samples"))
    heads = [f"--- {label}, temperature {t} ---" for label in MODELS for t in TEMPERATURES]
    assert [h for h in heads if h in samples] == heads, samples
    for head, text in zip(heads, re.split(r"^--- .* ---$", samples, flags=re.M)[1:]):
        assert len(text) > 250 and text.strip(), (head, text)  # 250 characters each

    flow = stdout(cell(nb, "flow"))
    for label in MODELS:
        m = re.search(rf"^{re.escape(label)} +35 characters back, the gradient is "
                      r"(\S+) of its size", flow, re.M)
        assert m and math.isfinite(float(m.group(1))), flow

    pages = outputs_of(cell(nb, "report"), "text/html")
    assert len(pages) == 1
    page = pages[0]
    assert "<iframe srcdoc=" in page and "pycharrnn report: rnn vs gru" in page, page[:500]
    assert "sherlock_report.html" in page


def test_sherlock_lab_notebook(tmp_path, kernel_spec):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for c in nb.cells:  # the committed notebook is clean
        if c.cell_type == "code":
            assert not c.outputs and c.execution_count is None, f"{c.id}: outputs saved"
    set_parameters(nb, TEXT=str(text_file(tmp_path)), **BUDGET)
    nb.cells.insert(0, nbformat.v4.new_code_cell(
        'import sys\nprint(f"executable={sys.executable}\\nprefix={sys.prefix}")',
        id="test-kernel"))
    execute(nb, tmp_path, kernel_spec)
    check_outputs(nb, sys.prefix)
    out = tmp_path / "sherlock_lab"
    for run in ("rnn", "gru"):
        assert (out / run / "run.json").is_file() and (out / run / "best.npz").is_file()
    assert (out / "sherlock_report.html").stat().st_size > 10_000
