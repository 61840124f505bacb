"""Moving models between pycharrnn and PyTorch.

The state_dict names and shapes are PyTorch's, so the weights of
Embedding (or one-hot input) -> nn.RNN / nn.GRU / nn.LSTM (batch_first) ->
Linear move both ways unchanged. torch is imported only when these
functions are called; it is never needed otherwise.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np

from .model import CharRNN
from .vocab import Vocab

__all__ = ["to_torch", "from_torch", "TorchCharRNN"]

_INSTALL = ("PyTorch is needed for pycharrnn.torch_compat but is not installed; install it "
            "with: pip install torch  (a CPU build is enough; pycharrnn's own tests use "
            "torch==2.13.0)")


def _torch():
    try:
        import torch
    except ImportError as e:
        raise ImportError(_INSTALL) from e
    return torch


def _module_class():
    torch = _torch()
    nn = torch.nn

    class TorchCharRNN(nn.Module):
        """Embedding or one-hot -> nn.RNN/GRU/LSTM(batch_first=True) -> Linear.

        forward(x [B, T] long, state=None) -> (logits [B, T, V], state).
        """

        def __init__(self, vocab_size: int, hidden_size: int, num_layers: int, cell: str,
                     nonlinearity: str = "tanh", embedding_dim: Optional[int] = None,
                     dropout: float = 0.0):
            super().__init__()
            self.vocab_size = vocab_size
            self.cell = cell
            self.nonlinearity = nonlinearity
            self.embedding_dim = embedding_dim
            in_size = embedding_dim if embedding_dim else vocab_size
            if embedding_dim:
                self.embedding = nn.Embedding(vocab_size, embedding_dim)
            kw = dict(num_layers=num_layers, batch_first=True, dropout=dropout)
            if cell == "rnn":
                self.rnn = nn.RNN(in_size, hidden_size, nonlinearity=nonlinearity, **kw)
            elif cell == "gru":
                self.rnn = nn.GRU(in_size, hidden_size, **kw)
            else:
                self.rnn = nn.LSTM(in_size, hidden_size, **kw)
            self.decoder = nn.Linear(hidden_size, vocab_size)

        def forward(self, x, state=None):
            if self.embedding_dim:
                inp = self.embedding(x)
            else:
                inp = torch.nn.functional.one_hot(x, self.vocab_size).to(
                    self.decoder.weight.dtype)
            out, state = self.rnn(inp, state)
            return self.decoder(out), state

    return TorchCharRNN


def __getattr__(name: str) -> Any:
    if name == "TorchCharRNN":
        return _module_class()
    raise AttributeError(name)


def to_torch(model: CharRNN):
    """An equivalent torch module (same dtype, same weights, eval mode)."""
    torch = _torch()
    cls = _module_class()
    m = cls(model.vocab_size, model.hidden_size, model.num_layers, model.cell,
            model.nonlinearity, model.embedding_dim, model.dropout)
    dtype = torch.float64 if model.dtype == np.float64 else torch.float32
    m = m.to(dtype)
    m.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    return m.eval()


def from_torch(module, vocab: Union[Vocab, int], dtype: Optional[str] = None) -> CharRNN:
    """A CharRNN with the weights of a torch module laid out as
    :func:`to_torch` makes them (attributes ``rnn``, ``decoder`` and, for
    embedding input, ``embedding``). ``vocab`` is a Vocab or a size."""
    torch = _torch()
    rnn = getattr(module, "rnn", None)
    dec = getattr(module, "decoder", None)
    if not isinstance(rnn, (torch.nn.RNN, torch.nn.GRU, torch.nn.LSTM)) or \
            not isinstance(dec, torch.nn.Linear):
        raise TypeError("module needs attributes rnn (nn.RNN/GRU/LSTM) and decoder (nn.Linear)")
    if not rnn.batch_first or rnn.bidirectional or getattr(rnn, "proj_size", 0):
        raise ValueError("only batch_first, unidirectional recurrent layers without "
                         "projections are supported")
    if not rnn.bias or dec.bias is None:
        raise ValueError("recurrent layers and decoder must have biases")
    cell = {torch.nn.RNN: "rnn", torch.nn.GRU: "gru", torch.nn.LSTM: "lstm"}[type(rnn)]
    emb = getattr(module, "embedding", None)
    sd = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    if dtype is None:
        dtype = "float64" if sd["decoder.weight"].dtype == np.float64 else "float32"
    model = CharRNN(vocab, hidden_size=rnn.hidden_size, num_layers=rnn.num_layers, cell=cell,
                    nonlinearity=getattr(rnn, "nonlinearity", "tanh"),
                    embedding_dim=emb.embedding_dim if emb is not None else None,
                    dropout=float(rnn.dropout), dtype=dtype)
    model.load_state_dict(sd)
    return model
