"""Whole loops in C++: sampling at batch 1 and small-model training through
the Trainer, against PyTorch's own loop and the NumPy reference, and against
an earlier pycharrnn (``--before PYTHON``: an interpreter with that version
installed) in the same run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/loops.py \
        [--before /path/to/other/python] [--repeats 5] [--seconds 1.0] \
        [--json benchmarks/loops.json] [--results benchmarks/RESULTS.md]

Workloads (random ids, V=65):
- sample: B=1, 200 characters per call after a 10-character prime, rnn /
  gru / lstm at 128x1 (one-hot) and 512x3 (E=100). For 512x3 the floor is
  the time to read the model's weights once per character: one numpy
  float32 matrix-vector product over a matrix of the same size
  (benchmarks/bandwidth.py's measurement), timed in the same worker.
- train: min-char-rnn's configuration (tanh, H=100, T=25, B=1, one-hot,
  AdaGrad lr 0.1 with eps 1e-8 inside the square root, clip 5) and B=1,
  H=128, T=50, one-hot, Adam 2e-3 for each cell. pycharrnn trains through
  ``Trainer.run`` (64 steps a call; no validation); torch and NumPy step
  their own loops (benchmarks/harness.py).

Every repeat runs every implementation for ``--seconds`` in turn (each
implementation group in its own worker process, so that an earlier version
can run beside); medians of the repeats are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
SAMPLE_CHARS = 200
TRAIN_STEPS = 64  # steps per timed Trainer.run call
WORKLOADS = (
    [dict(task="sample", cell=c, H=128, L=1, E=None, B=1, T=1, name="128x1") for c in
     ("rnn", "gru", "lstm")]
    + [dict(task="sample", cell=c, H=512, L=3, E=100, B=1, T=1, name="512x3") for c in
       ("rnn", "gru", "lstm")]
    + [dict(task="train", cell="rnn", H=100, L=1, E=None, B=1, T=25, opt="adagrad",
            name="min-char-rnn")]
    + [dict(task="train", cell=c, H=128, L=1, E=None, B=1, T=50, opt="adam", name="128x1")
       for c in ("rnn", "gru", "lstm")])
MARK = "@@LOOPS "


# ----------------------------------------------------------------- the worker
def _pycharrnn_step(cfg, V, batches):
    """(step, chars per step) through the public API of any version."""
    import pycharrnn as pc

    m = pc.CharRNN(V, cfg.H, cfg.L, cfg.cell, embedding_dim=cfg.E, seed=0)
    if cfg.task == "sample":
        prime = np.concatenate([x.reshape(-1) for x, _ in batches])[:10].astype(np.int32)
        seed = [0]

        def sample():
            seed[0] += 1
            m.sample_ids(SAMPLE_CHARS, prime=prime, seed=seed[0])
        return sample, SAMPLE_CHARS
    ids = np.random.default_rng(0).integers(0, V, 1 << 18).astype(np.int32)
    if cfg.opt == "adagrad":
        opt = pc.optim.AdaGrad(m, lr=0.1, eps=1e-8, clip_value=5.0, eps_inside_sqrt=True)
    else:
        opt = pc.optim.Adam(m, lr=2e-3)
    import inspect

    quiet = {"progress": False} if "progress" in inspect.signature(pc.Trainer).parameters \
        else {}  # versions with a progress bar: off, as the older had none
    tr = pc.Trainer(m, ids, batch_size=cfg.B, seq_length=cfg.T, optimizer=opt,
                    val_fraction=0.0, checkpoint_each_epoch=False, **quiet)
    return (lambda: tr.run(steps=TRAIN_STEPS)), TRAIN_STEPS * cfg.B * cfg.T


def _floor(cfg, V):
    """A step that reads as many float32 bytes as the model's weights in one
    numpy matrix-vector product: the time to read the weights once."""
    import pycharrnn as pc

    n = pc.CharRNN(V, cfg.H, cfg.L, cfg.cell, embedding_dim=cfg.E, seed=0).num_params
    W = np.random.default_rng(0).random((n // 512 + 1, 512), dtype=np.float32)
    x, y = np.ones(512, np.float32), np.empty(W.shape[0], np.float32)

    def read():
        for _ in range(20):
            np.dot(W, x, out=y)
    return read, 20, W.nbytes


def _worker(job):
    import harness  # benchmarks/harness.py: this script's folder is on sys.path

    threads = job["threads"]
    cfg = harness.Config(**{k: v for k, v in job["config"].items()
                            if k in harness.Config.__dataclass_fields__})
    V, batches = harness.make_batches(cfg, None)
    runners = {}
    for impl in job["impls"]:
        if impl == "pycharrnn":
            step, chars = _pycharrnn_step(cfg, V, batches)
            runners[impl] = (step, chars)
        elif impl == "floor":
            step, chars, nbytes = _floor(cfg, V)
            runners[impl] = (step, chars)
        else:
            prepare, step, chars = harness.make_step(impl, cfg, V, batches, threads)
            prepare()
            runners[impl] = (step, chars)
    import pycharrnn as pc

    pc.set_num_threads(threads)
    for step, chars in runners.values():
        step()
        harness.measure(step, chars, job["seconds"] / 3)
    rates = {impl: [] for impl in runners}
    for _ in range(job["repeats"]):
        for impl, (step, chars) in runners.items():
            time.sleep(0.1)
            rates[impl].append(harness.measure(step, chars, job["seconds"]))
    out = {"rates": rates, "version": pc.__version__}
    if "floor" in runners:
        out["weight_bytes"] = nbytes
    return out


def _call(python, job):
    env = dict(os.environ)
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(k, None)
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(job["threads"])
    p = subprocess.run([python, str(HERE), "--worker", json.dumps(job)], env=env,
                       capture_output=True, text=True, cwd=str(HERE.parent))
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith(MARK)]
    if p.returncode or not lines:
        raise RuntimeError(f"worker failed ({python}): {(p.stderr or p.stdout)[-2000:]}")
    return json.loads(lines[-1][len(MARK):])


# ------------------------------------------------------------------ the driver
def _cpu():
    import harness

    return harness.cpu_model()


def run(before, repeats, seconds, threads, log=print, only=None):
    rows = []
    for w in WORKLOADS:
        if only and only not in f"{w['task']} {w['name']} {w['cell']}":
            continue
        impls = ["pycharrnn", "torch", "numpy"] + (["floor"] if w["name"] == "512x3" else [])
        rates = {i: [] for i in impls + (["before"] if before else [])}
        weight_bytes = None
        for r in range(repeats):
            # One repeat each, alternating the order of the two processes.
            groups = [(sys.executable, impls)] + ([(before, ["pycharrnn"])] if before else [])
            if r % 2:
                groups.reverse()
            for python, group in groups:
                res = _call(python, {"config": w, "impls": group, "threads": threads,
                                     "repeats": 1, "seconds": seconds})
                for impl, v in res["rates"].items():
                    rates["before" if python == before else impl] += v
                weight_bytes = res.get("weight_bytes", weight_bytes)
        med = {k: statistics.median(v) for k, v in rates.items()}
        row = {**w, "chars_per_sec": med, "samples": rates}
        if weight_bytes:
            row["weight_bytes"] = weight_bytes
        rows.append(row)
        log(_line(row))
    return rows


def _line(row):
    c = row["chars_per_sec"]
    s = f"{row['task']:6s} {row['cell']:4s} {row['name']:12s}"
    for k in ("pycharrnn", "before", "torch", "numpy", "floor"):
        if k in c:
            s += f"  {k} {c[k]:>10,.0f}"
    return s


def markdown(result):
    rows, meta = result["rows"], result["meta"]
    out = [f"## Whole loops in C++ ({meta['date']})", "",
           f"`{meta['command']}`", "",
           f"- CPU: {meta['cpu']}; threads: {meta['threads']}; median of {meta['repeats']} "
           f"interleaved repeats of {meta['seconds']} s per implementation; random ids, V=65",
           f"- before: pycharrnn {meta.get('before_version') or '-'} in its own "
           "interpreter, run beside in the same repeats" if meta.get("before") else
           "- no earlier version measured", "",
           "| task | cell | size | pycharrnn chars/s | before | torch | numpy | vs before | "
           "vs torch | vs numpy | floor chars/s | time / floor |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c = r["chars_per_sec"]

        def num(k):
            return f"{c[k]:,.0f}" if k in c else "-"

        def ratio(k):
            return f"{c['pycharrnn'] / c[k]:.2f}x" if k in c else "-"
        floor = f"{c['floor']:,.0f}" if "floor" in c else "-"
        over = f"{c['floor'] / c['pycharrnn']:.2f}" if "floor" in c else "-"
        size = r["name"] if r["task"] == "sample" else \
            f"{r['name']} (H={r['H']}, T={r['T']}, {r['opt']})"
        out.append(f"| {r['task']} | {r['cell']} | {size} | {num('pycharrnn')} | "
                   f"{num('before')} | {num('torch')} | {num('numpy')} | {ratio('before')} | "
                   f"{ratio('torch')} | {ratio('numpy')} | {floor} | {over} |")
    out += ["",
            "Sampling: B=1, temperature 1, 200 characters per call after a 10-character "
            "prime. Training: through `Trainer.run` (pycharrnn), each framework's own step "
            "loop (torch, NumPy). floor: the characters per second at which one numpy "
            "float32 matrix-vector product reads as many bytes as the model's weights "
            "(bandwidth.py's measurement, same worker, same threads); time / floor = "
            "pycharrnn's time per character over that floor's.", ""]
    return "\n".join(out)


BEGIN, END = "<!-- loops.py: begin -->", "<!-- loops.py: end -->"


def write_results(path, text):
    """Replace (or append) this script's section of RESULTS.md, atomically."""
    p = Path(path)
    old = p.read_text(encoding="utf-8") if p.exists() else ""
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + block + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, p)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--before", help="a Python interpreter with an earlier pycharrnn installed")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--json", default=str(HERE.with_name("loops.json")))
    ap.add_argument("--results", help="write the table into this RESULTS.md")
    ap.add_argument("--from-json", help="only render an earlier --json file")
    ap.add_argument("--only", help="only the workloads whose 'task name cell' holds this")
    a = ap.parse_args(argv)
    if a.worker:
        print(MARK + json.dumps(_worker(json.loads(a.worker))), flush=True)
        return 0
    if a.from_json:
        result = json.loads(Path(a.from_json).read_text())
    else:
        import pycharrnn as pc

        t0 = time.time()
        before_version = None
        if a.before:
            before_version = subprocess.run(
                [a.before, "-c", "import pycharrnn; print(pycharrnn.__version__)"],
                capture_output=True, text=True, cwd=str(HERE.parent)).stdout.strip()
        rows = run(a.before, a.repeats, a.seconds, a.threads, only=a.only)
        cmd = "python benchmarks/loops.py" + (" --before OLD_PYTHON" if a.before else "") + \
            (f" --repeats {a.repeats}" if a.repeats != 5 else "")
        result = {"meta": {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": cmd,
                           "cpu": _cpu(),
                           "threads": a.threads, "repeats": a.repeats, "seconds": a.seconds,
                           "before": bool(a.before), "before_version": before_version,
                           "build_info": pc.build_info(), "wall_s": time.time() - t0},
                  "rows": rows}
        tmp = Path(a.json + ".tmp")
        tmp.write_text(json.dumps(result, indent=1))
        os.replace(tmp, a.json)
    text = markdown(result)
    print(text)
    if a.results:
        write_results(a.results, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
