"""Pure-NumPy float64 reference for the pycharrnn model: forward AND backward.

This module is the test oracle for the C++ kernels. It is deliberately simple:
every recurrence is an explicit Python loop over time, one layer after another,
with no fusion and no cleverness. Names, shapes and math follow PyTorch's
Embedding (or one-hot input) -> nn.RNN / nn.GRU / nn.LSTM -> Linear, followed
by softmax cross-entropy averaged over all B*T positions (natural log).

Public functions: forward_backward, loss_only, init_params.
Running ``python3 tests/reference.py`` checks every gradient against central
finite differences.
"""
import numpy as np

GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def _sigmoid(a):
    """Numerically stable logistic function."""
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def _sizes(params, cell):
    """Return (V, H, L) read off the parameter shapes."""
    V, H = params["decoder.weight"].shape
    L = sum(1 for k in params if k.startswith("rnn.weight_hh_l"))
    assert params["rnn.weight_hh_l0"].shape == (GATES[cell] * H, H)
    return V, H, L


def _split_state(state, cell, L, B, H):
    """Return float64 copies (h0, c0) of the initial state; c0 is None unless lstm.

    ``state=None`` is accepted as a convenience and means all zeros."""
    if state is None:
        z = np.zeros((L, B, H))
        return z, (z.copy() if cell == "lstm" else None)
    if cell == "lstm":
        h0, c0 = state
        return np.array(h0, dtype=np.float64), np.array(c0, dtype=np.float64)
    return np.array(state, dtype=np.float64), None


def _cell_forward(cell, nonlinearity, gi, gh, h, c):
    """One time step given the input part gi = W_ih x + b_ih and the hidden part
    gh = W_hh h + b_hh of the pre-activations (each [B, G*H]).
    Returns (h_new, c_new, cache) where cache holds what the backward needs."""
    if cell == "rnn":
        a = gi + gh
        h_new = np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0.0)
        return h_new, None, (h_new,)
    if cell == "gru":
        H = h.shape[1]
        r = _sigmoid(gi[:, :H] + gh[:, :H])
        z = _sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
        ghn = gh[:, 2 * H:]
        n = np.tanh(gi[:, 2 * H:] + r * ghn)
        h_new = (1.0 - z) * n + z * h
        return h_new, None, (h, r, z, n, ghn)
    # lstm
    a = gi + gh
    H = h.shape[1]
    i = _sigmoid(a[:, :H])
    f = _sigmoid(a[:, H:2 * H])
    g = np.tanh(a[:, 2 * H:3 * H])
    o = _sigmoid(a[:, 3 * H:])
    c_new = f * c + i * g
    tc = np.tanh(c_new)
    h_new = o * tc
    return h_new, c_new, (c, i, f, g, o, tc)


def _cell_backward(cell, nonlinearity, cache, dh_new, dc_new):
    """Backward of one step. Given dL/dh_new (and dL/dc_new for lstm) return
    (dgi, dgh, dh_direct, dc_prev): gradients w.r.t. the input and hidden
    pre-activation parts, the part of dL/dh that bypasses W_hh (GRU only), and
    dL/dc_prev (lstm only)."""
    if cell == "rnn":
        (h_new,) = cache
        if nonlinearity == "tanh":
            da = dh_new * (1.0 - h_new ** 2)
        else:  # PyTorch convention: zero gradient where the output is <= 0
            da = dh_new * (h_new > 0.0)
        return da, da, 0.0, None
    if cell == "gru":
        h, r, z, n, ghn = cache
        dn = dh_new * (1.0 - z)
        dz = dh_new * (h - n)
        dan = dn * (1.0 - n ** 2)
        dar = dan * ghn * r * (1.0 - r)
        daz = dz * z * (1.0 - z)
        dgi = np.concatenate([dar, daz, dan], axis=1)
        dgh = np.concatenate([dar, daz, dan * r], axis=1)
        return dgi, dgh, dh_new * z, None
    # lstm
    c, i, f, g, o, tc = cache
    dc = dc_new + dh_new * o * (1.0 - tc ** 2)
    da = np.concatenate([dc * g * i * (1.0 - i),
                         dc * c * f * (1.0 - f),
                         dc * i * (1.0 - g ** 2),
                         dh_new * tc * o * (1.0 - o)], axis=1)
    return da, da, 0.0, dc * f


def _run(params, x, y, state, cell, nonlinearity, backward):
    """Shared forward (and optionally backward) pass; see forward_backward."""
    assert cell in GATES and nonlinearity in ("tanh", "relu")
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    x = np.asarray(x, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    B, T = x.shape
    V, H, L = _sizes(p, cell)
    h0, c0 = _split_state(state, cell, L, B, H)

    # ---- input: embedding lookup or one-hot vectors, [B, T, in_0]
    if "embedding.weight" in p:
        inp = p["embedding.weight"][x]
    else:
        inp = np.eye(V)[x]

    # ---- recurrent layers, explicit loop over time
    layer_inputs, caches, hT, cT = [], [], np.zeros((L, B, H)), np.zeros((L, B, H))
    for k in range(L):
        Wih, Whh = p[f"rnn.weight_ih_l{k}"], p[f"rnn.weight_hh_l{k}"]
        bih, bhh = p[f"rnn.bias_ih_l{k}"], p[f"rnn.bias_hh_l{k}"]
        h, c = h0[k], (c0[k] if cell == "lstm" else None)
        out, layer_cache = np.zeros((B, T, H)), []
        for t in range(T):
            gi = inp[:, t] @ Wih.T + bih
            gh = h @ Whh.T + bhh
            h_prev = h
            h, c, cache = _cell_forward(cell, nonlinearity, gi, gh, h, c)
            layer_cache.append((h_prev, cache))
            out[:, t] = h
        hT[k] = h
        if cell == "lstm":
            cT[k] = c
        layer_inputs.append(inp)
        caches.append(layer_cache)
        inp = out

    # ---- decoder and mean softmax cross-entropy
    logits = inp @ p["decoder.weight"].T + p["decoder.bias"]
    shifted = logits - logits.max(axis=-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    bi, ti = np.meshgrid(np.arange(B), np.arange(T), indexing="ij")
    loss = float(-logp[bi, ti, y].mean())
    final_state = (hT, cT) if cell == "lstm" else hT
    result = {"loss": loss, "logits": logits, "state": final_state}
    if not backward:
        return result

    # ---- backward: softmax cross-entropy and decoder
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    dlogits = np.exp(logp)
    dlogits[bi, ti, y] -= 1.0
    dlogits /= B * T
    grads["decoder.weight"] = np.einsum("btv,bth->vh", dlogits, inp)
    grads["decoder.bias"] = dlogits.sum(axis=(0, 1))
    dout = dlogits @ p["decoder.weight"]  # [B, T, H] gradient w.r.t. top outputs

    # ---- backward through the layers (top first) and through time (last first)
    dh0, dc0 = np.zeros((L, B, H)), np.zeros((L, B, H))
    for k in reversed(range(L)):
        Wih, Whh = p[f"rnn.weight_ih_l{k}"], p[f"rnn.weight_hh_l{k}"]
        lin = layer_inputs[k]
        dinp = np.zeros_like(lin)
        dh, dc = np.zeros((B, H)), np.zeros((B, H))
        for t in reversed(range(T)):
            h_prev, cache = caches[k][t]
            dgi, dgh, dh_direct, dc = _cell_backward(
                cell, nonlinearity, cache, dh + dout[:, t], dc)
            grads[f"rnn.weight_ih_l{k}"] += dgi.T @ lin[:, t]
            grads[f"rnn.bias_ih_l{k}"] += dgi.sum(axis=0)
            grads[f"rnn.weight_hh_l{k}"] += dgh.T @ h_prev
            grads[f"rnn.bias_hh_l{k}"] += dgh.sum(axis=0)
            dinp[:, t] = dgi @ Wih
            dh = dgh @ Whh + dh_direct
        dh0[k] = dh
        if cell == "lstm":
            dc0[k] = dc
        dout = dinp

    # ---- backward into the embedding table (one-hot input has no parameters)
    if "embedding.weight" in p:
        np.add.at(grads["embedding.weight"], x, dout)
    result["grads"] = grads
    result["dstate"] = (dh0, dc0) if cell == "lstm" else dh0
    return result


def forward_backward(params, x, y, state, cell="rnn", nonlinearity="tanh"):
    """Full forward and backward pass.

    params: dict of PyTorch-named arrays (see module docstring); one-hot input
        is used when "embedding.weight" is absent.
    x, y: int arrays [B, T] of input ids and target ids.
    state: h0 [L, B, H], or (h0, c0) for lstm (None means zeros).
    Returns a dict: "loss" (float, mean nats), "logits" [B, T, V],
    "state" (final state, same structure as the input state), "grads"
    (same keys and shapes as params) and "dstate" (d loss / d initial state).
    """
    return _run(params, x, y, state, cell, nonlinearity, backward=True)


def loss_only(params, x, y, state, cell="rnn", nonlinearity="tanh"):
    """Forward pass only; returns the mean cross-entropy loss as a float."""
    return _run(params, x, y, state, cell, nonlinearity, backward=False)["loss"]


def init_params(rng, V, H, L, cell, E=None, scale=0.5):
    """Random float64 parameters, uniform(-scale, scale), PyTorch names.
    E=None means one-hot input (no "embedding.weight"; layer 0 input size V)."""
    G = GATES[cell]
    shapes = {}
    if E is not None:
        shapes["embedding.weight"] = (V, E)
    for k in range(L):
        in_k = (V if E is None else E) if k == 0 else H
        shapes[f"rnn.weight_ih_l{k}"] = (G * H, in_k)
        shapes[f"rnn.weight_hh_l{k}"] = (G * H, H)
        shapes[f"rnn.bias_ih_l{k}"] = (G * H,)
        shapes[f"rnn.bias_hh_l{k}"] = (G * H,)
    shapes["decoder.weight"] = (V, H)
    shapes["decoder.bias"] = (V,)
    return {k: rng.uniform(-scale, scale, size=s) for k, s in shapes.items()}


def _rel_err(a, b):
    """Max abs difference relative to the larger of the two max magnitudes."""
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-12))


if __name__ == "__main__":  # finite-difference self-check of every gradient
    rng, worst = np.random.default_rng(0), {}
    for cell, nl in [("rnn", "tanh"), ("rnn", "relu"), ("gru", "tanh"), ("lstm", "tanh")]:
        for L, E, B, T in np.ndindex(2, 2, 2, 2):
            L, E, B, T, V, H = L + 1, (None, 3)[E], (1, 3)[B], (1, 4)[T], 5, 4
            p, h = init_params(rng, V, H, L, cell, E), (1e-5 if nl == "relu" else 1e-4)
            x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
            s = [rng.normal(size=(L, B, H)) * 0.5 for _ in range(1 + (cell == "lstm"))]
            st = lambda: tuple(s) if cell == "lstm" else s[0]
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
