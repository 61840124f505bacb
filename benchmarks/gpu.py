"""pycharrnn's device model against PyTorch + cuDNN on the same GPU.

Training chars/s (forward + BPTT + Adam, the state carried between chunks)
for the lab model (LSTM and GRU, 512 x 3, embedding 100, T = 50) at B = 1,
32 and 128, and a 128 x 1 LSTM at B = 1; sampling chars/s at B = 1 against
torch's loop of one forward call per character; the most device memory each
held (pycharrnn: its buffers, `_core.cuda_memory`; torch: its allocator's
`max_memory_allocated`). Each side at its best: pycharrnn's K-step loop
(`CharRNN.train_steps`, K = 20 chunks per call), torch's cuDNN RNN with
Adam(fused=True). Implementations alternate within each repeat; the median
of the repeats is reported.

Run on a machine with an NVIDIA GPU, a CUDA build of pycharrnn and torch
with CUDA (.ci/gpu does): ``python benchmarks/gpu.py --json out.json
--markdown out.md``. Elsewhere it says why it cannot run and exits 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any, Callable, Dict, List

import numpy as np

V, T, K, E = 65, 50, 20, 100
TRAIN = [("lstm", 512, 3, 1), ("lstm", 512, 3, 32), ("lstm", 512, 3, 128),
         ("gru", 512, 3, 1), ("gru", 512, 3, 32), ("gru", 512, 3, 128), ("lstm", 128, 1, 1)]
SAMPLE = [("lstm", 512, 3), ("gru", 512, 3), ("lstm", 128, 1)]


def why_not() -> str:
    """Why this machine cannot run the benchmark ('' when it can)."""
    import pycharrnn as pc
    from pycharrnn.backend import device_unavailable

    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    return device_unavailable("cuda") or ("" if pc.build_info()["cuda"] else "no CUDA build")


def timed(fn: Callable[[], int], seconds: float, sync: Callable[[], None]) -> float:
    """Units per second of fn (which returns the units it did), after two warm-up calls."""
    for _ in range(2):
        fn()
    sync()
    done, t0 = 0, time.perf_counter()
    while True:
        done += fn()
        sync()
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return done / dt


def ids(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, shape).astype(np.int32)


def pc_train(cell: str, H: int, L: int, B: int):
    import pycharrnn as pc
    from pycharrnn import _core, optim

    m = pc.CharRNN(V, hidden_size=H, num_layers=L, cell=cell, embedding_dim=E, seed=0,
                   device="cuda")
    opt = optim.Adam(m, lr=2e-3)
    xs, ys = ids((K, B, T), 1), ids((K, B, T), 2)
    state = m.pack_state(None, B)
    lrs = np.full(K, 2e-3)

    def step() -> int:
        m.train_steps(xs, ys, state, lrs, opt)
        return K * B * T

    def peak() -> int:
        return int(_core.cuda_memory()[1])

    _core.cuda_memory(reset_peak=True)
    return step, peak


def torch_net(cell: str, H: int, L: int):
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(V, E)
            rnn = torch.nn.LSTM if cell == "lstm" else torch.nn.GRU
            self.rnn = rnn(E, H, L, batch_first=True)
            self.dec = torch.nn.Linear(H, V)

        def forward(self, x, h):
            out, h = self.rnn(self.emb(x), h)
            return self.dec(out), h

    return Net().cuda()


def torch_train(cell: str, H: int, L: int, B: int):
    import torch

    net = torch_net(cell, H, L)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3, fused=True)
    xs = torch.from_numpy(ids((K, B, T), 1)).long().cuda()
    ys = torch.from_numpy(ids((K, B, T), 2)).long().cuda()
    h: List[Any] = [None]

    def detach(s):
        return None if s is None else (tuple(t.detach() for t in s) if isinstance(s, tuple)
                                       else s.detach())

    def step() -> int:
        for k in range(K):
            logits, hn = net(xs[k], h[0])
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), ys[k].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            h[0] = detach(hn)
        return K * B * T

    torch.cuda.reset_peak_memory_stats()
    return step, lambda: int(torch.cuda.max_memory_allocated())


def pc_sample(cell: str, H: int, L: int, n: int = 2000):
    import pycharrnn as pc

    m = pc.CharRNN(V, hidden_size=H, num_layers=L, cell=cell, embedding_dim=E, seed=0,
                   device="cuda").eval()
    return lambda: int(m.sample_ids(n, prime=[1], seed=3).size)


def torch_sample(cell: str, H: int, L: int, n: int = 2000):
    import torch

    net = torch_net(cell, H, L).eval()

    def run() -> int:
        with torch.no_grad():
            x, h = torch.ones((1, 1), dtype=torch.long, device="cuda"), None
            g = torch.Generator(device="cuda").manual_seed(3)
            for _ in range(n):
                logits, h = net(x, h)
                x = torch.multinomial(torch.softmax(logits[:, -1], -1), 1, generator=g)
        return n

    return run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="write the results here")
    p.add_argument("--markdown", help="write the table here")
    a = p.parse_args(argv)
    reason = why_not()
    if reason:
        print(f"gpu.py: cannot run here: {reason}", file=sys.stderr)
        return 2
    import torch

    import pycharrnn as pc

    torch.backends.cudnn.benchmark = True
    sync = torch.cuda.synchronize
    rows: List[Dict[str, Any]] = []
    for cell, H, L, B in TRAIN:
        makers = {"pycharrnn": pc_train, "torch": torch_train}
        speeds: Dict[str, List[float]] = {k: [] for k in makers}
        peaks: Dict[str, int] = {}
        steps = {k: f(cell, H, L, B) for k, f in makers.items()}
        for _ in range(a.repeats):
            for k, (step, _peak) in steps.items():
                speeds[k].append(timed(step, a.seconds, sync))
        for k, (_step, peak) in steps.items():
            peaks[k] = peak()
        row = {"task": "train", "model": f"{cell} {L}x{H}", "B": B,
               **{f"{k}_chars_s": statistics.median(v) for k, v in speeds.items()},
               **{f"{k}_peak_bytes": v for k, v in peaks.items()}}
        row["ratio"] = row["pycharrnn_chars_s"] / row["torch_chars_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
        del steps
        torch.cuda.empty_cache()
    for cell, H, L in SAMPLE:
        fns = {"pycharrnn": pc_sample(cell, H, L), "torch": torch_sample(cell, H, L)}
        speeds = {k: [timed(f, a.seconds, sync) for _ in range(a.repeats)]
                  for k, f in fns.items()}
        row = {"task": "sample", "model": f"{cell} {L}x{H}", "B": 1,
               **{f"{k}_chars_s": statistics.median(v) for k, v in speeds.items()}}
        row["ratio"] = row["pycharrnn_chars_s"] / row["torch_chars_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    info = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
            "cudnn": torch.backends.cudnn.version(), "pycharrnn": pc.__version__,
            "build": pc.build_info(), "T": T, "K": K, "embedding": E, "vocab": V,
            "seconds": a.seconds, "repeats": a.repeats, "rows": rows}
    table = ["| task | model | B | pycharrnn chars/s | torch + cuDNN chars/s | ratio | "
             "peak MiB (pycharrnn / torch) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        mem = (f"{r['pycharrnn_peak_bytes'] / 2**20:.0f} / {r['torch_peak_bytes'] / 2**20:.0f}"
               if "torch_peak_bytes" in r else "")
        table.append(f"| {r['task']} | {r['model']} | {r['B']} | {r['pycharrnn_chars_s']:,.0f} "
                     f"| {r['torch_chars_s']:,.0f} | {r['ratio']:.2f} | {mem} |")
    md = f"GPU: {info['gpu']}, torch {info['torch']} (cuDNN {info['cudnn']})\n\n" + \
        "\n".join(table) + "\n"
    print(md)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(info, f, indent=1)
    if a.markdown:
        with open(a.markdown, "w", encoding="utf-8") as f:
            f.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
