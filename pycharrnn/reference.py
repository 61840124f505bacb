"""The NumPy reference model: the oracle the C++ kernels are tested against
(float64) and the NumPy baseline the benchmark times (float32).

:class:`NumpyCharRNN` is the model as one would write it in NumPy after
min-char-rnn, and no cleverer: one-hot (a gather of W_ih's columns) or
embedding input -> L recurrent layers, each an explicit Python loop over time
-> Linear -> mean softmax cross-entropy in nats, and the backward pass by
hand. Names, shapes, gate orders (GRU r,z,n; LSTM i,f,g,o) and the GRU's
``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`` are PyTorch's, so weights
copy straight in. The functions below give tests a functional interface over
parameter dicts.

``python -m pycharrnn.reference`` checks every gradient of this model against
fourth-order central differences in float64.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

import numpy as np

__all__ = ["NumpyCharRNN", "GATES", "forward_backward", "loss_only", "init_params"]

GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def _sigmoid(a):
    return 0.5 * (1.0 + np.tanh(0.5 * a))


class NumpyCharRNN:
    """A plain batched NumPy char-RNN (what one writes after min-char-rnn):
    one-hot or embedding -> L rnn(tanh/relu)/gru/lstm layers -> Linear -> mean
    softmax cross-entropy. Python loops over time, one layer after another;
    PyTorch's parameter names, shapes and gate orders, in one flat buffer
    (``p``: views by name; ``g``: the gradients of the last forward_backward;
    ``dstate``: d loss / d initial state)."""

    def __init__(self, cell, V, H, L, E=None, dtype=np.float64, seed=0, nonlinearity="tanh"):
        assert cell in GATES and nonlinearity in ("tanh", "relu")
        assert cell == "rnn" or nonlinearity == "tanh"
        self.cell, self.V, self.H, self.L, self.E = cell, V, H, L, E
        self.nonlinearity = nonlinearity
        self.dtype = np.dtype(dtype)
        GH = GATES[cell] * H
        shapes = [("embedding.weight", (V, E))] if E else []
        for k in range(L):
            shapes += [(f"rnn.weight_ih_l{k}", (GH, (E or V) if k == 0 else H)),
                       (f"rnn.weight_hh_l{k}", (GH, H)),
                       (f"rnn.bias_ih_l{k}", (GH,)), (f"rnn.bias_hh_l{k}", (GH,))]
        shapes += [("decoder.weight", (V, H)), ("decoder.bias", (V,))]
        n = sum(math.prod(s) for _, s in shapes)
        self.flat, self.gflat = np.zeros(n, self.dtype), np.zeros(n, self.dtype)
        self.p, self.g, off = {}, {}, 0
        for name, s in shapes:
            self.p[name] = self.flat[off:off + math.prod(s)].reshape(s)
            self.g[name] = self.gflat[off:off + math.prod(s)].reshape(s)
            off += math.prod(s)
        rng, k = np.random.default_rng(seed), 1.0 / math.sqrt(H)
        self.flat[:] = rng.uniform(-k, k, n)
        if E:
            self.p["embedding.weight"][...] = rng.standard_normal((V, E))

    def initial_state(self, B):
        z = np.zeros((self.L, B, self.H), self.dtype)
        return (z, z.copy()) if self.cell == "lstm" else z

    def _cell(self, gi, gh, h, c):
        """One time step from gi = W_ih x + b_ih, gh = W_hh h + b_hh ([B, G*H])."""
        H = self.H
        if self.cell == "rnn":
            a = gi + gh
            h2 = np.tanh(a) if self.nonlinearity == "tanh" else np.maximum(a, 0)
            return h2, None, (h2,)
        if self.cell == "gru":  # gates r, z, n
            r = _sigmoid(gi[:, :H] + gh[:, :H])
            z = _sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
            n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
            return n + z * (h - n), None, (r, z, n, gh[:, 2 * H:], h)
        a = gi + gh  # lstm: gates i, f, g, o
        i, f, o = _sigmoid(a[:, :H]), _sigmoid(a[:, H:2 * H]), _sigmoid(a[:, 3 * H:])
        g = np.tanh(a[:, 2 * H:3 * H])
        c2 = f * c + i * g
        tc = np.tanh(c2)
        return o * tc, c2, (i, f, g, o, c, tc)

    def _cell_back(self, dh, dc, cache):
        """-> (d gi, d gh, d h_prev not through W_hh (or None), d c_prev)."""
        if self.cell == "rnn":
            (h2,) = cache
            # relu: PyTorch's convention, no gradient where the output is 0
            da = dh * (1.0 - h2 * h2) if self.nonlinearity == "tanh" else dh * (h2 > 0)
            return da, da, None, None
        if self.cell == "gru":
            r, z, n, ghn, h = cache
            dan = dh * (1.0 - z) * (1.0 - n * n)
            dar = dan * ghn * r * (1.0 - r)
            daz = dh * (h - n) * z * (1.0 - z)
            return (np.concatenate([dar, daz, dan], 1), np.concatenate([dar, daz, dan * r], 1),
                    dh * z, None)
        i, f, g, o, c, tc = cache
        dc = dc + dh * o * (1.0 - tc * tc)
        da = np.concatenate([dc * g * i * (1.0 - i), dc * c * f * (1.0 - f),
                             dc * i * (1.0 - g * g), dh * tc * o * (1.0 - o)], 1)
        return da, da, None, dc * f

    def _forward(self, x, state):
        """x int [B, T] -> (top-layer outputs [T, B, H], per-layer caches, final state)."""
        p, (B, T), H = self.p, x.shape, self.H
        lstm = self.cell == "lstm"
        h0, c0 = state if lstm else (state, None)
        xt = x.T  # time-major [T, B]
        inp = p["embedding.weight"][xt] if self.E else None
        layers, hT, cT = [], [], []
        for k in range(self.L):
            wih, whh = p[f"rnn.weight_ih_l{k}"], p[f"rnn.weight_hh_l{k}"]
            if k == 0 and not self.E:  # one-hot input: a gather of weight_ih columns
                gi = wih.T[xt] + p["rnn.bias_ih_l0"]
            else:
                gi = (inp.reshape(T * B, -1) @ wih.T + p[f"rnn.bias_ih_l{k}"]).reshape(T, B, -1)
            hs = np.empty((T + 1, B, H), self.dtype)
            hs[0], c, caches = h0[k], (c0[k] if lstm else None), []
            for t in range(T):
                gh = hs[t] @ whh.T + p[f"rnn.bias_hh_l{k}"]
                hs[t + 1], c, cache = self._cell(gi[t], gh, hs[t], c)
                caches.append(cache)
            layers.append((inp, hs, caches))
            hT.append(hs[T])
            cT.append(c)
            inp = hs[1:]
        final = (np.stack(hT), np.stack(cT)) if lstm else np.stack(hT)
        return inp, layers, final

    def forward(self, x, state):
        """Logits [B, T, V] and the final state (no gradients)."""
        top, _, final = self._forward(x, state)
        logits = top @ self.p["decoder.weight"].T + self.p["decoder.bias"]
        return logits.transpose(1, 0, 2), final

    def forward_backward(self, x, y, state):
        """Mean cross-entropy (nats) and final state; fills ``self.g``."""
        p, g, (B, T), H = self.p, self.g, x.shape, self.H
        N, lstm = B * T, self.cell == "lstm"
        top, layers, final = self._forward(x, state)
        top = top.reshape(N, H)
        z = top @ p["decoder.weight"].T + p["decoder.bias"]  # [T*B, V], time-major rows
        z -= z.max(axis=1, keepdims=True)
        ez = np.exp(z)
        se, rows, yt = ez.sum(axis=1, keepdims=True), np.arange(N), y.T.reshape(-1)
        loss = float(np.mean(np.log(se[:, 0]) - z[rows, yt]))
        dz = ez / se
        dz[rows, yt] -= 1.0
        dz /= N
        g["decoder.weight"][...] = dz.T @ top
        g["decoder.bias"][...] = dz.sum(axis=0)
        dh_in = (dz @ p["decoder.weight"]).reshape(T, B, H)
        dh0, dc0 = [], []  # top layer first
        for k in reversed(range(self.L)):
            inp, hs, caches = layers[k]
            whh, wih = p[f"rnn.weight_hh_l{k}"], p[f"rnn.weight_ih_l{k}"]
            dgi = np.empty((T, B, whh.shape[0]), self.dtype)
            dgh = np.empty_like(dgi)
            dh_next = np.zeros((B, H), self.dtype)
            dc_next = np.zeros((B, H), self.dtype) if lstm else None
            for t in reversed(range(T)):
                dgi[t], dgh[t], dh_direct, dc_next = self._cell_back(
                    dh_in[t] + dh_next, dc_next, caches[t])
                dh_next = dgh[t] @ whh
                if dh_direct is not None:
                    dh_next += dh_direct
            dh0.append(dh_next)
            dc0.append(dc_next)
            dgi2, dgh2 = dgi.reshape(N, -1), dgh.reshape(N, -1)
            g[f"rnn.weight_hh_l{k}"][...] = dgh2.T @ hs[:-1].reshape(N, H)
            g[f"rnn.bias_hh_l{k}"][...] = dgh2.sum(axis=0)
            g[f"rnn.bias_ih_l{k}"][...] = dgi2.sum(axis=0)
            xflat = x.T.reshape(-1)
            if k == 0 and not self.E:  # d W_ih_l0 = dgi^T @ onehot(x): a scatter-add
                g["rnn.weight_ih_l0"][...] = 0.0
                np.add.at(g["rnn.weight_ih_l0"].T, xflat, dgi2)
                continue
            g[f"rnn.weight_ih_l{k}"][...] = dgi2.T @ inp.reshape(N, -1)
            dinp = dgi2 @ wih
            if k > 0:
                dh_in = dinp.reshape(T, B, H)
            else:
                g["embedding.weight"][...] = 0.0
                np.add.at(g["embedding.weight"], xflat, dinp)
        dh0 = np.stack(dh0[::-1])
        self.dstate = (dh0, np.stack(dc0[::-1])) if lstm else dh0
        return loss, final

    def sample_ids(self, n, prime, seed=None):
        """n ids drawn one at a time (temperature 1) after the ids ``prime``."""
        rng = np.random.default_rng(seed)
        logits, state = self.forward(np.asarray(prime).reshape(1, -1), self.initial_state(1))
        out = np.empty(n, np.int32)
        for i in range(n):
            if i:
                logits, state = self.forward(out[i - 1:i].reshape(1, 1), state)
            zz = logits[0, -1].astype(np.float64)
            c = np.cumsum(np.exp(zz - zz.max()))
            out[i] = min(int(np.searchsorted(c, rng.random() * c[-1], side="right")), self.V - 1)
        return out


def _model_for(params, cell, nonlinearity, dtype=np.float64) -> NumpyCharRNN:
    V, H = np.shape(params["decoder.weight"])
    L = sum(1 for k in params if k.startswith("rnn.weight_hh_l"))
    E = np.shape(params["embedding.weight"])[1] if "embedding.weight" in params else None
    net = NumpyCharRNN(cell, V, H, L, E, dtype=dtype, nonlinearity=nonlinearity)
    if set(params) != set(net.p):
        raise ValueError(f"parameters {sorted(params)} are not those of {sorted(net.p)}")
    for k, v in params.items():
        net.p[k][...] = v
    return net


def _state(net: NumpyCharRNN, state, B: int):
    if state is None:
        return net.initial_state(B)
    if net.cell == "lstm":
        return tuple(np.array(s, dtype=net.dtype) for s in state)
    return np.array(state, dtype=net.dtype)


def forward_backward(params: Dict[str, Any], x, y, state, cell: str = "rnn",
                     nonlinearity: str = "tanh") -> Dict[str, Any]:
    """Forward and backward in float64. ``params``: arrays by PyTorch name
    (one-hot input when "embedding.weight" is absent); x, y: int [B, T];
    state: h0 [L, B, H] or (h0, c0) for the LSTM, None for zeros. Returns
    "loss" (mean nats), "logits" [B, T, V], "state" (the final state),
    "grads" (by name) and "dstate" (d loss / d initial state)."""
    net = _model_for(params, cell, nonlinearity)
    x, y = np.asarray(x), np.asarray(y)
    s0 = _state(net, state, x.shape[0])
    logits, _ = net.forward(x, s0)
    loss, final = net.forward_backward(x, y, s0)
    return {"loss": loss, "logits": logits, "state": final,
            "grads": {k: v.copy() for k, v in net.g.items()}, "dstate": net.dstate}


def loss_only(params: Dict[str, Any], x, y, state, cell: str = "rnn",
              nonlinearity: str = "tanh") -> float:
    """The mean cross-entropy (nats) only, in float64."""
    net = _model_for(params, cell, nonlinearity)
    x, y = np.asarray(x), np.asarray(y)
    logits, _ = net.forward(x, _state(net, state, x.shape[0]))
    z = logits - logits.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return float(-np.take_along_axis(logp, y[..., None], axis=-1).mean())


def init_params(rng, V: int, H: int, L: int, cell: str, E: Optional[int] = None,
                scale: float = 0.5) -> Dict[str, np.ndarray]:
    """Random float64 parameters, uniform(-scale, scale), by PyTorch name
    (E=None: one-hot input, no "embedding.weight")."""
    net = NumpyCharRNN(cell, V, H, L, E)
    return {k: rng.uniform(-scale, scale, size=v.shape) for k, v in net.p.items()}


def _rel_err(a, b) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-12))


if __name__ == "__main__":  # finite-difference self-check of every gradient
    rng, worst = np.random.default_rng(0), {}
    for cell, nl in [("rnn", "tanh"), ("rnn", "relu"), ("gru", "tanh"), ("lstm", "tanh")]:
        for L, E, B, T in np.ndindex(2, 2, 2, 2):
            L, E, B, T, V, H = L + 1, (None, 3)[E], (1, 3)[B], (1, 4)[T], 5, 4
            p, h = init_params(rng, V, H, L, cell, E), (1e-5 if nl == "relu" else 1e-4)
            x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
            s = [rng.normal(size=(L, B, H)) * 0.5 for _ in range(1 + (cell == "lstm"))]
            st = lambda: tuple(s) if cell == "lstm" else s[0]  # noqa: E731
            out = forward_backward(p, x, y, st(), cell, nl)
            dstate = out["dstate"] if cell == "lstm" else [out["dstate"]]
            for g, arr in zip(list(out["grads"].values()) + list(dstate), list(p.values()) + s):
                num = np.zeros_like(arr)
                for idx in np.ndindex(arr.shape):  # 4th-order central difference
                    old, f = arr[idx], []
                    for d in (2 * h, h, -h, -2 * h):
                        arr[idx] = old + d
                        f.append(loss_only(p, x, y, st(), cell, nl))
                    arr[idx] = old
                    num[idx] = (8 * (f[1] - f[2]) - (f[0] - f[3])) / (12 * h)
                key = f"{cell}-{nl}"
                worst[key] = max(worst.get(key, 0.0), _rel_err(g, num))
    for key, err in worst.items():
        print(f"{key:10s} max relative error {err:.2e}")
