"""Data-parallel training on MPI: what a step costs on 1 and 2 ranks, and
what an Allreduce costs against its size, beside PyTorch's DistributedDataParallel
(gloo) in the same run.

    python benchmarks/distributed.py [--repeats 3] [--steps 12] \
        [--json benchmarks/distributed.json] [--results benchmarks/RESULTS.md]

Needs ``pip install ".[mpi]"`` (mpi4py and MPICH's mpiexec); torch==2.13.0
for the PyTorch columns (skipped without it).

1. Allreduce (sum, float32, in place) on 2 ranks of this machine for
   messages of 4 KB to 32 MB and the 7.6M-parameter (30.4 MB) message of the
   lab model in the issue: mpi4py's ``Allreduce`` (what the Trainer calls)
   and torch.distributed's gloo ``all_reduce``, interleaved, medians.
2. Training steps (forward, BPTT, the reduction, the update; Adam, B=32,
   T=50, V=65) for a small model (LSTM 128x1, one-hot) and the lab model
   (LSTM 512x3, E=100): one process with 1 thread, one process with 2
   threads, 2 ranks of 1 thread each (each reading 16 of the 32 streams).
   pycharrnn steps ``Trainer.step`` (``distributed=True`` for the ranks);
   PyTorch the same model (nn.Embedding or one-hot, nn.LSTM, nn.Linear,
   cross-entropy, torch.optim.Adam) and DistributedDataParallel with gloo
   for the ranks. Each configuration runs in a fresh launch; the repeats
   interleave them; medians.

Scaling efficiency = throughput on 2 ranks / (2 x throughput of 1 rank of
1 thread): 1.0 is perfect. On this 2-core machine "2 ranks" and "2 threads"
use the same two cores, so the comparison between them is the point.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

HERE = Path(__file__).resolve()
MARK = "@@DIST "
V, B, T = 65, 32, 50
MODELS = {"small": dict(H=128, L=1, E=None), "lab": dict(H=512, L=3, E=100)}
SIZES = [4 << 10, 64 << 10, 1 << 20, 4 << 20, 16 << 20, 32 << 20, 7_600_000 * 4]


def _emit(obj: Dict[str, Any]) -> None:
    print(MARK + json.dumps(obj), flush=True)


def _text_ids(n: int) -> np.ndarray:
    path = HERE.parents[2] / "shared" / "data" / "tinyshakespeare.txt"
    if path.exists():
        text = path.read_text(encoding="utf-8")
        vocab = sorted(set(text))[:V]
        lut = {c: i for i, c in enumerate(vocab)}
        return np.array([lut.get(c, 0) for c in text[:n]], np.int32)
    return np.random.default_rng(0).integers(0, V, n).astype(np.int32)


def _median_ms(times: List[float]) -> float:
    return 1e3 * statistics.median(times)


# ----------------------------------------------------------------- workers
def _torch_group(comm):
    """torch.distributed (gloo) over the same ranks, rendezvous from rank 0."""
    import torch.distributed as dist

    port = None
    if comm.rank == 0:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    port = comm.bcast(port, root=0)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=comm.rank, world_size=comm.size)
    return dist


def worker_allreduce(repeats: int) -> None:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    try:
        import torch
        torch.set_num_threads(1)
        dist = _torch_group(comm)
    except ImportError:
        torch = dist = None
    bufs = {n: np.ones(n // 4, np.float32) for n in SIZES}
    tbufs = {n: torch.from_numpy(bufs[n].copy()) for n in SIZES} if torch else {}
    times: Dict[str, Dict[int, List[float]]] = {"mpi": {n: [] for n in SIZES},
                                               "gloo": {n: [] for n in SIZES}}
    for rep in range(repeats + 1):  # the first round warms up
        for n in SIZES:
            reps = max(3, min(200, (64 << 20) // n))
            comm.Barrier()
            t0 = time.perf_counter()
            for _ in range(reps):
                comm.Allreduce(MPI.IN_PLACE, bufs[n], op=MPI.SUM)
            t = (time.perf_counter() - t0) / reps
            if rep:
                times["mpi"][n].append(t)
            if dist is not None:
                comm.Barrier()
                t0 = time.perf_counter()
                for _ in range(reps):
                    dist.all_reduce(tbufs[n])
                t = (time.perf_counter() - t0) / reps
                if rep:
                    times["gloo"][n].append(t)
    if comm.rank == 0:
        _emit({"kind": "allreduce", "sizes": SIZES,
               "mpi_ms": [_median_ms(times["mpi"][n]) for n in SIZES],
               "gloo_ms": [_median_ms(times["gloo"][n]) for n in SIZES] if dist else None})


def worker_steps(impl: str, model: str, threads: int, steps: int) -> None:
    ranks = int(os.environ.get("PMI_SIZE", "1"))
    comm = None
    if ranks > 1:
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
    cfg = MODELS[model]
    ids = _text_ids(B * T * (steps + 4) + 1 + 200_000)
    times: List[float] = []
    extra: Dict[str, Any] = {}
    if impl == "pycharrnn":
        import pycharrnn as pc

        pc.set_num_threads(threads)
        m = pc.CharRNN(V, cfg["H"], cfg["L"], "lstm", embedding_dim=cfg["E"], seed=0)
        tr = pc.Trainer(m, ids, batch_size=B, seq_length=T, optimizer=pc.optim.Adam(m, 2e-3),
                        val_fraction=0, distributed=comm is not None, progress=False)
        for i in range(steps + 2):
            if comm is not None:
                comm.Barrier()
            t0 = time.perf_counter()
            tr.step()
            if i >= 2:
                times.append(time.perf_counter() - t0)
        if tr.group is not None:
            extra["allreduce_ms"] = 1e3 * tr.group.reduce_seconds / tr.group.reduces
        extra["params"] = m.num_params
    else:
        import torch
        from torch import nn

        torch.set_num_threads(threads)
        torch.manual_seed(0)

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = nn.Embedding(V, cfg["E"]) if cfg["E"] else None
                self.rnn = nn.LSTM(cfg["E"] or V, cfg["H"], cfg["L"], batch_first=True)
                self.dec = nn.Linear(cfg["H"], V)

            def forward(self, x, state):
                inp = self.emb(x) if self.emb is not None else \
                    nn.functional.one_hot(x, V).float()
                out, state = self.rnn(inp, state)
                return self.dec(out), state

        net = Net()
        if comm is not None:
            _torch_group(comm)
            net = nn.parallel.DistributedDataParallel(net)
        opt = torch.optim.Adam(net.parameters(), 2e-3)
        rows = B // (comm.size if comm is not None else 1)
        first = rows * (comm.rank if comm is not None else 0)
        n = (ids.size - 1) // B
        data = torch.from_numpy(ids[: B * n + 1].astype(np.int64))
        state = None
        for i in range(steps + 2):
            x = torch.stack([data[(first + b) * n + i * T:(first + b) * n + i * T + T]
                             for b in range(rows)])
            y = torch.stack([data[(first + b) * n + i * T + 1:(first + b) * n + i * T + T + 1]
                             for b in range(rows)])
            if comm is not None:
                comm.Barrier()
            t0 = time.perf_counter()
            logits, state = net(x, state)
            state = tuple(s.detach() for s in state)
            loss = nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i >= 2:
                times.append(time.perf_counter() - t0)
    if comm is None or comm.rank == 0:
        _emit({"kind": "steps", "impl": impl, "model": model, "threads": threads,
               "ranks": ranks, "step_ms": _median_ms(times), **extra})


# ----------------------------------------------------------------- driver
def _launch(args: List[str], ranks: int) -> List[Dict[str, Any]]:
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    if not Path(mpiexec).exists():
        mpiexec = "mpiexec"
    cmd = ([mpiexec, "-n", str(ranks)] if ranks > 1 else []) + \
        [sys.executable, str(HERE), "--worker"] + args
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=HERE.parent,
                       timeout=1800)
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
    return [json.loads(ln[len(MARK):]) for ln in p.stdout.splitlines() if ln.startswith(MARK)]


def _has_torch() -> bool:
    return subprocess.run([sys.executable, "-c", "import torch"], capture_output=True).returncode == 0


def run(repeats: int, steps: int) -> Dict[str, Any]:
    torch_ok = _has_torch()
    impls = ["pycharrnn"] + (["torch"] if torch_ok else [])
    configs = [(impl, model, threads, ranks) for model in MODELS for impl in impls
               for threads, ranks in ((1, 1), (2, 1), (1, 2))]
    step_ms: Dict[str, List[float]] = {}
    reduce_ms: Dict[str, List[float]] = {}
    params: Dict[str, int] = {}
    for rep in range(repeats):
        for impl, model, threads, ranks in configs:
            key = f"{impl}/{model}/{threads}t/{ranks}r"
            r = _launch(["steps", impl, model, str(threads), str(steps)], ranks)[0]
            step_ms.setdefault(key, []).append(r["step_ms"])
            if "allreduce_ms" in r:
                reduce_ms.setdefault(key, []).append(r["allreduce_ms"])
            if "params" in r:
                params[model] = r["params"]
            print(f"repeat {rep + 1}/{repeats} {key}: {r['step_ms']:.1f} ms/step", flush=True)
    ar = _launch(["allreduce", str(repeats)], 2)[0]
    return {"machine": _machine(), "B": B, "T": T, "steps": steps, "repeats": repeats,
            "step_ms": {k: statistics.median(v) for k, v in step_ms.items()},
            "step_ms_all": step_ms,
            "allreduce_in_step_ms": {k: statistics.median(v) for k, v in reduce_ms.items()},
            "params": params, "allreduce": ar}


def _machine() -> str:
    try:
        import pycharrnn as pc
        info = pc.build_info()
        cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                    if ln.startswith("model name")), "?")
        return f"{cpu}, {os.cpu_count()} cores, pycharrnn {pc.__version__} ({info['simd']})"
    except Exception:  # noqa: BLE001
        return "?"


def table(res: Dict[str, Any]) -> str:
    lines = [f"Machine: {res['machine']}. B={res['B']}, T={res['T']}, Adam; medians of "
             f"{res['repeats']} interleaved launches of {res['steps']} timed steps.", "",
             "| model | implementation | 1 proc x 1 thread | 1 proc x 2 threads | "
             "2 ranks x 1 thread | 2 ranks: speedup, efficiency | 2 ranks vs 2 threads | "
             "Allreduce in the step |",
             "|---|---|---|---|---|---|---|---|"]
    sm = res["step_ms"]
    for model in MODELS:
        for impl in ("pycharrnn", "torch"):
            k = f"{impl}/{model}"
            if f"{k}/1t/1r" not in sm:
                continue
            one, two_t, two_r = sm[f"{k}/1t/1r"], sm[f"{k}/2t/1r"], sm[f"{k}/1t/2r"]
            ar = res["allreduce_in_step_ms"].get(f"{k}/1t/2r")
            cps = lambda ms: B * T / ms * 1e3  # noqa: E731
            lines.append(
                f"| {model} ({res['params'].get(model, 0) / 1e6:.2f}M params) | {impl} | "
                f"{one:.1f} ms ({cps(one):,.0f} chars/s) | {two_t:.1f} ms | {two_r:.1f} ms "
                f"({cps(two_r):,.0f} chars/s) | {one / two_r:.2f}x, {one / (2 * two_r):.2f} | "
                f"{two_t / two_r:.2f}x | "
                + (f"{ar:.2f} ms ({ar / two_r:.0%})" if ar is not None else "-") + " |")
    ar = res["allreduce"]
    lines += ["", "Allreduce (sum, float32, in place), 2 ranks on this machine:", "",
              "| message | MPI (mpi4py, MPICH) | GB/s | torch.distributed gloo | MPI / gloo |",
              "|---|---|---|---|---|"]
    for i, n in enumerate(ar["sizes"]):
        mpi = ar["mpi_ms"][i]
        gloo = ar["gloo_ms"][i] if ar["gloo_ms"] else None
        name = f"{n / 1e6:.1f} MB (7.6M params)" if n == 7_600_000 * 4 else \
            (f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB")
        lines.append(f"| {name} | {mpi:.3f} ms | {n / mpi / 1e6:.2f} | "
                     + (f"{gloo:.3f} ms | {gloo / mpi:.2f}x faster |" if gloo else "- | - |"))
    lines += ["", "Projection (a cost model, not a measurement): "
              + " ".join(projection.__doc__.split()), "", projection(res)]
    return "\n".join(lines)


#: The projection's assumptions: per-message latency and link bandwidth.
NETWORKS = (("10 Gb/s Ethernet, TCP (a = 50 us, b = 1.25 GB/s)", 50e-6, 1.25e9),
            ("100 Gb/s InfiniBand (a = 5 us, b = 12.5 GB/s)", 5e-6, 12.5e9))


def allreduce_model(n: int, nbytes: float, alpha: float, beta: float) -> float:
    """Seconds for an Allreduce of ``nbytes`` over ``n`` machines by
    reduce-scatter then allgather with recursive halving and doubling
    (MPICH's choice for large messages): 2 log2(n) latencies and each
    machine sending and receiving 2 (n - 1) / n of the message."""
    return 2 * np.log2(n) * alpha + 2 * (n - 1) / n * nbytes / beta if n > 1 else 0.0


def projection(res: Dict[str, Any]) -> str:
    """Efficiency at 8 and 64 machines like this one, each running one
    process of 2 threads on B=32 streams (the global batch grows with the
    machines): this run's step time t against t + the Allreduce time
    2 log2(N) a + 2 (N-1)/N S / b (reduce-scatter, then allgather, by
    recursive halving and doubling: MPICH's choice for large messages) for
    the gradient's S bytes, with an assumed latency a and bandwidth b per
    link; the reduction does not overlap the backward pass (it does not in
    pycharrnn)."""
    lines = ["| model (float32 gradient) | step on one machine | network | 8 machines | "
             "64 machines |", "|---|---|---|---|---|"]
    for model in MODELS:
        key = f"pycharrnn/{model}/2t/1r"
        if key not in res["step_ms"] or model not in res["params"]:
            continue
        compute = res["step_ms"][key] / 1e3
        nbytes = 4 * res["params"][model]
        for name, alpha, beta in NETWORKS:
            cells = []
            for n in (8, 64):
                t = allreduce_model(n, nbytes, alpha, beta)
                cells.append(f"{t * 1e3:.1f} ms a step, efficiency {compute / (compute + t):.2f}")
            lines.append(f"| {model} ({nbytes / 1e6:.1f} MB) | {compute * 1e3:.1f} ms | {name} "
                         f"| {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--json", type=Path, default=HERE.parent / "distributed.json")
    ap.add_argument("--results", type=Path, default=None,
                    help="RESULTS.md whose 'Data-parallel training' section is replaced")
    ap.add_argument("--from-json", action="store_true", help="only print the table of --json")
    a = ap.parse_args()
    if a.worker:
        if a.worker[0] == "allreduce":
            worker_allreduce(int(a.worker[1]))
        else:
            worker_steps(a.worker[1], a.worker[2], int(a.worker[3]), int(a.worker[4]))
        return
    res = json.loads(a.json.read_text()) if a.from_json else run(a.repeats, a.steps)
    if not a.from_json:
        a.json.write_text(json.dumps(res, indent=1) + "\n")
    text = table(res)
    print(text)
    if a.results is not None:
        _replace_section(a.results, text)


def _replace_section(path: Path, text: str) -> None:
    head = "## Data-parallel training (benchmarks/distributed.py)"
    old = path.read_text(encoding="utf-8")
    block = f"{head}\n\n{text}\n"
    if head in old:
        start = old.index(head)
        nxt = old.find("\n## ", start + len(head))
        new = old[:start] + block + (old[nxt + 1:] if nxt >= 0 else "")
    else:
        new = old.rstrip("\n") + "\n\n" + block
    tmp = path.with_suffix(".tmp")
    tmp.write_text(new, encoding="utf-8")
    tmp.replace(path)


if __name__ == "__main__":
    main()
