"""Speed on a busy machine: pycharrnn's default thread policy against one
thread and all threads, with PyTorch beside it, under other load.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/contention.py \
        [--quick] [--repeats 3] [--seconds 2] [--warmup 3] [--json benchmarks/contention.json] \
        [--markdown FILE] [--baseline OTHER_PYTHON]

Rows are kinds of load: an idle machine; 1-3 other processes running a pure
Python loop; 1-2 running a NumPy matrix product (OpenBLAS's own threads);
this process confined to one core (a ``taskset`` mask); a CPU quota of one
core (a cgroup of its own, when this user may make one); and another thread
pool in the same process (NumPy's OpenBLAS, and for pycharrnn also PyTorch's,
called between the measured calls, as in a notebook that uses both).

Columns are implementations, each measured in a process of its own: pycharrnn
by default (no thread setting), at 1 thread and at all threads
(``os.cpu_count()``), PyTorch by default and at 1 thread. Tasks: training
(GRU 1x384, embedding 64, B=32, T=64, AdamW; steps/s through
``Trainer.run``), validation (``pycharrnn.evaluate`` against PyTorch's
forward pass without gradients; characters/s) and sampling (B=1, one
character at a time; characters/s).

Every implementation runs its task for ``--warmup`` seconds (3) before the
timing starts, in the same process: pycharrnn's default probes most often in
its first seconds (the wait between probes grows from 0.5 s to 16 s), and a
training run lasts minutes, not seconds. For each repeat the
rows run in turn, and within a row the implementations
run in a shuffled order; medians over the repeats are reported. "default /
best" is pycharrnn's default against the better of its 1-thread and
all-thread speeds under the same load (the medians' ratio); "paired" is the
median over the repeats of the same ratio taken within each repeat, where
the row's implementations ran back to back, within a minute or so. The
issue's target is >= 0.9 in every row, judged by "paired": on a machine
whose speed for one process moves between levels over minutes (an AMD EPYC
VM sampled on two fixed threads at 47K or 61K characters a second, and one
process moved from one to the other in the middle of its measurement, with
no thread setting involved), the medians of few repeats can fall on
different levels for different columns, and a ratio within one repeat
compares them on the same level more often.

``--merge A.json B.json ...`` measures nothing: it pools the repeats of
earlier runs of this script (on one machine, one day) cell by cell, takes
the medians again and writes the JSON and the tables, as for a run. Below
each table, pycharrnn's cells whose repeats span more than 1.25x (slowest to
fastest) are listed: this machine's speed for one process can be either of
two levels (for example sampling on two threads, idle, at 47K or 61K
characters a second), so a median of few repeats can fall on either.

``--windows TASK`` times one task in a different way: each implementation
in a fresh process beside the row's load runs the task for ``--seconds``
(8 by default here) with no warm-up, and its speed is reported for every
half-second window, with pycharrnn's team size and what the governor did in
that window (p a probe ended, s a switch, a a probe abandoned, b a unit that
bailed out to a smaller team). It shows what medians hide: beside two busy
processes on two cores, two fixed threads sampled at 27-29K characters a
second in some processes and at 125 in others, from their first second to
their last. Below the lines, each implementation's speed per process after
``--warmup`` seconds (the work of the windows that began then, over their
time), how many of its processes had a window under a tenth of its median
window, and the CPU seconds a second its processes used then on the calling
thread and on their other threads (a team's helpers; medians).
Written to ``--json`` (default: contention_windows.json beside this file).

``--baseline PY`` adds the column ``base-default``: pycharrnn by default as
installed for another interpreter (an older build in a virtual environment
of its own), measured interleaved with this build in the same run, for a
before-and-after that this machine's slow phases cannot bias. It is left
out of the "pool torch" row (that interpreter need not have torch).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

V, E, H, B, T = 65, 64, 384, 32, 64
TASKS = ("train", "validate", "sample")
IMPLS = ("pc-default", "pc-1", "pc-all", "torch-default", "torch-1")
BASE_IMPLS = ("base-default",)  # pycharrnn under --baseline's interpreter
LOADS = {
    "python": "while True: pass",
    "numpy": "import numpy as np\na = np.random.rand(384, 384)\nwhile True: a @ a",
}
ROWS = ["idle", "python x1", "python x2", "python x3", "numpy x1", "numpy x2",
        "taskset 1 core", "quota 1 core", "pool numpy", "pool torch"]
QUICK_ROWS = ["idle", "python x1", "python x2", "numpy x1", "taskset 1 core", "pool torch"]
_MARK = "@@RESULT "
DEFAULT_JSON = str(Path(__file__).with_name("contention.json"))
DEFAULT_WINDOWS_JSON = str(Path(__file__).with_name("contention_windows.json"))
WARMUP = 3.0  # seconds of calls before each timing
CGROUP_V1 = Path("/sys/fs/cgroup/cpu")
CGROUP_V2 = Path("/sys/fs/cgroup")


# ---------------------------------------------------------------- the worker

def _pycharrnn(threads: str):
    import numpy as np
    import pycharrnn as pc
    from pycharrnn.evaluation import evaluate
    if threads != "default":
        pc.set_num_threads(os.cpu_count() if threads == "all" else int(threads))
    rng = np.random.default_rng(0)
    ids = rng.integers(0, V, 1 << 18).astype(np.int32)
    model = pc.CharRNN(V, H, 1, "gru", embedding_dim=E, seed=0)
    opt = pc.optim.AdamW(model, lr=2e-3)
    trainer = pc.Trainer(model, ids, batch_size=B, seq_length=T, optimizer=opt,
                         val_fraction=0.0, checkpoint_each_epoch=False, progress=False,
                         stop_on_signals=False)
    val = ids[: B * T * 8]
    return {
        "train": lambda: (trainer.run(steps=2), 2)[1],
        "validate": lambda: (evaluate(model, val), len(val) - 1)[1],
        "sample": lambda: (model.sample_ids(400, prime=ids[:8], seed=1), 400)[1],
    }


def _torch(threads: str):
    import torch
    if threads != "default":
        torch.set_num_threads(int(threads))
    torch.manual_seed(0)
    emb, rnn, dec = torch.nn.Embedding(V, E), torch.nn.GRU(E, H, batch_first=True), \
        torch.nn.Linear(H, V)
    params = [*emb.parameters(), *rnn.parameters(), *dec.parameters()]
    opt = torch.optim.AdamW(params, lr=2e-3)
    data = torch.randint(0, V, (1 << 18,))
    state = {"h": torch.zeros(1, B, H), "pos": 0}

    def batch(pos):
        x = data[pos: pos + B * (T + 1)].view(B, T + 1)
        return x[:, :-1], x[:, 1:]

    def train():
        for _ in range(2):
            x, y = batch(state["pos"])
            state["pos"] = (state["pos"] + B * (T + 1)) % (len(data) - B * (T + 1))
            out, h = rnn(emb(x), state["h"])
            state["h"] = h.detach()
            loss = torch.nn.functional.cross_entropy(dec(out).reshape(-1, V), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
        return 2

    val = data[: B * T * 8].view(B, -1)

    def validate():
        with torch.no_grad():
            h = torch.zeros(1, B, H)
            for t in range(0, val.shape[1] - 1, T):
                x, y = val[:, t:t + T], val[:, t + 1:t + T + 1]
                x = x[:, :y.shape[1]]
                out, h = rnn(emb(x), h)
                torch.nn.functional.cross_entropy(dec(out).reshape(-1, V), y.reshape(-1))
        return val.numel() - B

    def sample():
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            h = torch.zeros(1, 1, H)
            x = data[:8].view(1, -1)
            out, h = rnn(emb(x), h)
            c = torch.multinomial(torch.softmax(dec(out[:, -1]), -1), 1, generator=g)
            for _ in range(399):
                out, h = rnn(emb(c), h)
                c = torch.multinomial(torch.softmax(dec(out[:, -1]), -1), 1, generator=g)
        return 400

    return {"train": train, "validate": validate, "sample": sample}


def _other_pool(pool: Optional[str]):
    """A call of another thread pool in this process, run between the
    measured calls (not timed), or None."""
    if pool == "numpy":
        import numpy as np
        a = np.random.default_rng(0).random((256, 256))
        return lambda: [a @ a for _ in range(8)]
    if pool == "torch":
        import torch
        a = torch.rand(256, 256)
        return lambda: [a @ a for _ in range(8)]
    return None


def worker(job: Dict[str, Any]) -> Dict[str, float]:
    if job.get("cgroup"):
        with open(job["cgroup"], "w") as f:
            f.write(str(os.getpid()))
    impl, threads = job["impl"].split("-", 1)
    calls = (_torch if impl == "torch" else _pycharrnn)(threads)
    other = _other_pool(job.get("pool"))
    if job.get("windows"):
        return {"windows": _windows(impl, calls[job["tasks"][0]], job["tasks"][0],
                                    job["seconds"], job["windows"], other)}
    rates = {}
    for task in job["tasks"]:
        fn = calls[task]
        # Warm up (first-touch memory, thread teams, caches, and the default's
        # governor, which times its first units to choose a team size): at
        # least one call and WARMUP seconds, for every implementation alike.
        t_warm = time.perf_counter() + job.get("warmup", WARMUP)
        fn()
        while time.perf_counter() < t_warm:
            if other:
                other()
            fn()
        done, spent, t_end = 0, 0.0, time.perf_counter() + job["seconds"]
        while time.perf_counter() < t_end or done == 0:
            if other:
                other()
            t0 = time.perf_counter()
            done += fn()
            spent += time.perf_counter() - t0
        rates[task] = done / spent
    return rates


SITES = {"train": "step", "validate": "loss", "sample": "sample"}  # thread_report's names
EVENTS = ("probes", "switches", "abandoned", "bailouts")  # p s a b in --windows


def _windows(impl: str, fn, task: str, seconds: float, width: float,
             other) -> List[List[Any]]:
    """``fn`` called for ``seconds`` from a cold start, timed per window of
    at least ``width`` seconds (a window ends with the call that ends after
    it): [rate, team size (pycharrnn's default; None otherwise), the
    governor's events in it as letters, its start in seconds from the first
    call, the seconds its calls took, the CPU seconds the process used in
    the window (less those of the other pool's calls between), and those of
    the calling thread alone (the rest: its other threads, a team's
    helpers)] per window."""
    report = None
    if impl != "torch":  # pycharrnn, this build or the baseline's
        from pycharrnn import backend
        report = backend.thread_report
    out: List[List[Any]] = []
    before: Dict[str, int] = {}
    t_start = time.perf_counter()
    t_end = t_start + seconds
    while time.perf_counter() < t_end:
        done, spent, t0 = 0, 0.0, time.perf_counter()
        cpu, main = -time.process_time(), -time.thread_time()
        while time.perf_counter() - t0 < width:
            if other:  # neither timed nor its CPU counted
                c1, m1 = time.process_time(), time.thread_time()
                other()
                cpu -= time.process_time() - c1
                main -= time.thread_time() - m1
            t1 = time.perf_counter()
            done += fn()
            spent += time.perf_counter() - t1
        cpu += time.process_time()
        main += time.thread_time()
        site = (report() or {}).get(SITES[task], {}) if report else {}
        events = "".join(k[0] * (site.get(k, 0) - before.get(k, 0)) for k in EVENTS)
        before = dict(site)
        out.append([done / spent, site.get("threads"), events, t0 - t_start, spent, cpu, main])
    return out


def trace_windows(rows: List[str], repeats: int, seconds: float, impls: List[str], task: str,
                  width: float = 0.5, log=print, baseline: Optional[str] = None) -> Dict[str, Any]:
    """--windows: per repeat and row, each implementation (shuffled) in a
    fresh process beside the row's load, its task timed per window."""
    import harness
    rng = random.Random(0)
    runs: List[Dict[str, Any]] = []
    quota = _cgroup_file(1.0) if any(r.startswith("quota") for r in rows) else None
    try:
        for r in range(repeats):
            for row in rows:
                if row.startswith("quota") and not quota:
                    continue
                job = {"tasks": [task], "seconds": seconds, "warmup": 0, "windows": width}
                for impl, w in _run_row(row, impls, job, rng, quota, baseline, log).items():
                    runs.append({"repeat": r + 1, "row": row, "impl": impl,
                                 "windows": w["windows"]})
                    log(f"{row:15s} {impl:14s} " + " ".join(
                        f"{v:.0f}" + (f"/{n}" if n else "") + e for v, n, e, *_ in w["windows"]))
    finally:
        _remove_cgroup(quota)
    return {"task": task, "width": width, "runs": runs, "cpu": harness.cpu_model(),
            "cores": os.cpu_count(), "seconds": seconds, "date": time.strftime("%Y-%m-%d"),
            "baseline": baseline}


def windows_summary(res: Dict[str, Any], after: float) -> str:
    """Per row and implementation: the speed of each process after ``after``
    seconds (the work of its windows that began then, over their time; the
    last window alone when none did, as when one call took seconds) and how
    many of its processes had a window under a tenth of the
    implementation's median window (a collapse); with the CPU columns, the
    medians of the calling thread's and the other threads' CPU seconds per
    second over the same windows."""
    cells: Dict[str, Dict[str, List[List[List[float]]]]] = {}
    for run in res["runs"]:
        cells.setdefault(run["row"], {}).setdefault(run["impl"], []).append(run["windows"])
    out = [f"{res['task']} ({UNITS[res['task']]}), per process after {after:g} s:"]
    for row, d in cells.items():
        for impl, procs in d.items():
            med = statistics.median(w[0] for p in procs for w in p)
            after_warmup = [[w for w in p if w[3] >= after] or p[-1:] for p in procs]
            walls = [sum(w[4] for w in ws) for ws in after_warmup]
            late = [sum(w[0] * w[4] for w in ws) / t for ws, t in zip(after_warmup, walls)]
            low = sum(1 for p in procs if min(w[0] for w in p) < 0.1 * med)
            cpu = ""
            if all(len(w) >= 7 for p in procs for w in p):  # traces before 2026-12-07 lack them
                mains = [sum(w[6] for w in ws) / t for ws, t in zip(after_warmup, walls)]
                others = [sum(w[5] - w[6] for w in ws) / t for ws, t in zip(after_warmup, walls)]
                cpu = (f"; CPU seconds a second: calling thread "
                       f"{statistics.median(mains):.2f}, other threads "
                       f"{statistics.median(others):.2f}")
            out.append(f"  {row:15s} {impl:14s} {' '.join(f'{x:,.0f}' for x in late)}"
                       f"  (median {statistics.median(late):,.0f}; {low} of {len(procs)}"
                       " with a window under a tenth of the median window" + cpu + ")")
    return "\n".join(out)


# ---------------------------------------------------------------- the driver

def _cgroup_file(cores: float) -> Optional[str]:
    """A new cgroup with a quota of ``cores`` CPUs: the file a process writes
    its pid to, to join it; None if none can be made here."""
    name = f"pycharrnn-contention-{os.getpid()}"
    period = 100000
    try:
        if (CGROUP_V1 / "cpu.cfs_quota_us").exists():
            d = CGROUP_V1 / name
            d.mkdir(exist_ok=True)
            (d / "cpu.cfs_period_us").write_text(str(period))
            (d / "cpu.cfs_quota_us").write_text(str(int(cores * period)))
            return str(d / "cgroup.procs")
        if (CGROUP_V2 / "cgroup.controllers").exists():
            d = CGROUP_V2 / name
            d.mkdir(exist_ok=True)
            (d / "cpu.max").write_text(f"{int(cores * period)} {period}")
            return str(d / "cgroup.procs")
    except OSError:
        return None
    return None


def _remove_cgroup(procs: Optional[str]) -> None:
    if procs:
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(procs))


@contextlib.contextmanager
def load(row: str) -> Iterator[None]:
    procs: List[subprocess.Popen] = []
    kind, _, count = row.partition(" x")
    if kind in LOADS:
        for _ in range(int(count)):
            procs.append(subprocess.Popen([sys.executable, "-c", LOADS[kind]],
                                          stdout=subprocess.DEVNULL))
        time.sleep(0.5)
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()
        time.sleep(0.3)


def run_worker(job: Dict[str, Any], taskset: bool,
               python: Optional[str] = None) -> Dict[str, float]:
    cmd = [python or sys.executable, __file__, "--worker", json.dumps(job)]
    if taskset:
        cmd = ["taskset", "-c", "0", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    for line in out.stdout.splitlines():
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK):])
    raise RuntimeError(f"worker {job} failed:\n{out.stderr[-2000:]}")


def _have_torch() -> bool:
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        return False


def _run_row(row: str, impls: List[str], job: Dict[str, Any], rng: random.Random,
             quota: Optional[str], baseline: Optional[str], log=print,
             failures: Optional[List[str]] = None) -> Dict[str, Any]:
    """One row's implementations, shuffled, each in a fresh process beside
    the row's load running ``job`` (its tasks and timings): what each
    worker returned, by implementation; a worker that failed is logged,
    added to ``failures`` and left out."""
    pool = row.split()[1] if row.startswith("pool") else None
    # PyTorch's pool is not measured beside PyTorch, nor beside the
    # baseline (its interpreter need not have torch).
    order = [i for i in impls if not (pool == "torch" and i.startswith(("torch", "base")))]
    rng.shuffle(order)
    out: Dict[str, Any] = {}
    with load(row):
        for impl in order:
            full = dict(job, impl=impl, pool=pool,
                        cgroup=quota if row.startswith("quota") else None)
            try:
                out[impl] = run_worker(full, taskset=row.startswith("taskset"),
                                       python=baseline if impl.startswith("base") else None)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                if failures is not None:
                    failures.append(f"{row} {impl}: {str(e)[-300:]}")
                log(f"{row:15s} {impl:14s} FAILED")
    return out


def measure(rows: List[str], repeats: int, seconds: float, impls: List[str],
            log=print, warmup: float = WARMUP,
            baseline: Optional[str] = None) -> Dict[str, Any]:
    import harness  # benchmarks/harness.py (this script's folder is on sys.path): cpu_model
    rng = random.Random(0)
    samples: Dict[str, Dict[str, Dict[str, List[float]]]] = {}
    paired: Dict[str, Dict[str, Dict[str, List[float]]]] = {}
    quota = _cgroup_file(1.0) if "quota 1 core" in rows else None
    skipped: List[str] = []
    failed: List[str] = []
    try:
        for r in range(repeats):
            for row in rows:
                if row.startswith("quota") and not quota:
                    if r == 0:
                        skipped.append(row)
                    continue
                job = {"tasks": list(TASKS), "seconds": seconds, "warmup": warmup}
                failures: List[str] = []
                this = _run_row(row, impls, job, rng, quota, baseline, log, failures)
                failed += [f"repeat {r + 1} {f}" for f in failures]
                for impl, rates in this.items():
                    for task, v in rates.items():
                        _cell(samples, task, row, impl).append(v)
                    log(f"repeat {r + 1}/{repeats} {row:15s} {impl:14s} " +
                        "  ".join(f"{t} {v:,.1f}" for t, v in rates.items()))
                for task in TASKS:
                    for impl, ratio in _paired(this, task).items():
                        _cell(paired, task, row, impl).append(ratio)
    finally:
        _remove_cgroup(quota)
    med = {t: {row: {i: statistics.median(v) for i, v in d.items()} for row, d in rows_.items()}
           for t, rows_ in samples.items()}
    return {"median": med, "samples": samples, "paired": paired,
            "skipped": skipped, "failed": failed,
            "cpu": harness.cpu_model(), "cores": os.cpu_count(), "repeats": repeats,
            "seconds": seconds, "warmup": warmup, "date": time.strftime("%Y-%m-%d"),
            "baseline": baseline}


UNITS = {"train": "steps/s", "validate": "chars/s", "sample": "chars/s"}
SPREAD = 1.25  # a cell whose repeats span more than this (fastest / slowest) is listed
RATIO_IMPLS = ("pc-default", "pc-1", "pc-all", "base-default")  # the columns of the ratios


def _cell(tree: Dict[str, Dict[str, Dict[str, List[float]]]], task: str, row: str,
          impl: str) -> List[float]:
    """The list of one cell (task, row, implementation) of samples or ratios,
    made empty if new."""
    return tree.setdefault(task, {}).setdefault(row, {}).setdefault(impl, [])


def _paired(rates: Dict[str, Dict[str, float]], task: str) -> Dict[str, float]:
    """One repeat of one row: pycharrnn's default (and the baseline's)
    against the better of 1 thread and all threads measured in that repeat
    (empty when either of those failed)."""
    one, every = rates.get("pc-1", {}).get(task), rates.get("pc-all", {}).get(task)
    if not one or not every:
        return {}
    best = max(one, every)
    return {impl: rates[impl][task] / best for impl in ("pc-default", "base-default")
            if task in rates.get(impl, {})}


def paired_of(res: Dict[str, Any]) -> Dict[str, Dict[str, Dict[str, List[float]]]]:
    """A result's per-repeat ratios. Results written before they were kept
    get them from their samples, repeat by repeat, where no worker failed
    (then every column of a row has one sample per repeat, in order)."""
    if "paired" in res:
        return res["paired"]
    out: Dict[str, Dict[str, Dict[str, List[float]]]] = {}
    if res.get("failed"):
        return out
    for task, rows in res["samples"].items():
        for row, d in rows.items():
            n = len(d.get("pc-1", []))
            for r in range(n):
                this = {impl: {task: v[r]} for impl, v in d.items() if len(v) == n}
                for impl, ratio in _paired(this, task).items():
                    _cell(out, task, row, impl).append(ratio)
    return out


def merge(results: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Several runs' results as one: every cell's repeats pooled, medians
    taken again (--merge)."""
    if not results:
        raise ValueError("merge: no results")
    samples: Dict[str, Dict[str, Dict[str, List[float]]]] = {}
    paired: Dict[str, Dict[str, Dict[str, List[float]]]] = {}
    for res in results:
        for into, rows_of in ((samples, res["samples"]), (paired, paired_of(res))):
            for task, rows in rows_of.items():
                for row, d in rows.items():
                    for impl, v in d.items():
                        _cell(into, task, row, impl).extend(v)
    order = [row for row in ROWS if any(row in rows for rows in samples.values())]
    samples = {t: {row: rows[row] for row in order if row in rows} for t, rows in samples.items()}
    med = {t: {row: {i: statistics.median(v) for i, v in d.items()} for row, d in rows.items()}
           for t, rows in samples.items()}
    counts = sorted({len(v) for rows in samples.values() for d in rows.values() for v in d.values()})
    first = results[0]
    return {"median": med, "samples": samples, "paired": paired,
            "skipped": sorted({s for r in results for s in r.get("skipped", [])}),
            "failed": [f for r in results for f in r.get("failed", [])],
            "cpu": first["cpu"], "cores": first["cores"],
            "repeats": counts[0] if len(counts) == 1 else f"{counts[0]}-{counts[-1]}",
            "seconds": first["seconds"], "warmup": first.get("warmup", WARMUP),
            "date": " and ".join(sorted({r["date"] for r in results})),
            "baseline": next((r["baseline"] for r in results if r.get("baseline")), None),
            "merged": len(results)}


def markdown(res: Dict[str, Any]) -> str:
    out = [f"CPU: {res['cpu']}, {res['cores']} cores; median of {res['repeats']} "
           f"repeats of {res['seconds']:g} s per task after {res.get('warmup', WARMUP):g} s of warm-up; "
           f"{res['date']}" + (f"; the repeats of {res['merged']} runs pooled (--merge)"
                             if res.get("merged") else "") + ".", ""]
    base = any("base-default" in d for rows in res["median"].values() for d in rows.values())
    if base:
        out += [f"Baseline (base-default): pycharrnn under {res.get('baseline')}.", ""]
    paired = paired_of(res)
    for task, rows in res["median"].items():
        head = "| load | pycharrnn default | 1 thread | all threads | default / best | paired | "
        if base:
            head += "baseline default | baseline / best | baseline paired | "
        out += [f"**{task}** ({UNITS[task]})", "",
                head + "torch default | torch 1 thread |",
                "|---" * (8 + 3 * base) + "|"]
        pairs = paired.get(task, {})
        fmt = "{:,.2f}" if task == "train" else "{:,.0f}"
        for row, d in rows.items():
            best = max(d.get("pc-1", 0), d.get("pc-all", 0))
            cell = lambda k: fmt.format(d[k]) if k in d else "-"  # noqa: E731
            ratio = lambda k: f"{d[k] / best:.2f}" if best and k in d else "-"  # noqa: E731
            pair = lambda k: (f"{statistics.median(pairs[row][k]):.2f}"  # noqa: E731
                              if pairs.get(row, {}).get(k) else "-")
            line = (f"| {row} | {cell('pc-default')} | {cell('pc-1')} | {cell('pc-all')} | "
                    f"{ratio('pc-default')} | {pair('pc-default')} | ")
            if base:
                line += f"{cell('base-default')} | {ratio('base-default')} | {pair('base-default')} | "
            out.append(line + f"{cell('torch-default')} | {cell('torch-1')} |")
        out.append("")
        wide = [f"{row} {impl} ({fmt.format(min(v))} to {fmt.format(max(v))})"
                for row, d in res.get("samples", {}).get(task, {}).items()
                for impl, v in d.items() if impl in RATIO_IMPLS and v
                and (min(v) <= 0 or max(v) / min(v) > SPREAD)]
        if wide:
            out += [f"Repeats spanning more than {SPREAD:g}x: " + "; ".join(wide) + ".", ""]
    if res["skipped"]:
        out.append("Not measured (no cgroup could be made): " + ", ".join(res["skipped"]))
    if res.get("failed"):
        out += ["", "Failed (not in the medians):"] + [f"- {f}" for f in res["failed"]]
    return "\n".join(out)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help=f"only the rows {QUICK_ROWS}")
    p.add_argument("--rows", help="comma-separated rows (default: all): " + ", ".join(ROWS))
    p.add_argument("--impls", help="comma-separated implementations: " + ", ".join(IMPLS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, help="per task and measurement (default 2; "
                                                      "8 with --windows)")
    p.add_argument("--warmup", type=float, default=WARMUP,
                   help="seconds of calls before each measurement")
    p.add_argument("--json", help="where the results go (default: contention.json, "
                                  "or contention_windows.json with --windows, beside this file)")
    p.add_argument("--markdown", help="also write the tables to this file")
    p.add_argument("--baseline", metavar="PYTHON",
                   help="another interpreter whose pycharrnn (an older build) runs as base-default, "
                        "interleaved with this one")
    p.add_argument("--windows", choices=TASKS, metavar="TASK",
                   help="time TASK per half-second window from a cold start in fresh processes "
                        "instead of the table (--seconds 8 unless given; see above)")
    p.add_argument("--merge", nargs="+", metavar="JSON",
                   help="measure nothing: pool the repeats of these earlier results and "
                        "write --json and the tables")
    a = p.parse_args(argv)
    if a.merge:
        try:
            res = merge([json.loads(Path(f).read_text()) for f in a.merge])
        except (OSError, ValueError, KeyError) as e:
            p.error(f"--merge: {e}")
        write_results(res, a.json or DEFAULT_JSON, a.markdown)
        return 0
    if a.worker:
        print(_MARK + json.dumps(worker(json.loads(a.worker))), flush=True)
        return 0
    rows = a.rows.split(",") if a.rows else (QUICK_ROWS if a.quick else ROWS)
    impls = a.impls.split(",") if a.impls else [i for i in IMPLS if _have_torch()
                                                or not i.startswith("torch")]
    unknown = [i for i in impls if i not in IMPLS + BASE_IMPLS]
    if unknown:
        p.error(f"--impls: unknown {unknown}; choose from {', '.join(IMPLS + BASE_IMPLS)}")
    if a.baseline:
        if not Path(a.baseline).exists():
            p.error(f"--baseline: no interpreter at {a.baseline}")
        if "base-default" not in impls:
            impls.append("base-default")
    elif any(i.startswith("base") for i in impls):
        p.error("--impls: base-* columns need --baseline PYTHON")
    rows = [r for r in rows if _have_torch() or r != "pool torch"]
    if a.windows:
        res = trace_windows(rows, a.repeats, 8.0 if a.seconds is None else a.seconds, impls,
                            a.windows, baseline=a.baseline)
        from pycharrnn.files import atomic_write
        atomic_write(a.json or DEFAULT_WINDOWS_JSON,
                     lambda f: f.write(json.dumps(res, indent=1).encode()))
        print(windows_summary(res, a.warmup))
        return 0
    res = measure(rows, a.repeats, 2.0 if a.seconds is None else a.seconds, impls,
                  warmup=a.warmup, baseline=a.baseline)
    write_results(res, a.json or DEFAULT_JSON, a.markdown)
    return 0


def write_results(res: Dict[str, Any], json_path: str, markdown_path: Optional[str]) -> None:
    """The JSON and the tables (each through a temporary file), the tables
    printed too."""
    # Here, not at the top: a torch worker runs this file without pycharrnn's core.
    from pycharrnn.files import atomic_write

    atomic_write(json_path, lambda f: f.write(json.dumps(res, indent=1).encode()))
    text = markdown(res)
    print(text)
    if markdown_path:
        atomic_write(markdown_path, lambda f: f.write(text.encode()))


if __name__ == "__main__":
    sys.exit(main())
