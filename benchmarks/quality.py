"""Model quality per hour: the validation loss `pycharrnn train` reaches in a
time budget, end to end, with each budget's recipe (pycharrnn.recipes) and,
for comparison (--baseline BUDGET), the plain defaults without a recipe
(--recipe none: 1 x 256 one-hot, Adam 2e-3, a constant rate; a GRU, the
README's demo before the recipes, unless --baseline-cell says otherwise).

    python benchmarks/quality.py [--data FILE ...] [--budgets 180 900] [--long]
        [--baseline 180] [--torch 180] [--out DIR]

For each text and budget it runs `pycharrnn train TEXT --time BUDGET` in a
fresh process (one at a time: they share the cores), then reads the run's
metrics.jsonl: validation loss (nats/char over the text's last 10%, read with
the state carried: pycharrnn.evaluation.evaluate) against wall time since the log
opened, and the training loss (the moving average) at the end. It also times
the recipe's bare training step (forward, backward, update on one batch, no
validation or checkpoints) in the same run: the step rate the kernel allows,
against which the run's own rate shows its overheads.

Each recipe run is also measured the way nanoGPT's estimate_loss measures
its character model (pycharrnn.evaluation.window_loss: 200 x 64 random
windows of 256 characters of the same validation text, each from a cold
state, every position counted), so that the table can be read against
published nanoGPT numbers ("window val"; higher than the one-stream figure:
the first characters of a window have little context).

--torch BUDGET adds PyTorch on the same recipe and budget (its nn.GRU/LSTM, AdamW,
the same warm-up and cosine to the deadline, validated with the same
evaluate() on the weights copied over; dropout only where torch has it:
between layers and on the output, per element, no weight drop or locked
masks), so the two are compared on one yardstick.

Writes DIR/quality.json (every point, and the CPU it ran on: a virtual
machine's CPU changes between runs, and with it the epochs a budget buys)
and DIR/quality.png (validation loss
against minutes, one panel per text), and prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
import pycharrnn as pc
from pycharrnn.files import read_text
from pycharrnn.metrics import read_metrics
from pycharrnn.recipes import for_budget

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"


def train_run(data: Path, seconds: float, extra, workdir: Path, name: str) -> dict:
    """One `pycharrnn train` process; its curve and end numbers."""
    out = workdir / data.stem / name
    cmd = [sys.executable, "-m", "pycharrnn", "train", str(data), "--out", str(out),
           "--time", f"{seconds:g}", "--no-bar", "--log-every", "1000000",
           "--sample-length", "600", "--seed", "0", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr}")
    steps, evals = read_metrics(out)
    info = json.loads((out / "run.json").read_text())
    curve = [(e["time"], e["val_loss"]) for e in evals]
    last = steps[-1]
    chars = last["step"] * info["train"]["batch_size"] * info["train"]["seq_length"]
    head, mark, sample = proc.stdout.partition("--- sample ---\n")
    sample = sample if mark else head
    shown = ["pycharrnn", "train", data.name, "--out", "RUN"] + cmd[7:]  # no machine paths
    return {"name": name, "command": " ".join(shown),
            "recipe": info.get("recipe"), "curve": curve,
            # the epochs read at each point of the curve, for comparisons at
            # equal epochs between runs of different speeds
            "curve_epochs": [e["epoch"] for e in evals],
            "final_val": evals[-1]["val_loss"], "best_val": min(v for _, v in curve),
            "train_ema": last["ema_loss"], "steps": last["step"],
            "epochs": last["epoch"], "chars_per_sec": chars / steps[-1]["time"],
            "process_seconds": wall, "batch_size": info["train"]["batch_size"],
            "seq_length": info["train"]["seq_length"],
            "model": next(ln for ln in proc.stdout.splitlines() if ln.startswith("CharRNN(")),
            "line": next((ln for ln in proc.stdout.splitlines() if ln.startswith("recipe ")), ""),
            # The summary's notes (over- or underfitting, a wide gap, load).
            "notes": [ln for ln in head.splitlines() if ln.startswith("note:")],
            "sample": sample[:600]}


def kernel_rate(run_dir: Path, text: str, seconds: float = 6.0) -> float:
    """chars/s of the run's model on bare training steps (one fixed batch)."""
    model = pc.load(run_dir / "latest.npz")
    info = json.loads((run_dir / "run.json").read_text())
    B, T = info["train"]["batch_size"], info["train"]["seq_length"]
    ids = model.vocab.encode(text[:B * T + 1])
    x, y = ids[:-1].reshape(B, T), ids[1:].reshape(B, T)
    opt = pc.optim.AdamW(model, lr=1e-9)
    for _ in range(2):
        model.forward_backward(x, y)
        opt.step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        model.forward_backward(x, y)
        opt.step()
        n += 1
    return n * B * T / (time.perf_counter() - t0)


def window_val(run_dir: Path, text: str, val_fraction: float = 0.1) -> float:
    """The run's final model on its validation text, measured as nanoGPT's
    estimate_loss measures (pycharrnn.evaluation.window_loss)."""
    from pycharrnn.data import split_validation
    from pycharrnn.evaluation import window_loss

    model = pc.load(run_dir / "latest.npz")
    _, val_ids = split_validation(model.vocab.encode(text), val_fraction)
    return window_loss(model, val_ids)


def torch_run(text: str, seconds: float, recipe, val_fraction: float = 0.1) -> dict:
    """The recipe trained by PyTorch for the same wall time, validated by
    pycharrnn's evaluate() on the same tail after copying the weights."""
    import torch
    from torch import nn

    from pycharrnn.schedule import CosineToDeadline
    from pycharrnn.torch_compat import from_torch
    from pycharrnn.data import Batches, split_validation
    from pycharrnn.evaluation import evaluate

    torch.manual_seed(0)
    vocab = pc.Vocab.from_text(text)
    train_ids, val_ids = split_validation(vocab.encode(text), val_fraction)
    V, H, E = len(vocab), recipe.hidden_size, recipe.embedding_dim
    rnn_cls = {"gru": nn.GRU, "lstm": nn.LSTM}[recipe.cell]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(V, E)
            self.rnn = rnn_cls(E, H, recipe.num_layers, batch_first=True,
                               dropout=recipe.dropout if recipe.num_layers > 1 else 0.0)
            self.drop = nn.Dropout(recipe.output_dropout)
            self.decoder = nn.Linear(H, V)

        def forward(self, x, state):
            out, state = self.rnn(self.embedding(x), state)
            return self.decoder(self.drop(out)), state

    net = Net()
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = CosineToDeadline(recipe.lr, seconds, recipe.warmup)
    batches = Batches(train_ids, recipe.batch_size, recipe.seq_length)
    curve, state, step = [], None, 0
    t0 = time.perf_counter()
    next_eval = seconds / 5

    def validate():
        net.eval()
        m = from_torch(net, vocab)
        v = evaluate(m, val_ids, recipe.batch_size, recipe.seq_length)
        net.train()
        return v

    while True:
        now = time.perf_counter() - t0
        if now >= seconds:
            break
        if now >= next_eval:
            curve.append((now, validate()))
            next_eval += seconds / 5
        x, y, wrapped = batches.next()
        if wrapped:
            state = None
        step += 1
        for g in opt.param_groups:
            g["lr"] = sched.lr(step, batches.epoch_float, now)
        logits, state = net(torch.as_tensor(x, dtype=torch.long), state)
        state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        loss = nn.functional.cross_entropy(logits.reshape(-1, V),
                                           torch.as_tensor(y, dtype=torch.long).reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_value_(net.parameters(), 5.0)
        opt.step()
    curve.append((time.perf_counter() - t0, validate()))
    chars = step * recipe.batch_size * recipe.seq_length
    return {"name": "torch", "curve": curve, "final_val": curve[-1][1],
            "best_val": min(v for _, v in curve), "steps": step,
            "chars_per_sec": chars / seconds}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    texts = list(results)
    fig, axes = plt.subplots(1, len(texts), figsize=(6.5 * len(texts), 4.6), squeeze=False)
    for ax, text in zip(axes[0], texts):
        for run in results[text]:
            t, v = zip(*run["curve"])
            ax.plot(np.array(t) / 60, v, marker=".", label=f"{run['name']}: "
                    f"{run['final_val']:.3f}")
        targets = ((1.50, 3), (1.40, 15), (1.35, 60)) if "shakespeare" in text else ()
        for target, budget in targets:  # the targets, set on tinyshakespeare
            ax.axhline(target, color="grey", lw=0.6, ls=":")
            ax.annotate(f"{budget}-min target", (0, target), xycoords=("axes fraction", "data"),
                        xytext=(3, 2), textcoords="offset points", fontsize=7, color="grey")
        ax.set_title(text)
        ax.set_xlabel("wall time (minutes)")
        ax.set_ylabel("validation loss (nats/char)")
        lowest = min(r["final_val"] for r in results[text])
        ax.set_ylim(top=max(min(2.2, ax.get_ylim()[1]), lowest + 0.2))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


def markdown(results: dict, commands, date: str = "", machine: str = "") -> str:
    """The results as a RESULTS.md section; ``machine`` is the CPU they were
    measured on (harness.machine(); this one's when not given)."""
    import platform

    lines = [f"## Model quality per hour ({date or time.strftime('%Y-%m-%dT%H:%M:%S')})", "",
             " then ".join(f"`{c}`" for c in commands)
             + f" on {machine or harness.machine()} ({platform.machine()}), "
             f"{os.cpu_count()} logical CPUs, "
             f"{pc.build_info()['simd']} kernels; one training process at a time. "
             "Validation: the text's last 10%, nats/char, read with the state carried. "
             "gap = validation - training loss (EMA) at the end: overfitting when large. "
             "bare step: the same model's training step alone (no validation, checkpoints "
             "or logging). window val: nanoGPT's estimate_loss on the same validation text "
             "(200 x 64 random 256-character windows, each from a cold state). Curves: `quality.png` beside `quality.json`.", "",
             "| text | run | final val | window val | best val | train (EMA) | gap | steps | "
             "epochs | chars/s | bare step chars/s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for text, runs in results.items():
        for r in runs:
            tr = r.get("train_ema", math.nan)
            lines.append(
                f"| {text} | {r['name']} | {r['final_val']:.4f} | "
                f"{r.get('window_val', math.nan):.4f} | {r['best_val']:.4f} | "
                f"{tr:.4f} | {r['final_val'] - tr:+.3f} | {r['steps']:,} | "
                f"{r.get('epochs', math.nan):.1f} | {r['chars_per_sec']:,.0f} | "
                f"{r.get('kernel_chars_per_sec', math.nan):,.0f} |")
    return "\n".join(lines).replace("| nan |", "| - |").replace("+nan", "-") + "\n"


BEGIN, END = "<!-- quality.py: begin -->", "<!-- quality.py: end -->"


def write_section(path: Path, md: str) -> None:
    """Replace (or append) the quality section of a markdown file, atomically."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{BEGIN}\n{md}{END}\n"
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + block + old[old.index(END) + len(END) + 1:]
    else:
        new = old + ("\n" if old and not old.endswith("\n\n") else "") + block
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--data", nargs="+", type=Path,
                   default=[SHARED / "tinyshakespeare.txt", SHARED / "sherlock.txt"])
    p.add_argument("--budgets", nargs="+", type=float, default=[180, 900])
    p.add_argument("--long", action="store_true", help="add the 60-minute budget")
    p.add_argument("--baseline", nargs="*", type=float, default=[],
                   help="budgets for which to also train the defaults without a recipe")
    p.add_argument("--baseline-cell", default="gru", choices=["rnn", "gru", "lstm"])
    p.add_argument("--torch", nargs="*", type=float, default=[],
                   help="budgets for which to also train the recipe in PyTorch")
    p.add_argument("--extra", default="", help="more options for every recipe run")
    p.add_argument("--out", type=Path, default=HERE / "quality")
    p.add_argument("--results", type=Path,
                   help="write the table into this markdown file's quality section "
                        "(e.g. benchmarks/RESULTS.md)")
    p.add_argument("--from-json", type=Path,
                   help="no training: redraw and re-tabulate a quality.json")
    a = p.parse_args(argv)
    budgets = a.budgets + ([3600.0] if a.long else [])
    command = "python benchmarks/quality.py " + " ".join(
        str(x).replace(str(SHARED.parent.parent) + os.sep, "../") for x in sys.argv[1:])
    if a.from_json:
        saved = json.loads(a.from_json.read_text())
        a.out.mkdir(parents=True, exist_ok=True)
        plot(saved["results"], a.out / "quality.png")
        md = markdown(saved["results"], saved["commands"], saved["date"],
                      saved.get("machine", "an unrecorded CPU"))
        print(md)
        if a.results:
            write_section(a.results, md)
        return 0
    a.out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    rows = []
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        for data in a.data:
            text = read_text(data)
            results[data.name] = []
            for budget in budgets:
                recipe = for_budget(budget)
                runs = [train_run(data, budget, a.extra.split(), work,
                                  f"{recipe.name} ({budget / 60:g} min)")]
                runs[0]["kernel_chars_per_sec"] = kernel_rate(work / data.stem / runs[0]["name"],
                                                              text)
                runs[0]["window_val"] = window_val(work / data.stem / runs[0]["name"], text)
                if budget in a.baseline:
                    runs.append(train_run(data, budget, ["--recipe", "none", "--cell",
                                                         a.baseline_cell], work,
                                          f"defaults ({budget / 60:g} min)"))
                    runs[-1]["kernel_chars_per_sec"] = kernel_rate(
                        work / data.stem / runs[-1]["name"], text)
                if budget in a.torch:
                    r = torch_run(text, budget, recipe)
                    r["name"] = f"torch {recipe.name} ({budget / 60:g} min)"
                    runs.append(r)
                for r in runs:
                    results[data.name].append(r)
                    rows.append((data.name, r))
                    print(f"{data.name:22s} {r['name']:22s} final {r['final_val']:.4f} "
                          f"window {r.get('window_val', math.nan):.4f} "
                          f"best {r['best_val']:.4f} train {r.get('train_ema', math.nan):.4f} "
                          f"steps {r['steps']} {r['chars_per_sec']:,.0f} chars/s "
                          f"(bare step {r.get('kernel_chars_per_sec', math.nan):,.0f})",
                          flush=True)
                out = a.out / "quality.json"
                tmp = out.with_suffix(".tmp")
                tmp.write_text(json.dumps(
                    {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "commands": [command],
                     "machine": harness.machine(), "build_info": pc.build_info(),
                     "results": results}, indent=1))
                tmp.replace(out)
                plot(results, a.out / "quality.png")
    md = markdown(results, [command])
    print("\n" + md)
    if a.results:
        write_section(a.results, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
