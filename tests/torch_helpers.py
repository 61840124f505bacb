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
