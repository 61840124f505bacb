"""Benchmark harness: pycharrnn vs PyTorch vs a plain NumPy implementation.

Workloads (:class:`Config`): task "train" (one step = forward + BPTT +
optimizer update on a [B, T] chunk, the hidden state carried and detached
between steps; throughput = B*T chars per step / seconds) or "sample"
(generate characters one at a time at B=1; chars/s).

Every measurement group runs in a worker subprocess (this file run by its
path: ``python benchmarks/harness.py --worker JOB``) whose environment pins
OPENBLAS_NUM_THREADS / OMP_NUM_THREADS to the thread count (OpenBLAS reads it
once, when numpy is imported) and drops OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE.
All implementations of one config run in the same worker, interleaved: for
each repeat, each implementation runs for ``seconds`` in turn; medians are
reported. Peak memory is measured in a fresh worker per (config,
implementation).

OpenMP and OpenBLAS threads spin while they wait, so other load on the cores
distorts multi-threaded numbers badly (10-100x at 2 threads on 2 cores): the
driver waits for the machine to go idle before each measurement and flags rows
measured under other load.

This file lives in the checkout's benchmarks/ folder (it is not installed with
the package) and times the installed pycharrnn. Run the benchmark with
``python benchmarks/run.py --quick`` from the root of the checkout
(``--help`` for the options).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from pycharrnn.files import atomic_write
from pycharrnn.reference import GATES, NumpyCharRNN

# make_batches, make_step, measure and cpu_model are shared with benchmarks/loops.py.
__all__ = ["Config", "QUICK", "FULL", "flops_per_char", "check", "run", "format_markdown",
           "make_batches", "make_step", "measure", "cpu_model"]
IMPLS = ("pycharrnn", "torch", "numpy")
SGEMM_SIZES = (1024, 2048)
SGEMM_TRIES = 5  # the best of these is kept, at the start and at the end of a run
SAMPLE_CHARS = 200  # characters generated per sampling call (after a 10-id prime)
MEMORY_STEPS = 3
LOADED = 0.1  # cores of other load above which a row is flagged as unreliable
_MARK = "@@RESULT "  # prefixes the worker's JSON line on its stdout
PAUSE = 0.1  # seconds between measurements: lets idle BLAS/OpenMP threads stop spinning
FLOP_FORMULA = (
    "FLOPs/char (a multiply-add = 2): forward = sum over layers k of 2*G*H*(in_k + H) "
    "+ 2*H*V (decoder), G = 1/3/4 for rnn/gru/lstm, in_0 = E (0 for one-hot input: a "
    "gather), in_k = H; training = 3 x forward; sampling = forward. "
    "GFLOP/s = FLOPs/char * chars/s / 1e9.")


@dataclass(frozen=True)
class Config:
    """One workload. E=None means one-hot input. ``opt`` is the optimizer of
    every implementation ("adam": lr 2e-3; "adagrad": min-char-rnn's, lr 0.1,
    eps 1e-8 inside the sqrt, gradients clipped to [-5, 5]). ``scaling``: also
    time pycharrnn at 1 thread; ``memory``: measure peak memory of training."""
    task: str
    cell: str
    H: int
    L: int
    E: Optional[int]
    B: int
    T: int
    V: int = 65
    opt: str = "adam"
    scaling: bool = False
    memory: bool = False
    name: str = ""


def _lab(cell, B, **kw):
    return Config("train", cell, 512, 3, 100, B, 50, name="lab", **kw)


MIN_CHAR_RNN = Config("train", "rnn", 100, 1, None, 1, 25, opt="adagrad", name="min-char-rnn")
QUICK: List[Config] = [
    Config("train", "rnn", 128, 1, None, 1, 50, name="small"),
    MIN_CHAR_RNN,
    Config("train", "gru", 128, 1, None, 1, 50, name="small"),
    Config("train", "lstm", 128, 1, None, 1, 50, name="small"),
    _lab("rnn", 32, memory=True),
    Config("sample", "lstm", 512, 3, 100, 1, 1, name="lab"),
]
FULL: List[Config] = (
    [Config("train", c, 128, 1, None, 1, 50, name="small") for c in GATES]
    + [Config("train", c, 512, 3, 100, 1, 50, name="lab") for c in GATES]
    + [MIN_CHAR_RNN]
    + [_lab(c, 32) for c in GATES]
    + [_lab(c, 128, scaling=True, memory=True) for c in GATES]
    + [Config("sample", c, 512, 3, 100, 1, 1, name="lab") for c in GATES])


def flops_per_char(cfg: Config) -> float:
    """FLOPs per character (see FLOP_FORMULA): forward = sum_k 2*G*H*(in_k + H)
    + 2*H*V with in_0 = E (0 for one-hot), in_k = H; training = 3 x forward."""
    G, H = GATES[cfg.cell], cfg.H
    fwd = 2 * H * cfg.V
    for k in range(cfg.L):
        fwd += 2 * G * H * ((cfg.E or 0) if k == 0 else H) + 2 * G * H * H
    return float(3 * fwd if cfg.task == "train" else fwd)


def numpy_optimizer(net: NumpyCharRNN, opt: str) -> Callable[[], None]:
    """A step function updating ``net.flat`` from ``net.gflat`` (see Config.opt)."""
    if opt == "adagrad":
        mem = np.zeros_like(net.flat)

        def adagrad():
            gr = np.clip(net.gflat, -5.0, 5.0)
            mem[...] += gr * gr
            net.flat[...] -= 0.1 * gr / np.sqrt(mem + 1e-8)
        return adagrad
    m, v, t = np.zeros_like(net.flat), np.zeros_like(net.flat), [0]
    lr, b1, b2, eps = 2e-3, 0.9, 0.999, 1e-8

    def adam():
        t[0] += 1
        gr = net.gflat
        m[...] = b1 * m + (1 - b1) * gr
        v[...] = b2 * v + (1 - b2) * gr * gr
        denom = np.sqrt(v) / math.sqrt(1 - b2 ** t[0]) + eps
        net.flat[...] -= (lr / (1 - b1 ** t[0])) * m / denom
    return adam


def _pycharrnn_optimizer(model, opt: str):
    import pycharrnn

    if opt == "adagrad":
        return pycharrnn.optim.AdaGrad(model, lr=0.1, eps=1e-8, clip_value=5.0,
                                       eps_inside_sqrt=True)
    return pycharrnn.optim.Adam(model, lr=2e-3)


def check(tol: float = 1e-6, verbose: bool = False) -> Dict[str, float]:
    """Verify in float64 that the NumPy baseline computes what pycharrnn does:
    for every cell, one-hot and embedding input, the same weights and data give
    the same loss, final state and gradients over two optimizer steps, and the
    same parameters after them. Returns {case: max relative error}; raises
    AssertionError when one exceeds ``tol``."""
    import pycharrnn

    V, H, L, B, T = 11, 7, 2, 3, 5
    rng = np.random.default_rng(0)
    errors = {}

    def rel(a, b):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        return float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12))

    for cell in GATES:
        for E, opt in ((None, "adagrad"), (5, "adam")):
            m = pycharrnn.CharRNN(V, H, L, cell, embedding_dim=E, dtype="float64", seed=1)
            ref = NumpyCharRNN(cell, V, H, L, E, np.float64)
            ref.flat[...] = 0.0
            for name, a in m.state_dict().items():
                ref.p[name][...] = a
            ropt, popt = numpy_optimizer(ref, opt), _pycharrnn_optimizer(m, opt)
            s1 = tuple(rng.standard_normal((2, L, B, H)) * 0.5) if cell == "lstm" \
                else rng.standard_normal((L, B, H)) * 0.5
            s2, err = s1, 0.0
            for _ in range(2):
                x, y = rng.integers(0, V, (2, B, T)).astype(np.int32)
                l1, s1 = m.forward_backward(x, y, s1)
                l2, s2 = ref.forward_backward(x, y, s2)
                err = max(err, abs(l1 - l2) / abs(l2), rel(np.stack(s1), np.stack(s2)),
                          *(rel(m.grads[k], ref.g[k]) for k in ref.g))
                popt.step()
                ropt()
            case = f"{cell}/{'one-hot' if E is None else 'E=%d' % E}/{opt}"
            errors[case] = max(err, rel(m.flat_params, ref.flat))
            if verbose:
                print(f"check {case}: max rel err {errors[case]:.1e}")
    bad = {k: v for k, v in errors.items() if not v <= tol}
    if bad:
        raise AssertionError(f"NumPy baseline differs from pycharrnn: {bad} (tol {tol})")
    return errors


# ------------------------------------------------------------------- implementations
def make_batches(cfg: Config, data: Optional[str], count: int = 32):
    """(V, [(x, y) int32 [B, T]]): random ids, or the text at ``data``."""
    try:
        from pycharrnn.data import Batches
    except ImportError:  # an earlier pycharrnn (loops.py --before)
        from pycharrnn.train import Batches

    if data:
        from pycharrnn import Vocab

        with open(data, encoding="utf-8") as f:
            text = f.read()
        vocab = Vocab.from_text(text)
        ids, V = vocab.encode(text), len(vocab)
    else:
        ids, V = np.random.default_rng(0).integers(0, cfg.V, 1 << 18).astype(np.int32), cfg.V
    b = Batches(ids, cfg.B, cfg.T)
    return V, [b.next()[:2] for _ in range(max(1, min(count, b.chunks_per_epoch)))]


def _torch_net(cfg: Config, V: int):
    """The same model in torch (pycharrnn.torch_compat.to_torch), in training
    mode, and its zero initial state."""
    import torch

    import pycharrnn
    from pycharrnn.torch_compat import to_torch

    net = to_torch(pycharrnn.CharRNN(V, cfg.H, cfg.L, cfg.cell, embedding_dim=cfg.E, seed=0))
    z = torch.zeros(cfg.L, cfg.B, cfg.H)
    return net.train(), ((z, z.clone()) if cfg.cell == "lstm" else z)


def make_step(impl: str, cfg: Config, V: int, batches, threads: int):
    """(prepare, step, chars per step): ``prepare()`` sets the thread count."""
    rr = {"i": 0}
    prime = np.concatenate([x.reshape(-1) for x, _ in batches])[:10].astype(np.int32)

    def nxt():
        rr["i"] += 1
        return batches[rr["i"] % len(batches)]

    if impl == "torch":
        import torch
        import torch.nn.functional as F

        net, state = _torch_net(cfg, V)
        prepare = lambda: torch.set_num_threads(threads)  # noqa: E731
        if cfg.task == "sample":
            tprime = torch.from_numpy(prime.astype(np.int64)).reshape(1, -1)

            @torch.no_grad()
            def sample():
                logits, st = net(tprime, None)
                for _ in range(SAMPLE_CHARS):
                    x = torch.multinomial(torch.softmax(logits[0, -1], -1), 1).reshape(1, 1)
                    logits, st = net(x, st)
            return prepare, sample, SAMPLE_CHARS
        tb = [(torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y.astype(np.int64)))
              for x, y in batches]
        params = list(net.parameters())
        opt = torch.optim.Adagrad(params, lr=0.1, eps=1e-8) if cfg.opt == "adagrad" \
            else torch.optim.Adam(params, lr=2e-3)
        st = [state]

        def train():
            rr["i"] += 1
            x, y = tb[rr["i"] % len(tb)]
            opt.zero_grad(set_to_none=True)
            logits, s = net(x, st[0])
            F.cross_entropy(logits.reshape(-1, V), y.reshape(-1)).backward()
            if cfg.opt == "adagrad":
                torch.nn.utils.clip_grad_value_(params, 5.0)
            opt.step()
            st[0] = tuple(t.detach() for t in s) if isinstance(s, tuple) else s.detach()
        return prepare, train, cfg.B * cfg.T

    if impl == "numpy":
        net = NumpyCharRNN(cfg.cell, V, cfg.H, cfg.L, cfg.E, dtype=np.float32)
        update, fb = numpy_optimizer(net, cfg.opt), net.forward_backward
        prepare = lambda: None  # noqa: E731  (OpenBLAS: OPENBLAS_NUM_THREADS)
    else:
        import pycharrnn

        n_threads = 1 if impl == "pycharrnn@1" else threads
        net = pycharrnn.CharRNN(V, cfg.H, cfg.L, cfg.cell, embedding_dim=cfg.E, seed=0)
        update, fb = _pycharrnn_optimizer(net, cfg.opt).step, net.forward_backward
        prepare = lambda: pycharrnn.set_num_threads(n_threads)  # noqa: E731
    if cfg.task == "sample":
        seed = [0]

        def sample():
            seed[0] += 1
            net.sample_ids(SAMPLE_CHARS, prime=prime, seed=seed[0])
        return prepare, sample, SAMPLE_CHARS
    st = [net.initial_state(cfg.B)]

    def train():
        x, y = nxt()
        st[0] = fb(x, y, st[0])[1]
        update()
    return prepare, train, cfg.B * cfg.T


def measure(step, chars: int, seconds: float) -> float:
    """chars/s over as many calls as fit in ``seconds`` (at least one)."""
    n, t0 = 0, time.perf_counter()
    while True:
        step()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n * chars / dt


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# ------------------------------------------------------------------------- workers
def _worker(job: Dict[str, Any]) -> Dict[str, Any]:
    """Runs in the subprocess. Modes: "sgemm" (numpy float32 matmul GFLOP/s
    per size), "speed" (interleaved chars/s of every impl of a config),
    "memory" (peak RSS growth of one impl's model and training steps)."""
    mode, threads = job["mode"], job["threads"]
    if mode == "sgemm":
        rates = {}
        for n in job["sizes"]:
            a, b = (np.random.default_rng(0).standard_normal((2, n, n)).astype(np.float32))
            a @ b
            best = math.inf
            for _ in range(SGEMM_TRIES):
                t0 = time.perf_counter()
                a @ b
                best = min(best, time.perf_counter() - t0)
            rates[str(n)] = 2.0 * n ** 3 / best / 1e9
        return {"gflops": rates}
    cfg = Config(**job["config"])
    if "torch" in job["impls"]:
        # Before the memory baseline below: the import is not the model's memory.
        import torch  # noqa: F401
    V, batches = make_batches(cfg, job.get("data"))
    if mode == "memory":  # peak RSS growth: model creation + MEMORY_STEPS training steps
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
        except OSError:
            pass  # then the growth of the lifetime peak is measured
        before = _status_kib("VmHWM")
        prepare, step, _ = make_step(job["impls"][0], cfg, V, batches, threads)
        prepare()
        for _ in range(MEMORY_STEPS):
            step()
        return {"peak_mib": (_status_kib("VmHWM") - before) / 1024.0}
    runners = {impl: make_step(impl, cfg, V, batches, threads) for impl in job["impls"]}
    if cfg.scaling and threads > 1 and "pycharrnn" in runners:
        runners["pycharrnn@1"] = make_step("pycharrnn@1", cfg, V, batches, threads)
    for prepare, step, chars in runners.values():  # warm-up
        prepare()
        step()
        measure(step, chars, job["seconds"] / 3)
    rates: Dict[str, List[float]] = {impl: [] for impl in runners}
    for _ in range(job["repeats"]):
        for impl, (prepare, step, chars) in runners.items():
            prepare()
            time.sleep(PAUSE)
            rates[impl].append(measure(step, chars, job["seconds"]))
    return {"rates": rates, "V": V}


class _LoadMeter:
    """``.load``: CPUs (in cores) kept busy meanwhile by anything but this
    process and its finished children: other work on the machine, which
    distorts multi-threaded timings badly. NaN where /proc/stat is missing."""

    @staticmethod
    def _sample() -> Tuple[float, float, float]:
        import resource

        s, c = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                    resource.RUSAGE_CHILDREN))
        try:  # CPU-seconds all CPUs spent busy since boot (minus idle and iowait)
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:9]]
            busy = (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError):
            busy = math.nan
        return time.perf_counter(), busy, s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime

    def __enter__(self):
        self.start = self._sample()
        return self

    def __exit__(self, *exc):
        (t0, b0, o0), (t1, b1, o1) = self.start, self._sample()
        self.load = max(0.0, (b1 - b0 - (o1 - o0)) / max(t1 - t0, 1e-9))


def _wait_for_idle(max_wait: float, log: Callable[[str], None], limit: float = 0.2) -> float:
    """Wait (up to max_wait s) until other processes use under ``limit`` cores."""
    t0, warned = time.perf_counter(), False
    while True:
        with _LoadMeter() as m:
            time.sleep(0.25)
        if not m.load >= limit or time.perf_counter() - t0 >= max_wait:
            return m.load
        if not warned:
            log(f"waiting up to {max_wait:.0f} s for other load ({m.load:.1f} cores busy) to end")
            warned = True


def _call_worker(job: Dict[str, Any], retries: int = 1) -> Dict[str, Any]:
    """Run ``job`` in a worker subprocess (retried once: the package may be
    being rebuilt); its result or {"error": [last line of its output]}, plus
    "background_load" (cores busy with other work meanwhile)."""
    env = dict(os.environ)
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(k, None)
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(job["threads"])
    # This file run by its path: sys.path then starts with benchmarks/, not the
    # working directory, so a source checkout there (no compiled _core) cannot
    # shadow the installed package.
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(job)]
    for attempt in range(retries + 1):
        with _LoadMeter() as meter:
            p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith(_MARK)]
        if p.returncode == 0 and lines:
            return {**json.loads(lines[-1][len(_MARK):]), "background_load": meter.load}
        if attempt < retries:
            time.sleep(2.0)
    return {"error": (p.stderr or p.stdout).strip().splitlines()[-1:] or [f"rc {p.returncode}"],
            "background_load": meter.load}


# ------------------------------------------------------------------------- driver
def _default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), for the results' header."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """The CPU's model name with its family and model numbers where
    /proc/cpuinfo has them ("AMD EPYC (family 26, model 2)"): a virtual
    machine's model name alone can be the same for CPUs of different
    generations and speeds."""
    name, ids = cpu_model(), {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("cpu family", "model") and key not in ids:
                    ids[key] = value.strip()
                if not line.strip():
                    break  # the first processor's block is enough
    except OSError:
        pass
    if "cpu family" in ids and "model" in ids:
        return f"{name} (family {ids['cpu family']}, model {ids['model']})"
    return name


def _torch_version() -> Optional[str]:
    """torch's version when it is installed (without importing it), else None."""
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return None
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(matrix: Sequence[Config], threads: Optional[int] = None, repeats: int = 3,
        seconds: float = 0.5, json_path: Optional[str] = None,
        impls: Sequence[str] = IMPLS, data: Optional[str] = None,
        sgemm_sizes: Sequence[int] = SGEMM_SIZES, idle_wait: float = 10.0,
        log: Callable[[str], None] = _log) -> Dict[str, Any]:
    """Measure every config of ``matrix`` (see the module docstring); returns
    {"meta": {...}, "rows": [...]} and writes it to ``json_path`` as JSON.

    ``impls``: a subset of IMPLS (torch is dropped when it is not installed).
    ``data``: a text file to train on (its vocabulary sets V) instead of random
    ids. Before each measurement the harness waits up to ``idle_wait`` s for
    other processes to leave the CPUs; each row records the load it saw anyway
    ("background_load", in cores)."""
    import pycharrnn

    threads = threads or _default_threads()
    torch_version = _torch_version()
    impls = [i for i in impls if i != "torch" or torch_version]
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "cpu": cpu_model(),
        "cpu_count": os.cpu_count(), "build_info": pycharrnn.build_info(),
        "pycharrnn": pycharrnn.__version__, "numpy": np.__version__,
        "torch": torch_version if "torch" in impls else None,
        "python": platform.python_version(), "threads": threads, "repeats": repeats,
        "seconds": seconds, "data": data or "random ids", "flop_formula": FLOP_FORMULA,
        "sgemm": {},
    }
    t_start = time.perf_counter()
    sgemm_threads = sorted({threads} | ({1} if any(c.scaling for c in matrix) else set()))

    def measure_sgemm(when: str) -> None:
        # Measured before and after the matrix, keeping the best per size: a
        # shared machine can lose a core for a second, and one unlucky
        # window would make every "% SGEMM" look better than it is.
        for n in sgemm_threads:
            _wait_for_idle(idle_wait, log)
            res = _call_worker({"mode": "sgemm", "threads": n, "sizes": list(sgemm_sizes)})
            rates = res.get("gflops", {})
            best = meta["sgemm"].setdefault(str(n), {})
            for k, v in rates.items():
                best[k] = max(best.get(k, 0.0), v)
            log(f"SGEMM {n} thread(s), {when}: " + ", ".join(
                f"{k}^3 {v:.1f} GFLOP/s" for k, v in rates.items()))

    measure_sgemm("start")
    rows = []
    for cfg in matrix:
        job = {"mode": "speed", "threads": threads, "config": asdict(cfg), "impls": impls,
               "repeats": repeats, "seconds": seconds, "data": data}
        _wait_for_idle(idle_wait, log)
        res = _call_worker(job)
        rates = res.get("rates", {})
        med = {k: statistics.median(v) for k, v in rates.items()}
        if "V" in res:
            cfg = Config(**{**asdict(cfg), "V": res["V"]})
        fpc = flops_per_char(cfg)
        pyc = med.get("pycharrnn")
        row: Dict[str, Any] = {**asdict(cfg), "threads": threads, "flops_per_char": fpc,
                               "chars_per_s": {k: v for k, v in med.items() if "@" not in k},
                               "runs": rates, "errors": {},
                               "background_load": res["background_load"]}
        if "error" in res:
            row["errors"]["speed"] = res["error"]
        row["gflops"] = {k: fpc * v / 1e9 for k, v in row["chars_per_s"].items()}
        for other in ("torch", "numpy"):
            row[f"ratio_vs_{other}"] = pyc / med[other] if pyc and med.get(other) else None
        one = med.get("pycharrnn@1")
        row["chars_per_s_1thread"] = one
        row["speedup_1_to_n"] = pyc / one if pyc and one else None
        row["peak_mib"] = {}
        if cfg.memory and cfg.task == "train":
            for impl in impls:
                m = _call_worker({**job, "mode": "memory", "impls": [impl]})
                if "peak_mib" in m:
                    row["peak_mib"][impl] = m["peak_mib"]
                else:
                    row["errors"][f"memory {impl}"] = m.get("error")
        rows.append(row)
        log(f"[{time.perf_counter() - t_start:6.1f}s] {_label(row)}: " + ", ".join(
            f"{k} {v:,.0f} chars/s" for k, v in med.items()) +
            (f"  ERRORS {row['errors']}" if row["errors"] else ""))
    measure_sgemm("end")
    best_sgemm = max(meta["sgemm"][str(threads)].values(), default=float("nan"))
    for row in rows:
        g = row["gflops"].get("pycharrnn")
        row["pct_sgemm"] = 100 * g / best_sgemm if g and math.isfinite(best_sgemm) else None
    meta["wall_s"] = time.perf_counter() - t_start
    results = {"meta": meta, "rows": rows}
    if json_path:
        atomic_write(json_path, lambda f: f.write(json.dumps(results, indent=1).encode()))
    return results


def _label(r) -> str:
    e = "one-hot" if r["E"] is None else f"E={r['E']}"
    return f"{r['task']} {r['cell']} H={r['H']} L={r['L']} {e} B={r['B']} T={r['T']}"


def format_markdown(results: Dict[str, Any]) -> str:
    """The results as a markdown table with a header and a footer."""
    meta = results["meta"]

    def num(v, fmt="{:,.0f}"):
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)

    sg = "; ".join(f"{n} thread(s): " + ", ".join(f"{k}^3 {v:.1f}" for k, v in d.items())
                   for n, d in meta.get("sgemm", {}).items())
    out = [f"# pycharrnn benchmark ({meta.get('date', '?')})", "",
           f"- CPU: {meta.get('cpu', '?')} ({meta.get('cpu_count', '?')} logical CPUs); "
           f"threads: {meta.get('threads')}",
           f"- pycharrnn {meta.get('pycharrnn', '?')}, build_info: {meta.get('build_info')}",
           f"- numpy {meta.get('numpy')}, torch {meta.get('torch') or 'not used'}, "
           f"python {meta.get('python', '?')}",
           f"- numpy SGEMM (float32 square matmul, best of {SGEMM_TRIES} at the start and "
           f"{SGEMM_TRIES} at the end of the run) GFLOP/s: {sg or '-'}",
           f"- median of {meta.get('repeats')} interleaved repeats of {meta.get('seconds')} s "
           f"per implementation; data: {meta.get('data')}", "",
           "| task | cell | H | L | E | B | T | opt | threads | pycharrnn chars/s | "
           "torch chars/s | numpy chars/s | vs torch | vs numpy | GFLOP/s | % SGEMM | "
           "peak MiB (pycharrnn / torch) | speedup 1->N threads |",
           "|" + "---|" * 18]
    for r in results["rows"]:
        cps, mem = r.get("chars_per_s", {}), r.get("peak_mib", {})
        memtxt = "-" if not mem else f"{num(mem.get('pycharrnn'), '{:.1f}')} / " \
                                     f"{num(mem.get('torch'), '{:.1f}')}"
        loaded = (r.get("background_load") or 0) > LOADED
        cells = [r["task"] + (" (!)" if loaded else ""), r["cell"], r["H"], r["L"],
                 "one-hot" if r["E"] is None else r["E"],
                 r["B"], r["T"] if r["task"] == "train" else "-",
                 r["opt"] if r["task"] == "train" else "-", r["threads"],
                 num(cps.get("pycharrnn")), num(cps.get("torch")), num(cps.get("numpy")),
                 num(r.get("ratio_vs_torch"), "{:.2f}x"), num(r.get("ratio_vs_numpy"), "{:.2f}x"),
                 num(r.get("gflops", {}).get("pycharrnn"), "{:.2f}"),
                 num(r.get("pct_sgemm"), "{:.1f}%"), memtxt,
                 num(r.get("speedup_1_to_n"), "{:.2f}x")]
        out.append("| " + " | ".join(str(c) for c in cells) + " |")
    errs = [f"- {_label(r)}: {r['errors']}" for r in results["rows"] if r.get("errors")]
    out += ["", "Ratios are pycharrnn / other (above 1: pycharrnn is faster). "
            "opt: adam = Adam lr 2e-3; adagrad = min-char-rnn's AdaGrad (lr 0.1, clip 5). "
            "Sampling: B=1, temperature 1, "
            f"{SAMPLE_CHARS} chars per call after a 10-char prime.",
            f"{meta.get('flop_formula', FLOP_FORMULA)} % SGEMM = pycharrnn GFLOP/s / the "
            "best numpy SGEMM rate at the same thread count.",
            f"Peak MiB: growth of peak RSS (VmHWM) in a fresh process from just before model "
            f"creation to after {MEMORY_STEPS} training steps.",
            f"Speedup: pycharrnn at {meta.get('threads')} threads / at 1 thread, interleaved "
            "in the same process."]
    loaded = [f"- {_label(r)}: {r['background_load']:.2f} cores" for r in results["rows"]
              if (r.get("background_load") or 0) > LOADED]
    if loaded:
        out += ["", "(!) Other processes kept CPUs busy during these measurements (average "
                "over the row's worker); their numbers, multi-threaded ones above all, are "
                "unreliable:"] + loaded
    if errs:
        out += ["", "Errors:"] + errs
    if "wall_s" in meta:
        out += ["", f"Wall time: {meta['wall_s']:.1f} s"]
    return "\n".join(out) + "\n"


def _worker_main(argv: Optional[Sequence[str]] = None) -> int:
    """The entry of a worker subprocess, which run() starts as ``python
    benchmarks/harness.py --worker JOB``: runs JOB and prints its result as one
    JSON line. To run the benchmark, use ``python benchmarks/run.py --quick``."""
    p = argparse.ArgumentParser(
        prog="python benchmarks/harness.py",
        description="A worker of the pycharrnn benchmark harness, started by its run(). "
        "To run the benchmark: python benchmarks/run.py --quick (--help for the options).")
    p.add_argument("--worker", required=True, metavar="JOB", help="the job, as JSON")
    print(_MARK + json.dumps(_worker(json.loads(p.parse_args(argv).worker))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main())
