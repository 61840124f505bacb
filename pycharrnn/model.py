"""CharRNN: the model, the one owner of the compiled core (through its backend)."""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from . import sampling
from .backend import check_device
from .devices import make_backend, move_backend
from .checks import as_ids, check_int, check_number, check_state_dict
from .config import REGULARIZERS, ModelConfig
from .data import text_to_ids
from .vocab import Vocab

__all__ = ["CharRNN", "State"]

#: A recurrent state: an array [L, B, H], or for the LSTM a pair (h, c).
State = Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]

_M = ModelConfig  # the defaults


class CharRNN:
    """A character-level language model: input -> L recurrent layers -> Linear.

    Args:
        vocab: a :class:`Vocab` (kept as ``.vocab``; text sampling needs it) or
            the vocabulary size as an int (``.vocab`` is None; ids only).
        hidden_size: H, units per layer.
        num_layers: L, stacked recurrent layers.
        cell: "rnn", "gru" or "lstm".
        nonlinearity: "tanh" or "relu" (cell="rnn" only).
        embedding_dim: size E of a trainable embedding; None feeds one-hot
            vectors (a column gather of ``rnn.weight_ih_l0``, never a matmul).
        dropout: inverted dropout on the input of layers 1..L-1 (between
            layers, as torch's nn.RNN/GRU/LSTM), in [0, 1).
        dtype: "float32" (default) or "float64" (for checks).
        seed: seeds the initial weights and the dropout masks.
        forget_bias: LSTM only: initialise the forget-gate bias to this value
            (in ``bias_ih``; the ``bias_hh`` part set to 0) instead of
            PyTorch's uniform init. 1.0 is a common choice.
        input_dropout: dropout on the embedded characters, layer 0's input
            (needs ``embedding_dim``).
        output_dropout: dropout on the top layer's output, before the decoder.
        weight_drop: DropConnect on every ``rnn.weight_hh_l{k}``: each weight
            is zeroed with this probability, one mask per training call (so
            per optimizer step), shared by all time steps and sequences
            (AWD-LSTM's weight drop, Merity et al. 2017).
        embedding_dropout: drops whole rows of the embedding table (every
            occurrence of a character in the batch), one mask per call
            (needs ``embedding_dim``).
        locked_dropout: ``dropout``, ``input_dropout`` and ``output_dropout``
            draw one mask per sequence (row of the batch) and call, shared by
            all its time steps (variational / locked dropout, Gal &
            Ghahramani 2016) instead of a new mask at every step.
        device: where the model lives and computes: "cpu" or "cuda" (a
            CUDA build on a machine with a GPU; see :meth:`to`).

    The defaults are :class:`pycharrnn.config.ModelConfig`'s;
    :meth:`from_config` builds a model from one.

    Every regulariser is inverted (what is kept is scaled by 1 / (1 - p)),
    drawn in C++ from a seed that the model's generator gives each training
    call (the same masks at any thread count, the same mask in the forward
    and the backward pass) and inactive in evaluation: :meth:`forward`,
    :meth:`loss`, sampling and validation never drop anything.

    Parameters are named and shaped as PyTorch's Embedding -> nn.RNN/GRU/LSTM
    -> Linear (see :meth:`state_dict`) and live in one flat buffer of the
    model's :attr:`backend` (the compiled core; on a GPU, in its memory).
    """

    def __init__(self, vocab: Union[Vocab, int], hidden_size: int = _M.hidden_size,
                 num_layers: int = _M.num_layers, cell: str = _M.cell,
                 nonlinearity: str = _M.nonlinearity,
                 embedding_dim: Optional[int] = _M.embedding_dim, dropout: float = _M.dropout,
                 dtype: str = _M.dtype, seed: Optional[int] = None,
                 forget_bias: Optional[float] = None,
                 input_dropout: float = _M.input_dropout,
                 output_dropout: float = _M.output_dropout, weight_drop: float = _M.weight_drop,
                 embedding_dropout: float = _M.embedding_dropout,
                 locked_dropout: bool = _M.locked_dropout, device: str = "cpu"):
        device = check_device(device)
        if isinstance(vocab, Vocab):
            self.vocab: Optional[Vocab] = vocab
            vocab_size = len(vocab)
        else:
            self.vocab = None
            vocab_size = check_int("vocab (size)", vocab, 1)
        cfg = ModelConfig(
            hidden_size=hidden_size, num_layers=num_layers, cell=cell,
            nonlinearity=nonlinearity, embedding_dim=embedding_dim, dropout=dropout,
            dtype=dtype, input_dropout=input_dropout, output_dropout=output_dropout,
            weight_drop=weight_drop, embedding_dropout=embedding_dropout,
            locked_dropout=locked_dropout).checked()
        if seed is not None:
            seed = check_int("seed", seed, 0)
        if forget_bias is not None:
            if cfg.cell != "lstm":
                raise ValueError("forget_bias applies to cell='lstm' only")
            forget_bias = check_number("forget_bias", forget_bias)
        self.vocab_size = vocab_size
        for k, v in vars(cfg).items():
            setattr(self, k, v)
        self.dtype = np.dtype(cfg.dtype)
        self.seed = seed
        self.forget_bias = forget_bias
        self.training = True
        #: The compiled core that holds the parameters and computes.
        self.backend = make_backend(device, cfg.cell, cfg.nonlinearity, vocab_size,
                                    cfg.embedding_dim or 0, cfg.hidden_size, cfg.num_layers,
                                    self.dtype, cfg.dropout,
                                    **{k: getattr(cfg, k) for k in REGULARIZERS})
        self.state_grad: Optional[State] = None
        self._rng = np.random.default_rng(seed)
        self.reset_parameters()

    @classmethod
    def from_config(cls, vocab: Union[Vocab, int], config: ModelConfig,
                    seed: Optional[int] = None) -> "CharRNN":
        """A model of the architecture ``config`` (:class:`ModelConfig`)."""
        return cls(vocab, seed=seed, **vars(config))

    # ----------------------------------------------------------------- buffers
    @property
    def num_params(self) -> int:
        return self.backend.num_params

    @property
    def flat_params(self) -> np.ndarray:
        """All parameters in one contiguous buffer (:attr:`params` are views
        of it; on a GPU a read-only host copy)."""
        return self.backend.params

    @property
    def flat_grads(self) -> np.ndarray:
        """All gradients in one contiguous buffer, laid out as :attr:`flat_params`."""
        return self.backend.grads

    @property
    def params(self) -> Dict[str, np.ndarray]:
        """Views of the parameters by PyTorch name (writing to them changes
        the model; on a GPU they view a read-only host copy)."""
        return self.backend.views(self.backend.params)

    @property
    def grads(self) -> Dict[str, np.ndarray]:
        """Views of the gradients of the last :meth:`forward_backward`, by name."""
        return self.backend.views(self.backend.grads)

    def model_config(self) -> ModelConfig:
        """The architecture as a :class:`ModelConfig`."""
        return ModelConfig(**{k: getattr(self, k) for k in ModelConfig.__dataclass_fields__
                              if k != "dtype"}, dtype=self.dtype.name)

    def config(self) -> Dict[str, Any]:
        """The architecture and the vocabulary size as plain values (a
        checkpoint's header keeps this)."""
        return {"vocab_size": self.vocab_size, **vars(self.model_config())}

    @property
    def regularized(self) -> bool:
        """Whether training calls draw masks (any dropout rate above 0)."""
        return (self.dropout > 0 or self.input_dropout > 0 or self.output_dropout > 0
                or self.weight_drop > 0 or self.embedding_dropout > 0)

    def __repr__(self) -> str:
        c = self.config()
        inp = f"embedding {c['embedding_dim']}" if c["embedding_dim"] else "one-hot"
        cell = self.cell if self.cell != "rnn" else f"rnn-{self.nonlinearity}"
        reg = "".join(f", {k}={c[k]}" for k in REGULARIZERS if c[k])
        return (f"CharRNN({cell}, V={self.vocab_size}, {inp}, {self.num_layers}x"
                f"{self.hidden_size}, dropout={self.dropout}{reg}, {self.dtype.name}, "
                f"{self.num_params} params)")

    def reset_parameters(self) -> None:
        """Initialise as PyTorch: recurrent and decoder weights and biases
        uniform(-1/sqrt(H), 1/sqrt(H)); the embedding N(0, 1)."""
        k = 1.0 / math.sqrt(self.hidden_size)
        flat = self.backend.host_params()
        views = self.backend.views(flat)
        for name, view in views.items():
            if name == "embedding.weight":
                view[...] = self._rng.standard_normal(view.shape)
            else:
                view[...] = self._rng.uniform(-k, k, view.shape)
        if self.forget_bias is not None:
            H = self.hidden_size
            for layer in range(self.num_layers):
                views[f"rnn.bias_ih_l{layer}"][H:2 * H] = self.forget_bias
                views[f"rnn.bias_hh_l{layer}"][H:2 * H] = 0.0
        self.backend.set_params(flat)

    def state_dict(self) -> Dict[str, np.ndarray]:
        """A copy of every parameter by PyTorch name."""
        return {name: view.copy() for name, view in self.params.items()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Copy parameters in from a dict of arrays (numpy, or anything
        ``np.asarray`` takes, e.g. CPU torch tensors). Names and shapes must
        match exactly; nothing is changed when any does not."""
        flat = self.backend.host_params()
        views = self.backend.views(flat)
        arrays = check_state_dict(state, views)  # nothing changed unless all fit
        for name, a in arrays.items():
            views[name][...] = a
        self.backend.set_params(flat)

    def param_norm(self) -> float:
        """The global L2 norm of the parameters (inf or NaN when one is)."""
        return math.sqrt(self.backend.sum_squares(self.backend.params))

    def grad_norm(self) -> float:
        """The global L2 norm of :attr:`grads` (accumulated in double)."""
        return math.sqrt(self.backend.grad_sum_squares())

    def grad_norms(self) -> Dict[str, float]:
        """The L2 norm of each parameter's gradient, by name."""
        return {k: math.sqrt(self.backend.sum_squares(g.reshape(-1)))
                for k, g in self.grads.items()}

    # ------------------------------------------------------------------- state
    def initial_state(self, batch_size: int = 1) -> State:
        """Zeros: [L, B, H], or (h, c) for the LSTM."""
        batch_size = check_int("batch_size", batch_size, 1)
        shape = (self.num_layers, batch_size, self.hidden_size)
        if self.cell == "lstm":
            return np.zeros(shape, self.dtype), np.zeros(shape, self.dtype)
        return np.zeros(shape, self.dtype)

    def pack_state(self, state: Optional[State], batch_size: int) -> np.ndarray:
        """A state (None: zeros) as one contiguous array [S, L, B, H], a copy
        (S = 2 for the LSTM's (h, c), else 1): the core's layout, and how a
        training checkpoint stores the carried state."""
        shape = (self.num_layers, batch_size, self.hidden_size)
        packed = np.zeros((self.backend.state_slots,) + shape, self.dtype)
        if state is None:
            return packed
        if self.cell == "lstm":
            if not (isinstance(state, (tuple, list)) and len(state) == 2):
                raise TypeError("an LSTM state is a pair (h, c)")
            parts = state
        else:
            parts = (state,)
        for i, part in enumerate(parts):
            a = np.asarray(part)
            if a.dtype.kind != "f":
                raise TypeError(f"state must be a float array, got dtype {a.dtype}")
            if a.shape != shape:
                raise ValueError(f"state must have shape {shape} [layers, batch, hidden], "
                                 f"got {a.shape}")
            packed[i] = a
        return packed

    def unpack_state(self, packed: np.ndarray) -> State:
        """The inverse of :meth:`pack_state` (views of ``packed``)."""
        if self.cell == "lstm":
            return packed[0], packed[1]
        return packed[0]

    @property
    def rng_state(self) -> Dict[str, Any]:
        """The state of the generator that draws dropout masks (JSON-able; a
        training checkpoint stores it so that a resumed run draws the same)."""
        return self._rng.bit_generator.state

    @rng_state.setter
    def rng_state(self, state: Dict[str, Any]) -> None:
        self._rng.bit_generator.state = state

    def _dropout_seed(self) -> int:
        return int(self._rng.integers(0, 2**63))

    # ----------------------------------------------------------------- compute
    def forward(self, x: Any, state: Optional[State] = None) -> Tuple[np.ndarray, State]:
        """Logits [B, T, V] for ids x [B, T] (1-D: one sequence), and the final state.
        Evaluation mode: no dropout."""
        x = as_ids(x, self.vocab_size, "x")
        s0 = self.pack_state(state, x.shape[0])
        s1 = np.empty_like(s0)
        logits = np.empty(x.shape + (self.vocab_size,), self.dtype)
        self.backend.forward(x, s0, s1, logits)
        return logits, self.unpack_state(s1)

    def _xy(self, x: Any, y: Any) -> Tuple[np.ndarray, np.ndarray]:
        x = as_ids(x, self.vocab_size, "x")
        y = as_ids(y, self.vocab_size, "y")
        if x.shape != y.shape:
            raise ValueError(f"x and y must have the same shape, got {x.shape} and {y.shape}")
        return x, y

    def loss(self, x: Any, y: Any, state: Optional[State] = None, *,
             reduce: bool = True) -> Tuple[Union[float, np.ndarray], State]:
        """Mean cross-entropy in nats of predicting y from x, and the final state.
        Evaluation mode: no dropout. With ``reduce=False`` the loss is a
        float64 array [B]: each row's mean over its T steps."""
        x, y = self._xy(x, y)
        s0 = self.pack_state(state, x.shape[0])
        s1 = np.empty_like(s0)
        if reduce:
            return self.backend.loss(x, y, s0, s1), self.unpack_state(s1)
        rows = np.empty(x.shape[0], np.float64)
        self.backend.loss(x, y, s0, s1, stream_loss=rows)
        return rows / x.shape[1], self.unpack_state(s1)

    def forward_backward(self, x: Any, y: Any, state: Optional[State] = None, *,
                         rows: Optional[Tuple[int, int]] = None) -> Tuple[float, State]:
        """Loss and final state as :meth:`loss`, and every gradient: fills
        :attr:`grads` (overwritten, not accumulated) and :attr:`state_grad`
        (d loss / d initial state; :meth:`train_steps` leaves it None). The
        regularisers (dropout and the rest) are applied when ``training``,
        with new masks at every call.

        ``rows=(first, total)``: x holds rows ``first .. first + B`` of a
        batch of ``total`` rows (one process's share in data-parallel
        training); the dropout masks are then those these rows get when the
        whole batch is one call."""
        x, y = self._xy(x, y)
        s0 = self.pack_state(state, x.shape[0])
        s1 = np.empty_like(s0)
        ds = np.empty_like(s0)
        train = self.training and self.regularized
        seed = self._dropout_seed() if train else 0
        first, total = (0, 0) if rows is None else rows
        loss = self.backend.forward_backward(x, y, s0, s1, ds, train, seed, first, total)
        self.state_grad = self.unpack_state(ds)
        return loss, self.unpack_state(s1)

    def train_steps(self, xs: np.ndarray, ys: np.ndarray, state: np.ndarray, lrs: np.ndarray,
                    optimizer: Any) -> Tuple[np.ndarray, np.ndarray, int, int]:
        """``len(xs)`` training steps in one call of the core: for chunk k
        (xs[k], ys[k], int32 [K, B, T]) the forward pass, BPTT, the gradient
        norm, ``optimizer``'s clipping and update at rate ``lrs[k]``, the
        packed ``state`` [S, L, B, H] carried (updated in place), with the
        bits of K calls of :meth:`forward_backward` and ``optimizer.step``.
        Returns (losses [K], pre-clip gradient norms [K], steps done,
        status): status 0 when all were made, else the reason step ``done``
        failed (1 loss, 2 gradient norm, 3 parameters not finite after its
        update). ``optimizer`` is told of the updates made."""
        K = xs.shape[0]
        seeds = None
        if self.training and self.regularized:
            seeds = np.array([self._dropout_seed() for _ in range(K)], np.uint64)
        losses, norms = np.empty(K), np.empty(K)
        done, status = self.backend.train_steps(xs, ys, state, seeds, lrs, losses, norms,
                                                optimizer.spec())
        made = done + (status == 3)  # the parameter check follows the update
        optimizer.count_updates(made, float(norms[made - 1]) if made else None)
        self.state_grad = None  # only forward_backward fills it
        return losses, norms, done, status

    def train(self, mode: bool = True) -> "CharRNN":
        """Training mode (the regularisers in forward_backward) on or off."""
        self.training = bool(mode)
        return self

    def eval(self) -> "CharRNN":
        """Evaluation mode, as ``train(False)`` (PyTorch's name)."""
        return self.train(False)

    @property
    def device(self) -> str:
        """Where the parameters live and the model computes ("cpu" or "cuda")."""
        return self.backend.device

    def to(self, device: str) -> "CharRNN":
        """This model moved in place to ``device`` ("cpu" or "cuda") and
        returned, as PyTorch's ``Module.to``; its optimizer keeps working. A
        device it cannot use is a RuntimeError that says why, the model unchanged."""
        device = check_device(device)
        if device != self.device:
            self.backend = move_backend(self.backend, device)
        return self

    # -------------------------------------------------------------- the loops
    def forward_packed(self, x: np.ndarray, s0: np.ndarray, s1: np.ndarray,
                       logits: np.ndarray) -> None:
        """:meth:`forward` without copies or conversions, for loops that step
        a character at a time: int32 ids x [B, T], packed states s0 -> s1
        ([S, L, B, H], see :meth:`pack_state`), logits [B, T, V] of the
        model's dtype filled in. The core checks every array it is given. A
        sample's context: it runs on the thread count the model's sampling
        chose (threads.hpp, Governed::Follow)."""
        self.backend.forward(x, s0, s1, logits, sampling=True)

    def sample_loop(self, state: np.ndarray, logits: np.ndarray, out: np.ndarray,
                    **options: Any) -> int:
        """The sampling loop in one call of the core (what
        :mod:`pycharrnn.sampling` builds on): fills out [n, k] with up to k ids
        per row, drawn from logits [n, V] and fed back from the packed state;
        ``options`` are the core's (temperature, top_k, top_p, seed, position,
        uniform_first, stop, window, live, feed_last). Returns the steps made."""
        return self.backend.sample(state, logits, out, **options)

    def beam_loop(self, logits: np.ndarray, state: np.ndarray, length: int, beam_width: int,
                  **options: Any) -> Tuple[np.ndarray, float, float]:
        """Beam search in one call of the core from the logits [V] and packed
        state [S, L, 1, H] after a context: (ids, score, log-probability).
        options: length_penalty, stop, context (the ids read),
        no_repeat_ngram_size, repetition_penalty, penalty_ngram_size."""
        return self.backend.beam_search(logits, state, length, beam_width, **options)

    def trace_arrays(self, ids: np.ndarray) -> Dict[str, Optional[np.ndarray]]:
        """An evaluation-mode pass over ids [T] from a zero state keeping
        every step: hidden [L, T, H], cell [L, T, H] (LSTM, else None), gates
        [L, T, G*H] (GRU/LSTM, else None), logits [T, V]."""
        return self.backend.trace_arrays(np.ascontiguousarray(ids, np.int32))

    def gradient_flow(self, text: Any, T: Optional[int] = None) -> np.ndarray:
        """|| dL_T / dh_t || of every layer at every step t = 1..T: float64
        [L, T], L_T the loss of predicting character T + 1 of ``text`` (a str
        or ids) from the T before it. See :func:`pycharrnn.diagnostics.gradient_flow`."""
        ids = text_to_ids(self, text, "text")
        n = ids.size - 1 if T is None else check_int("T", T, 1)
        if ids.size < n + 1 or n < 1:
            raise ValueError(f"gradient_flow needs T + 1 = {n + 1} characters, the text has "
                             f"{ids.size}")
        norms = np.empty((self.num_layers, n), np.float64)
        self.backend.gradient_flow(np.ascontiguousarray(ids[None, :n]),
                                   np.ascontiguousarray(ids[None, 1:n + 1]),
                                   self.pack_state(None, 1), norms)
        return norms

    # ---------------------------------------------------------------- sampling
    def sample_ids(self, length: int, prime: Any = None, temperature: float = 1.0,
                   top_k: Optional[int] = None, seed: Optional[int] = None, *,
                   top_p: Optional[float] = None, num_samples: int = 1) -> np.ndarray:
        """Generate ``length`` ids after the ids ``prime``: int32 [length], or
        [num_samples, length]. See :func:`pycharrnn.sampling.sample_ids`."""
        return sampling.sample_ids(self, length, prime, temperature, top_k, seed, top_p=top_p,
                                   num_samples=num_samples)

    def sample(self, length: int, prime: str = "", temperature: float = 1.0,
               top_k: Optional[int] = None, seed: Optional[int] = None, *,
               top_p: Optional[float] = None, num_samples: int = 1,
               stop: Optional[str] = None, warmup: str = "",
               unknown: str = "error",
               progress: Optional[Callable[[int, int], None]] = None) -> Union[str, List[str]]:
        """``prime`` and the ``length`` characters generated after it (the
        result begins with the prime, as the command line prints it): a str,
        or a list of ``num_samples`` strs. See
        :func:`pycharrnn.sampling.sample` for every argument."""
        return sampling.sample(self, length, prime, temperature, top_k, seed, top_p=top_p,
                               num_samples=num_samples, stop=stop, warmup=warmup,
                               unknown=unknown, progress=progress)

    def generate(self, length: int, prime: str = "", temperature: float = 1.0,
                 top_k: Optional[int] = None, seed: Optional[int] = None, *,
                 top_p: Optional[float] = None, stop: Optional[str] = None,
                 warmup: str = "", unknown: str = "error") -> Iterator[str]:
        """Stream one sample a character at a time, the prime's first:
        ``"".join(generate(...))``
        equals :meth:`sample` with the same arguments (checked at once). See
        :func:`pycharrnn.sampling.generate`."""
        return sampling.generate(self, length, prime, temperature, top_k, seed, top_p=top_p,
                                 stop=stop, warmup=warmup, unknown=unknown)

    def beam_search(self, prime: Any = "", length: int = 100, beam_width: int = 5, *,
                    length_penalty: float = 0.0, stop: Any = None, warmup: str = "",
                    unknown: str = "error", no_repeat_ngram_size: int = 0,
                    repetition_penalty: float = 1.0,
                    penalty_ngram_size: int = 3) -> "sampling.BeamResult":
        """``prime`` and its most likely continuation of at most ``length``
        characters, by beam search over ``beam_width`` hypotheses in C++: a
        str with ``.ids``, ``.score``, ``.log_prob`` and ``.stopped``;
        repetition control by ``no_repeat_ngram_size`` and
        ``repetition_penalty`` (off by default). See
        :func:`pycharrnn.sampling.beam_search`."""
        return sampling.beam_search(self, prime, length, beam_width,
                                    length_penalty=length_penalty, stop=stop, warmup=warmup,
                                    unknown=unknown, no_repeat_ngram_size=no_repeat_ngram_size,
                                    repetition_penalty=repetition_penalty,
                                    penalty_ngram_size=penalty_ngram_size)

    def trace(self, text: Any, top: int = 5):
        """Every layer's hidden state (LSTM cell state, GRU/LSTM gates) at every
        position of ``text`` read from a zero state, and the ``top``
        likeliest next characters there: a
        :class:`pycharrnn.diagnostics.Trace`."""
        from .diagnostics import trace

        return trace(self, text, top)

    # --------------------------------------------------------------------- I/O
    def save(self, path: Any) -> None:
        """Write parameters, vocab and config to one file (atomically)."""
        from .checkpoint import save_model

        save_model(self, path)

    def export(self, path: Any, format: str = "safetensors") -> Any:
        """Write the model for other programs (atomically) as "safetensors"
        (``pycharrnn.load`` reads it back) or "onnx" (for onnxruntime): see
        :func:`pycharrnn.export.save_as`. Returns the path."""
        from .export import save_as

        return save_as(self, path, format)
