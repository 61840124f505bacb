"""Recipes on a spread of texts: how much regularisation a budget's row
needs, by its exposure (the epochs the budget buys on the text times the
model's parameters per character of it).

    python benchmarks/recipe_spread.py [--texts small sherlock ...]
        [--budgets 60 180] [--levels none moderate strong]
        [--variants "h1024=--hidden-size 1024" ...] [--out DIR]

For each text and budget it trains the budget's row of the recipe table
(pycharrnn.recipes.for_budget) with each regularisation level of
pycharrnn.recipes.REGULARISATION in turn, with `pycharrnn train TEXT --time
BUDGET --recipe ROW` and the level's options (benchmarks/quality.py's
train_run, one process at a time), and reports the final validation loss
(one stream over the text's last 10%), nanoGPT's windowed loss of the same
text, the training loss, the epochs read and the exposure (epochs x
parameters per training character, pycharrnn.recipes.exposure). "old" marks
the table's own regularisation for the row when it ran; "rule" the level
pycharrnn.recipes.level_for picks for that model from the exposure of its
run with no dropout (or, if that level was not run, of its first run);
"best" the lowest of the grid on the same machine (each row records the
CPU it ran on: a virtual machine's CPU, and with it the epochs a budget
buys, changes between runs). ``--variants`` adds a grid around
the row: each NAME=FLAGS trains the row with those flags too (another
model size, cell or depth) at every level, the flags overriding the
level's; "row" is the row as it is.

The texts (nothing is downloaded at run time):

- tinyshakespeare, sherlock: ../shared/data (1.1M and 3.4M characters);
- small: 200,000 characters of sherlock (from its start);
- corpus: the built-in corpus (the corpus extra, 5M characters);
- russian: Debian's fortunes-ru (apt-get install fortunes-ru: Russian
  quotations and jokes, Cyrillic), its files in name order, 1M characters;
- code: NumPy's own Python sources in path order, 1M characters.

Writes DIR/spread.json and prints a markdown table. ``--pairs`` prints,
from DIR/spread.json alone, every pair of runs of one model, text, budget,
machine and seed where the second has at least the first's dropout of every
kind and more of one, by whether the first's validation loss had risen from
its best: the measurement behind pycharrnn.fit's advice
(pycharrnn.fit.DROPOUT_GAP).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import pycharrnn as pc  # noqa: E402
from pycharrnn.data import validation_size  # noqa: E402
from pycharrnn.recipes import (REGULARISATION, by_name, exposure, for_budget,  # noqa: E402
                               level_for)
import harness  # noqa: E402
from quality import SHARED, train_run, window_val  # noqa: E402

FORTUNES_RU = Path("/usr/share/games/fortunes/ru")
CUT = 1_000_000


def text_of(name: str) -> str:
    """One text of the spread, by name."""
    if name in ("tinyshakespeare", "sherlock"):
        return pc.files.read_text(SHARED / f"{name}.txt")
    if name == "small":
        return pc.files.read_text(SHARED / "sherlock.txt")[:200_000]
    if name == "corpus":
        from pycharrnn.data import load_text
        return load_text(None, "shakespeare")
    if name == "russian":
        if not FORTUNES_RU.is_dir():
            raise SystemExit("russian: apt-get install fortunes-ru first")
        files = sorted(p for p in FORTUNES_RU.iterdir()
                       if p.suffix not in (".dat", ".u8") and not p.is_symlink())
        return "".join(p.read_text(encoding="utf-8", errors="replace") for p in files)[:CUT]
    if name == "code":
        import numpy
        root = Path(numpy.__file__).parent
        return "".join(p.read_text(encoding="utf-8", errors="replace")
                       for p in sorted(root.rglob("*.py")))[:CUT]
    raise SystemExit(f"no text {name!r}")


def level_options(level: str, num_layers: int) -> list:
    """The command-line options of one regularisation level."""
    reg = dict(REGULARISATION[level])
    if num_layers < 2:
        reg.pop("dropout", None)
    opts = []
    for k in ("dropout", "input_dropout", "output_dropout", "weight_drop"):
        opts += [f"--{k.replace('_', '-')}", f"{reg.get(k, 0.0):g}"]
    return opts + (["--locked-dropout"] if reg.get("locked_dropout") else [])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--texts", nargs="+", default=["small", "sherlock"])
    p.add_argument("--budgets", nargs="+", type=float, default=[60, 180])
    p.add_argument("--levels", nargs="+", default=list(REGULARISATION),
                   choices=list(REGULARISATION) + ["auto"],
                   help="regularisation levels to train the row with; auto: the plain "
                        "`pycharrnn train TEXT --time BUDGET`, its recipe and level "
                        "chosen by the library (the row and variants do not apply)")
    p.add_argument("--variants", nargs="+", default=["row="],
                   help="NAME=FLAGS: the row with these options too (default: the row alone)")
    p.add_argument("--out", type=Path, default=HERE / "spread")
    p.add_argument("--pairs", action="store_true",
                   help="print the pairs of runs in OUT/spread.json where the second "
                        "has more dropout (pycharrnn.fit's advice) and train nothing")
    a = p.parse_args(argv)
    if a.pairs:
        print(pairs(json.loads((a.out / "spread.json").read_text())["rows"]))
        return 0
    variants = []
    for v in a.variants:
        vname, eq, flags = v.partition("=")
        if not eq or not vname:
            p.error(f"--variants: {v!r} is not NAME=FLAGS")
        variants.append((vname, flags.split()))
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / "spread.json"
    saved = json.loads(path.read_text()) if path.exists() else {"rows": []}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        for name in a.texts:
            text = text_of(name)
            data = work / f"{name}.txt"
            data.write_text(text, encoding="utf-8")
            n_train = len(text) - round(len(text) * 0.1)
            for budget in a.budgets:
                row = for_budget(budget)
                old = next((lv for lv, reg in REGULARISATION.items()
                            if all(getattr(row, k) == v for k, v in reg.items()
                                   if k != "dropout" or row.num_layers > 1)), "?")
                runs = [(v, lv) for v in variants for lv in a.levels if lv != "auto"]
                if "auto" in a.levels:
                    runs.insert(0, (("auto", []), "auto"))
                for (vname, flags), level in runs:
                    layers = row.num_layers
                    if "--layers" in flags:
                        layers = int(flags[flags.index("--layers") + 1])
                    # The variant's flags last: they override the level's.
                    extra = [] if level == "auto" else \
                        ["--recipe", row.name] + level_options(level, layers) + flags
                    r = train_run(data, budget, extra, work,
                                  f"{row.name}-{vname}-{level}-{budget:g}")
                    r["window_val"] = window_val(work / data.stem / r["name"], text)
                    chose = re.search(rf"\b({'|'.join(['no', *REGULARISATION])}) regularisation",
                                      r["line"])
                    r.update(machine=harness.machine(),
                             text=name, chars=len(text), vocab=len(set(text)),
                             budget=budget, row=row.name, level=level, variant=vname,
                             flags=" ".join(flags), old=level == old and vname == "row")
                    if level == "auto":  # what the library chose
                        r.update(row=r["recipe"] or "?", variant="auto",
                                 level=("none" if chose.group(1) == "no" else chose.group(1))
                                 if chose else "?", auto=True)
                    r.pop("sample", None)
                    saved["rows"].append(r)
                    print(f"{name:16s} {budget / 60:4g} min {row.name:6s} {vname:8s} {level:9s} "
                          f"val {r['final_val']:.4f} window {r['window_val']:.4f} "
                          f"train {r['train_ema']:.4f} epochs {r['epochs']:.1f}"
                          + (" (old)" if r["old"] else ""), flush=True)
                    saved["date"] = time.strftime("%Y-%m-%dT%H:%M:%S")
                    saved["build_info"] = pc.build_info()
                    tmp = path.with_suffix(".tmp")
                    tmp.write_text(json.dumps(saved, indent=1))
                    tmp.replace(path)
    print(table(saved["rows"]))
    return 0


def shape_of(r) -> str:
    """The model a run trained, from its description: "lstm 2x512"."""
    m = re.search(r"\((\w+), V=\d+, (?:embedding \d+, )?(\d+x\d+)", r["model"])
    return f"{m.group(1)} {m.group(2)}"


def flags_of(r) -> dict:
    """A run's command-line options with a value, as the command line reads
    them: the last of a flag given twice wins."""
    words = r.get("command", "").split()
    return {f: v for f, v in zip(words, words[1:])
            if f.startswith("--") and not v.startswith("--")}


def seed_of(r) -> int:
    """The seed a run's command gave (quality.train_run gives 0 first)."""
    return int(flags_of(r).get("--seed", 0))


def model_of(r) -> str:
    """The model a run trained and the learning rate and seed its command
    gave: "lstm 2x512 lr 3e-3", "lstm 2x512 lr 4e-3 seed 1" (the table's
    label; seed 0, quality.train_run's, is not named)."""
    lr, seed = flags_of(r).get("--lr"), seed_of(r)
    return shape_of(r) + (f" lr {lr}" if lr else "") + (f" seed {seed}" if seed else "")


def lr_flag(r) -> Optional[float]:
    """The learning rate a run's command set with ``--lr``, or None."""
    lr = flags_of(r).get("--lr")
    return float(lr) if lr else None


def lr_of(r) -> Optional[float]:
    """The peak learning rate a run trained at: its ``--lr``, else its row's
    as the recipe line printed it ("... lr 0.003 ..."; recorded since
    2026-12-06), else None (not known)."""
    flag = lr_flag(r)
    if flag is not None:
        return flag
    m = re.search(r" lr ([0-9.eE+-]+)", r.get("line", ""))
    return float(m.group(1)) if m else None


def same_lr(a, b) -> bool:
    """Whether two runs trained at one learning rate: both at their row's
    (no ``--lr``; a row's rate changes only with the table), or at rates
    known to be equal, e.g. ``--lr 2e-3`` and a recipe line's "lr 0.002"."""
    if lr_flag(a) is None and lr_flag(b) is None:
        return True
    la, lb = lr_of(a), lr_of(b)
    return la is not None and lb is not None and math.isclose(la, lb)


def exposure_of(r) -> float:
    """The rule's exposure (pycharrnn.recipes.exposure) of a run: the epochs
    it read, its parameters, its training text."""
    params = int(re.search(r"(\d+) params", r["model"]).group(1))
    n_train = r["chars"] - validation_size(r["chars"], 0.1)
    return exposure(r["epochs"], params, n_train)


FLAGS = {"--dropout": "dropout", "--input-dropout": "input_dropout",
         "--output-dropout": "output_dropout", "--weight-drop": "weight_drop"}


def dropout_of(r) -> dict:
    """A run's dropout of each kind: its level's, then its command's flags,
    the last of each (``dropout`` only in a model of two or more layers,
    where it acts)."""
    reg = {k: v for k, v in REGULARISATION[r["level"]].items() if k in FLAGS.values()}
    for flag, value in flags_of(r).items():
        if flag in FLAGS:
            reg[FLAGS[flag]] = float(value)
    if re.search(r", 1x\d+", r["model"]):
        reg["dropout"] = 0.0
    return reg


def pairs(rows) -> str:
    """Pairs (a, b) of one model, text, budget, machine and seed (two seeds
    of tinyshakespeare's 60-minute row ended 0.012 apart, more than most
    changes of dropout) where b has at least a's dropout of every kind and
    more of one, and a ended more than
    pycharrnn.fit.GAP above its training loss (the diagnosis can call it
    overfitting): b's final validation against a's, by whether a's had
    risen from its best (pycharrnn.fit.ROSE) and by a's gap (the training
    loss is the run's moving average at the end)."""
    from pycharrnn.fit import DROPOUT_GAP, GAP, ROSE
    found = []
    for a in rows:
        gap = a["final_val"] - a["train_ema"]
        if gap <= GAP:
            continue
        da = dropout_of(a)
        for b in rows:
            db = dropout_of(b)
            if b is a or any(b.get(k) != a.get(k) for k in ("text", "budget")) or \
                    b.get("machine", "?") != a.get("machine", "?") or \
                    shape_of(b) != shape_of(a) or not same_lr(a, b) or \
                    seed_of(b) != seed_of(a):
                continue
            if all(db[k] >= da[k] for k in da) and any(db[k] > da[k] for k in da):
                risen = a["final_val"] > a["best_val"] + ROSE
                found.append((risen, gap, a, b))
    lines = ["| text | budget | model | from | to | gap | risen | val from | val to | change |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    short = {"dropout": "d", "input_dropout": "in", "output_dropout": "out", "weight_drop": "wd"}

    def reg(r):
        return " ".join(f"{short[k]} {v:g}" for k, v in dropout_of(r).items() if v) or "none"
    count: dict = {}
    for risen, gap, a, b in sorted(found, key=lambda f: (not f[0], f[1])):
        change = b["final_val"] - a["final_val"]
        group = "risen" if risen else ("gap <= DROPOUT_GAP" if gap <= DROPOUT_GAP
                                       else "gap > DROPOUT_GAP")
        count.setdefault(group, [0, 0])[change >= 0] += 1
        lines.append(f"| {a['text']} | {a['budget'] / 60:g} min | {model_of(a)} | {reg(a)} | "
                     f"{reg(b)} | {gap:.2f} | {'yes' if risen else 'no'} | "
                     f"{a['final_val']:.4f} | {b['final_val']:.4f} | {change:+.4f} |")
    lines.append("")
    lines += [f"- {g}: more dropout better in {n[0]}, worse in {n[1]}" for g, n in count.items()]
    return "\n".join(lines)


def table(rows) -> str:
    """The rows as markdown. "rule" marks the level the rule picks for that
    model on that text (from the exposure of its run without dropout, else
    of its first run), with the level's own dropout; "old" the old table's
    own regularisation; "best" the lowest of the text and budget's grid on
    one machine (a row's ``machine``; "?" for rows from before it was
    recorded, one group). Dropout a run's flags set away from its level's
    is named after its model."""
    lines = ["| machine | text | chars | budget | row | model | level | final val | window val | "
             "train | epochs | exposure | |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict = {}
    for r in rows:
        groups.setdefault((r.get("machine", "?"), r["text"], r["budget"]), []).append(r)
    for (where, name, budget), rs in groups.items():
        best = min(r["final_val"] for r in rs)
        by_model: dict = {}
        for r in rs:
            by_model.setdefault(model_of(r), []).append(r)
        for r in rs:
            same = by_model[model_of(r)]
            base = next((x for x in same if x["level"] == "none"), same[0])
            mine, own = dropout_of(r), dropout_of(dict(r, command=""))  # flags vs the level's
            extra = "".join(f", {k.replace('_', ' ')} {v:g}" for k, v in mine.items()
                            if v != own[k])
            rule = r["level"] == level_for(exposure_of(base), budget) and not extra
            marks = [m for m, on in (("auto", r.get("auto", False)), ("old", r["old"]),
                                     ("rule", rule and not r.get("auto")),
                                     ("best", r["final_val"] == best)) if on]
            lines.append(f"| {where} | {name} | {r['chars']:,} | {budget / 60:g} min | {r['row']} | "
                         f"{model_of(r)}{extra} | {r['level']} | {r['final_val']:.4f} | "
                         f"{r.get('window_val', math.nan):.4f} | {r['train_ema']:.4f} | "
                         f"{r['epochs']:.1f} | {exposure_of(r):.1f} | {', '.join(marks)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
