"""Training throughput (chars/s) of a one-hot tanh RNN: pycharrnn vs plain NumPy vs PyTorch.

One step = forward + BPTT + AdaGrad update on a [B, T] chunk, hidden state carried
(detached) between chunks; throughput = B*T / seconds per step. The implementations
are measured interleaved (repeat r: pycharrnn, numpy, torch, ...) and the median over
repeats is reported. Run, with NumPy's OpenBLAS tuning variables cleared:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_train.py \
        --data ../shared/data/tinyshakespeare.txt --batch 1,32 --hidden 128

--check verifies first that the NumPy baseline computes pycharrnn's loss and gradients.
Run it on an otherwise idle machine: OpenMP and OpenBLAS threads spin while they wait,
so any other load on the cores distorts multi-threaded numbers badly (compare --threads 1).
"""

import argparse
import itertools
import json
import os
import statistics
import sys
import time

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--hidden", type=int, default=128)
p.add_argument("--layers", type=int, default=1)
p.add_argument("--batch", default="1,32", help="comma-separated batch sizes")
p.add_argument("--seq", type=int, default=50)
p.add_argument("--vocab", type=int, default=65, help="vocabulary size for random ids")
p.add_argument("--data", help="text file (encoded with pycharrnn.Vocab; sets the vocab size)")
p.add_argument("--threads", type=int, help="default: pycharrnn.get_num_threads()")
p.add_argument("--repeats", type=int, default=5)
p.add_argument("--seconds", type=float, default=1.0, help="per measurement")
p.add_argument("--warmup", type=int, default=5, help="warm-up steps per implementation")
p.add_argument("--json", help="write the results to this file")
p.add_argument("--no-torch", action="store_true")
p.add_argument("--no-numpy", action="store_true")
p.add_argument("--check", action="store_true", help="check NumPy == pycharrnn, then run")
args = p.parse_args()
if args.threads is not None:  # OpenBLAS reads this once, when numpy is imported
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)

import numpy as np  # noqa: E402
import pycharrnn  # noqa: E402

torch = None
if not args.no_torch:
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        pass


class NumpyRNN:
    """min-char-rnn, batched: one-hot -> L tanh layers -> Linear -> softmax CE; AdaGrad."""

    def __init__(self, V, H, L, lr=0.1, eps=1e-8, clip=5.0, seed=0):
        self.V, self.H, self.L, self.lr, self.eps, self.clip = V, H, L, lr, eps, clip
        shapes = []
        for k in range(L):
            shapes += [(f"rnn.weight_ih_l{k}", (H, V if k == 0 else H)),
                       (f"rnn.weight_hh_l{k}", (H, H)),
                       (f"rnn.bias_ih_l{k}", (H,)), (f"rnn.bias_hh_l{k}", (H,))]
        shapes += [("decoder.weight", (V, H)), ("decoder.bias", (V,))]
        n = sum(int(np.prod(s)) for _, s in shapes)
        self.flat, self.gflat, self.mem = (np.zeros(n, np.float32) for _ in range(3))
        self.p, self.g, off = {}, {}, 0
        for name, s in shapes:  # named views onto one flat buffer each
            size = int(np.prod(s))
            self.p[name] = self.flat[off:off + size].reshape(s)
            self.g[name] = self.gflat[off:off + size].reshape(s)
            off += size
        k = 1.0 / np.sqrt(H)
        self.flat[:] = np.random.default_rng(seed).uniform(-k, k, n)

    def forward_backward(self, x, y, h0):
        """x, y int [B, T]; h0 [L, B, H]. Returns (mean CE loss, final state); fills self.g."""
        p, g, (B, T), L = self.p, self.g, x.shape, self.L
        xt, yt = x.T, y.T.reshape(-1)  # time-major [T, B]
        hs, inp = [], None  # hs[k]: [T+1, B, H], row 0 = initial state
        for k in range(L):
            b = p[f"rnn.bias_ih_l{k}"] + p[f"rnn.bias_hh_l{k}"]
            if k == 0:  # one-hot input: a gather of weight_ih columns
                a = np.ascontiguousarray(p["rnn.weight_ih_l0"].T)[xt] + b
            else:
                a = (inp.reshape(T * B, -1) @ p[f"rnn.weight_ih_l{k}"].T + b).reshape(T, B, -1)
            h = np.empty((T + 1, B, self.H), np.float32)
            h[0] = h0[k]
            whhT = p[f"rnn.weight_hh_l{k}"].T
            for t in range(T):
                np.tanh(a[t] + h[t] @ whhT, out=h[t + 1])
            hs.append(h)
            inp = h[1:]
        top = inp.reshape(T * B, self.H)
        z = top @ p["decoder.weight"].T + p["decoder.bias"]  # [T*B, V]
        z -= z.max(axis=1, keepdims=True)
        ez, N = np.exp(z), T * B
        se, rows = ez.sum(axis=1, keepdims=True), np.arange(N)
        loss = float(np.mean(np.log(se[:, 0]) - z[rows, yt]))
        dz = ez / se  # d loss / d logits = (softmax - onehot(y)) / N
        dz[rows, yt] -= 1.0
        dz /= N
        g["decoder.weight"][...] = dz.T @ top
        g["decoder.bias"][...] = dz.sum(axis=0)
        dh = (dz @ p["decoder.weight"]).reshape(T, B, self.H)
        for k in reversed(range(L)):
            h, whh = hs[k], p[f"rnn.weight_hh_l{k}"]
            da = np.empty_like(dh)
            carry = np.zeros((B, self.H), np.float32)
            for t in reversed(range(T)):
                da[t] = (dh[t] + carry) * (1.0 - h[t + 1] * h[t + 1])
                carry = da[t] @ whh
            da2 = da.reshape(N, self.H)
            g[f"rnn.weight_hh_l{k}"][...] = da2.T @ h[:-1].reshape(N, self.H)
            g[f"rnn.bias_hh_l{k}"][...] = g[f"rnn.bias_ih_l{k}"][...] = da2.sum(axis=0)
            if k == 0:  # d weight_ih_l0 = da^T @ onehot(x)
                onehot = np.zeros((N, self.V), np.float32)
                onehot[rows, xt.reshape(-1)] = 1.0
                g["rnn.weight_ih_l0"][...] = da2.T @ onehot
            else:
                g[f"rnn.weight_ih_l{k}"][...] = da2.T @ hs[k - 1][1:].reshape(N, self.H)
                dh = (da2 @ p[f"rnn.weight_ih_l{k}"]).reshape(T, B, self.H)
        return loss, np.stack([h[-1] for h in hs])

    def step(self):
        """AdaGrad, min-char-rnn style: clip, mem += g^2, p -= lr * g / sqrt(mem + eps)."""
        gr = np.clip(self.gflat, -self.clip, self.clip, out=self.gflat)
        self.mem += gr * gr
        self.flat -= self.lr * gr / np.sqrt(self.mem + self.eps)


def make_pycharrnn(V, H, L):
    m = pycharrnn.CharRNN(V, hidden_size=H, num_layers=L, cell="rnn", embedding_dim=None, seed=0)
    opt = pycharrnn.optim.AdaGrad(m, lr=0.1, eps=1e-8, clip_value=5.0, eps_inside_sqrt=True)
    return m, opt


def make_steps(V, H, L, B, batches):
    """{impl name: function running one training step}, each with its own model."""
    m, opt = make_pycharrnn(V, H, L)
    steps = {"pycharrnn": _carrying(batches, m.initial_state(B), m.forward_backward, opt.step)}
    if not args.no_numpy:
        n = NumpyRNN(V, H, L)
        steps["numpy"] = _carrying(batches, np.zeros((L, B, H), np.float32), n.forward_backward,
                                   n.step)
    if torch is not None:
        steps["torch"] = torch_step(V, H, L, B, batches)
    return steps


def _carrying(batches, state, fb, update):
    """A step function: next batch (cycling), forward_backward carrying the state, update."""
    it, st = itertools.cycle(batches), [state]

    def step():
        x, y = next(it)
        st[0] = fb(x, y, st[0])[1]
        update()
    return step


def torch_step(V, H, L, B, batches):
    torch.manual_seed(0)
    rnn = torch.nn.RNN(V, H, L, nonlinearity="tanh", batch_first=True)
    dec = torch.nn.Linear(H, V)
    params = list(rnn.parameters()) + list(dec.parameters())
    opt = torch.optim.Adagrad(params, lr=0.1)
    it = itertools.cycle([(torch.from_numpy(x).long(), torch.from_numpy(y).long())
                          for x, y in batches])
    st = [torch.zeros(L, B, H)]

    def step():
        x, y = next(it)
        opt.zero_grad(set_to_none=True)
        out, h = rnn(F.one_hot(x, V).float(), st[0])
        loss = F.cross_entropy(dec(out).reshape(-1, V), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_value_(params, 5.0)
        opt.step()
        st[0] = h.detach()
    return step


def measure(step, seconds, chars_per_step):
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n == 0:
        step()
        n += 1
    return n * chars_per_step / (time.perf_counter() - t0)


def make_batches(ids, B, T, count=64):
    b = pycharrnn.train.Batches(ids, B, T)
    return [b.next()[:2] for _ in range(min(count, max(1, b.chunks_per_epoch)))]


def check(ids, V):
    """Same weights, same data: NumPy loss/grads must match pycharrnn's, over 3 AdaGrad steps."""
    B, T, H, L = 4, 20, 32, 2
    m, opt = make_pycharrnn(V, H, L)
    ref = NumpyRNN(V, H, L)
    for name, a in m.state_dict().items():  # same weights
        ref.p[name][...] = a
    s1, s2 = m.initial_state(B), np.zeros((L, B, H), np.float32)
    worst = worst_g = 0.0
    for i, (x, y) in enumerate(make_batches(ids, B, T, 3)):
        l1, s1 = m.forward_backward(x, y, s1)
        l2, s2 = ref.forward_backward(x, y, s2)
        gerr = max(float(np.abs(m.grads[k] - ref.g[k]).max() / (np.abs(ref.g[k]).max() + 1e-12))
                   for k in ref.g)
        rel = abs(l1 - l2) / abs(l1)
        print(f"check step {i}: loss pycharrnn {l1:.7f} numpy {l2:.7f} rel {rel:.1e}; "
              f"max grad rel err {gerr:.1e}")
        worst, worst_g = max(worst, rel), max(worst_g, gerr)
        opt.step()
        ref.step()
    ok = worst < 1e-5 and worst_g < 1e-4
    print(f"check {'PASSED' if ok else 'FAILED'} (B={B} T={T} H={H} L={L} V={V})\n")
    return ok


def main():
    threads = args.threads or pycharrnn.get_num_threads()
    pycharrnn.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    if args.data:
        text = open(args.data, encoding="utf-8").read()
        vocab = pycharrnn.Vocab.from_text(text)
        ids, V = vocab.encode(text), len(vocab)
    else:
        V = args.vocab
        ids = np.random.default_rng(0).integers(0, V, 200_000).astype(np.int32)
    print(f"pycharrnn {pycharrnn.__version__} build_info: {pycharrnn.build_info()}")
    env = ", ".join(f"{k}={os.environ.get(k)}" for k in
                    ("OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"))
    print(f"numpy {np.__version__}; torch {torch.__version__ if torch else 'not used'}; "
          f"threads {threads} ({env}); os.cpu_count() {os.cpu_count()}")
    print(f"data: {args.data or 'random ids'}; {args.repeats} repeats x {args.seconds}s\n")
    if args.check and not check(ids, V):
        sys.exit(1)

    T, H, L, results = args.seq, args.hidden, args.layers, []
    rows = ["| B | T | H | L | V | threads | impl | median chars/s | min..max | "
            "pycharrnn / impl |", "|---|---|---|---|---|---|---|---|---|---|"]
    for B in [int(b) for b in args.batch.split(",")]:
        batches = make_batches(ids, B, T)
        steps = make_steps(V, H, L, B, batches)
        for s in [s for s in steps.values() for _ in range(args.warmup)]:
            s()
        rates = {name: [] for name in steps}
        for _ in range(args.repeats):
            for name, s in steps.items():
                rates[name].append(measure(s, args.seconds, B * T))
        med = {name: statistics.median(r) for name, r in rates.items()}
        for name, r in rates.items():
            ratio = med["pycharrnn"] / med[name]
            rows.append(f"| {B} | {T} | {H} | {L} | {V} | {threads} | {name} | {med[name]:,.0f} "
                        f"| {min(r):,.0f}..{max(r):,.0f} | {ratio:.2f}x |")
            results.append({"B": B, "T": T, "H": H, "L": L, "V": V, "threads": threads,
                            "impl": name, "median_chars_per_s": med[name], "all": r,
                            "ratio_pycharrnn_over_impl": ratio})
    print("\n".join(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"build_info": pycharrnn.build_info(), "numpy": np.__version__, "torch":
                   torch.__version__ if torch else None, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
