"""Loss, logits and every gradient of a pycharrnn model computed by torch autograd."""

from __future__ import annotations

import numpy as np


def torch_forward_backward(model, x, y, state):
    """Run ``pycharrnn.torch_compat.to_torch(model)`` on x, y and the initial
    state with autograd. Returns dict(loss, logits, grads, dstate, state) as
    numpy arrays (dstate/state: a pair for the LSTM)."""
    import torch

    from pycharrnn.torch_compat import to_torch

    tm = to_torch(model)
    dt = torch.float64 if model.dtype == np.float64 else torch.float32
    xt = torch.as_tensor(np.asarray(x), dtype=torch.long)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.long)
    if model.cell == "lstm":
        h0 = torch.tensor(np.asarray(state[0]), dtype=dt, requires_grad=True)
        c0 = torch.tensor(np.asarray(state[1]), dtype=dt, requires_grad=True)
        st = (h0, c0)
    else:
        h0 = torch.tensor(np.asarray(state), dtype=dt, requires_grad=True)
        st = h0
    logits, final = tm(xt, st)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, model.vocab_size),
                                             yt.reshape(-1))
    loss.backward()
    grads = {k: p.grad.detach().numpy().copy() for k, p in tm.named_parameters()}
    if model.cell == "lstm":
        dstate = (h0.grad.numpy().copy(), c0.grad.numpy().copy())
        final = tuple(f.detach().numpy().copy() for f in final)
    else:
        dstate = h0.grad.numpy().copy()
        final = final.detach().numpy().copy()
    return {"loss": float(loss.item()), "logits": logits.detach().numpy().copy(),
            "grads": grads, "dstate": dstate, "state": final}


def torch_masked_forward_backward(model, x, y, state, masks):
    """Loss and every gradient of a training call of ``model`` with the
    given dropout masks (tests/masks.py), by torch autograd: torch's own
    one-layer nn.RNN/GRU/LSTM per layer, called with the masked weights
    (torch.func.functional_call), the activation masks multiplied in between.
    Returns dict(loss, grads)."""
    import torch
    from torch import nn
    from torch.func import functional_call

    dt = torch.float64 if model.dtype == np.float64 else torch.float32
    P = {k: torch.tensor(v, dtype=dt, requires_grad=True) for k, v in model.state_dict().items()}
    xt = torch.as_tensor(np.asarray(x), dtype=torch.long)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.long)

    def m(key):
        return torch.as_tensor(masks[key], dtype=dt)

    H = model.hidden_size
    if model.embedding_dim:
        table = P["embedding.weight"]
        if "emb" in masks:
            table = table * m("emb")[:, None]
        inp = table[xt]
    else:
        inp = nn.functional.one_hot(xt, model.vocab_size).to(dt)
    for layer in range(model.num_layers):
        if f"in{layer}" in masks:
            inp = inp * m(f"in{layer}")
        width = inp.shape[-1]
        if model.cell == "lstm":
            rnn = nn.LSTM(width, H, batch_first=True, dtype=dt)
            h0 = (torch.as_tensor(state[0][layer:layer + 1], dtype=dt),
                  torch.as_tensor(state[1][layer:layer + 1], dtype=dt))
        else:
            rnn = nn.GRU(width, H, batch_first=True, dtype=dt) if model.cell == "gru" else \
                nn.RNN(width, H, batch_first=True, nonlinearity=model.nonlinearity, dtype=dt)
            h0 = torch.as_tensor(state[layer:layer + 1], dtype=dt)
        w_hh = P[f"rnn.weight_hh_l{layer}"]
        if f"w{layer}" in masks:
            w_hh = w_hh * m(f"w{layer}")
        weights = {"weight_ih_l0": P[f"rnn.weight_ih_l{layer}"], "weight_hh_l0": w_hh,
                   "bias_ih_l0": P[f"rnn.bias_ih_l{layer}"],
                   "bias_hh_l0": P[f"rnn.bias_hh_l{layer}"]}
        inp, _ = functional_call(rnn, weights, (inp, h0))
    if "out" in masks:
        inp = inp * m("out")
    logits = inp @ P["decoder.weight"].T + P["decoder.bias"]
    loss = nn.functional.cross_entropy(logits.reshape(-1, model.vocab_size), yt.reshape(-1))
    loss.backward()
    return {"loss": float(loss.item()),
            "grads": {k: p.grad.detach().numpy().copy() for k, p in P.items()}}
