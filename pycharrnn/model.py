"""CharRNN: the model object, a thin owner of the C++ core's flat buffers."""

from __future__ import annotations

import math
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from . import _core, sampling
from .checkpoint import save_model
from .checks import as_ids, check_int
from .errors import CheckpointError, count
from .vocab import Vocab

__all__ = ["CharRNN", "State"]

#: A recurrent state: an array [L, B, H], or for the LSTM a pair (h, c).
State = Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]

_CELLS = {"rnn": None, "gru": 2, "lstm": 3}
_NONLINEARITIES = {"tanh": 0, "relu": 1}
_DTYPES = {"float32": np.float32, "float64": np.float64}
#: The regularisers beyond ``dropout``, as constructor arguments and config keys
#: (a checkpoint without them was made before they existed: all off).
REGULARIZERS = ("input_dropout", "output_dropout", "weight_drop", "embedding_dropout",
                "locked_dropout")


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

    Every regulariser is inverted (what is kept is scaled by 1 / (1 - p)),
    drawn in C++ from a seed that the model's generator gives each training
    call (the same masks at any thread count, the same mask in the forward
    and the backward pass) and inactive in evaluation: :meth:`forward`,
    :meth:`loss`, sampling and validation never drop anything.

    Parameters are named and shaped as PyTorch's Embedding -> nn.RNN/GRU/LSTM
    -> Linear (see :meth:`state_dict`) and live in one flat buffer; the
    dict views share its memory.
    """

    def __init__(
        self,
        vocab: Union[Vocab, int],
        hidden_size: int = 128,
        num_layers: int = 1,
        cell: str = "lstm",
        nonlinearity: str = "tanh",
        embedding_dim: Optional[int] = None,
        dropout: float = 0.0,
        dtype: str = "float32",
        seed: Optional[int] = None,
        forget_bias: Optional[float] = None,
        input_dropout: float = 0.0,
        output_dropout: float = 0.0,
        weight_drop: float = 0.0,
        embedding_dropout: float = 0.0,
        locked_dropout: bool = False,
    ):
        if isinstance(vocab, Vocab):
            self.vocab: Optional[Vocab] = vocab
            vocab_size = len(vocab)
        else:
            self.vocab = None
            vocab_size = check_int("vocab (size)", vocab, 1)
        hidden_size = check_int("hidden_size", hidden_size, 1)
        num_layers = check_int("num_layers", num_layers, 1)
        if embedding_dim is not None:
            embedding_dim = check_int("embedding_dim", embedding_dim, 1)
        if cell not in _CELLS:
            raise ValueError(f"cell must be one of {sorted(_CELLS)}, got {cell!r}")
        if nonlinearity not in _NONLINEARITIES:
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        if cell != "rnn" and nonlinearity != "tanh":
            raise ValueError("nonlinearity applies to cell='rnn' only")
        rates = {"dropout": dropout, "input_dropout": input_dropout,
                 "output_dropout": output_dropout, "weight_drop": weight_drop,
                 "embedding_dropout": embedding_dropout}
        for name, p in rates.items():
            if isinstance(p, bool) or not isinstance(p, (int, float)):
                raise TypeError(f"{name} must be a float, got {type(p).__name__}")
            if not 0.0 <= float(p) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p}")
        for name in ("input_dropout", "embedding_dropout"):
            if rates[name] > 0 and embedding_dim is None:
                raise ValueError(f"{name} needs an embedding: set embedding_dim (one-hot "
                                 "input has no embedding to drop)")
        if not isinstance(locked_dropout, bool):
            raise TypeError(f"locked_dropout must be a bool, got {type(locked_dropout).__name__}")
        if isinstance(dtype, np.dtype) or (isinstance(dtype, type) and
                                           issubclass(dtype, np.generic)):
            dtype = np.dtype(dtype).name  # np.float32 / np.dtype("float64")
        if str(dtype) not in _DTYPES:
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        if seed is not None:
            seed = check_int("seed", seed, 0)
        if forget_bias is not None:
            if cell != "lstm":
                raise ValueError("forget_bias applies to cell='lstm' only")
            if isinstance(forget_bias, bool) or not isinstance(forget_bias, (int, float)) \
                    or not math.isfinite(forget_bias):
                raise TypeError("forget_bias must be a finite number")

        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.cell = cell
        self.nonlinearity = nonlinearity
        self.embedding_dim = embedding_dim
        self.dropout = float(dropout)
        self.input_dropout = float(input_dropout)
        self.output_dropout = float(output_dropout)
        self.weight_drop = float(weight_drop)
        self.embedding_dropout = float(embedding_dropout)
        self.locked_dropout = locked_dropout
        self.dtype = np.dtype(_DTYPES[str(dtype)])
        self.seed = seed
        self.forget_bias = forget_bias
        self.training = True

        code = _CELLS[cell] if cell != "rnn" else _NONLINEARITIES[nonlinearity]
        core_cls = _core.ModelF64 if self.dtype == np.float64 else _core.ModelF32
        self._core = core_cls(code, vocab_size, embedding_dim or 0, hidden_size, num_layers,
                              self.dropout, input_dropout=self.input_dropout,
                              output_dropout=self.output_dropout, weight_drop=self.weight_drop,
                              embedding_dropout=self.embedding_dropout,
                              locked_dropout=self.locked_dropout)
        n = self._core.num_params
        self._flat_params = np.zeros(n, dtype=self.dtype)
        self._flat_grads = np.zeros(n, dtype=self.dtype)
        self._layout = [(name, tuple(shape), off) for name, shape, off in self._core.layout()]
        self._params = self._views(self._flat_params)
        self._grads = self._views(self._flat_grads)
        self.state_grad: Optional[State] = None
        self._rng = np.random.default_rng(seed)
        self.reset_parameters()

    # ----------------------------------------------------------------- buffers
    def _views(self, flat: np.ndarray) -> Dict[str, np.ndarray]:
        out = {}
        for name, shape, off in self._layout:
            size = int(np.prod(shape))
            out[name] = flat[off:off + size].reshape(shape)
        return out

    @property
    def num_params(self) -> int:
        return int(self._flat_params.size)

    @property
    def flat_params(self) -> np.ndarray:
        """All parameters in one contiguous buffer (the state_dict arrays are views of it)."""
        return self._flat_params

    @property
    def flat_grads(self) -> np.ndarray:
        """All gradients in one contiguous buffer, laid out as :attr:`flat_params`."""
        return self._flat_grads

    @property
    def params(self) -> Dict[str, np.ndarray]:
        """Views of the parameters by PyTorch name (writing to them changes the model)."""
        return dict(self._params)

    @property
    def grads(self) -> Dict[str, np.ndarray]:
        """Views of the gradients of the last :meth:`forward_backward`, by name."""
        return dict(self._grads)

    def config(self) -> Dict[str, Any]:
        """The constructor arguments (without vocab and seed) as plain values."""
        return {
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "cell": self.cell,
            "nonlinearity": self.nonlinearity,
            "embedding_dim": self.embedding_dim,
            "dropout": self.dropout,
            "dtype": self.dtype.name,
            **{k: getattr(self, k) for k in REGULARIZERS},
        }

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
        for name, view in self._params.items():
            if name == "embedding.weight":
                view[...] = self._rng.standard_normal(view.shape)
            else:
                view[...] = self._rng.uniform(-k, k, view.shape)
        if self.forget_bias is not None:
            H = self.hidden_size
            for layer in range(self.num_layers):
                self._params[f"rnn.bias_ih_l{layer}"][H:2 * H] = self.forget_bias
                self._params[f"rnn.bias_hh_l{layer}"][H:2 * H] = 0.0

    def state_dict(self) -> Dict[str, np.ndarray]:
        """A copy of every parameter by PyTorch name."""
        return {name: view.copy() for name, view in self._params.items()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Copy parameters in from a dict of arrays (numpy, or anything
        ``np.asarray`` takes, e.g. CPU torch tensors). Names and shapes must
        match exactly; nothing is changed when any does not."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        missing = [k for k in self._params if k not in state]
        unexpected = [k for k in state if k not in self._params]
        if missing or unexpected:
            raise ValueError(f"state_dict does not match the model: missing {missing}, "
                             f"unexpected {unexpected}")
        arrays = {}
        for name, view in self._params.items():
            v = state[name]
            if hasattr(v, "detach"):
                v = v.detach().cpu().numpy()
            a = np.asarray(v)
            if a.dtype.kind not in "fiu":
                raise TypeError(f"{name}: expected a numeric array, got dtype {a.dtype}")
            if a.shape != view.shape:
                raise ValueError(f"{name}: expected shape {view.shape}, got {a.shape}")
            arrays[name] = a
        for name, a in arrays.items():
            self._params[name][...] = a

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
        slots = 2 if self.cell == "lstm" else 1
        packed = np.zeros((slots,) + shape, self.dtype)
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
        self._core.forward(self._flat_params, x, s0, s1, logits)
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
            loss = self._core.loss(self._flat_params, x, y, s0, s1)
            return float(loss), self.unpack_state(s1)
        rows = np.empty(x.shape[0], np.float64)
        self._core.loss(self._flat_params, x, y, s0, s1, stream_loss=rows)
        return rows / x.shape[1], self.unpack_state(s1)

    def forward_backward(self, x: Any, y: Any, state: Optional[State] = None, *,
                         rows: Optional[Tuple[int, int]] = None) -> Tuple[float, State]:
        """Loss and final state as :meth:`loss`, and every gradient: fills
        :attr:`grads` (overwritten, not accumulated) and :attr:`state_grad`
        (d loss / d initial state; the Trainer's steps in one C++ call leave
        it None). The regularisers (dropout and the rest)
        are applied when ``training``, with new masks at every call.

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
        loss = self._core.forward_backward(self._flat_params, self._flat_grads, x, y, s0, s1,
                                           ds, train=train, seed=seed, first_row=first,
                                           total_rows=total)
        self.state_grad = self.unpack_state(ds)
        return float(loss), self.unpack_state(s1)

    def train(self, mode: bool = True) -> "CharRNN":
        """Training mode (the regularisers in forward_backward) on or off."""
        self.training = bool(mode)
        return self

    def eval(self) -> "CharRNN":
        return self.train(False)

    # ---------------------------------------------------------------- sampling
    def forward_packed(self, x: np.ndarray, s0: np.ndarray, s1: np.ndarray,
                       logits: np.ndarray) -> None:
        """:meth:`forward` without copies or conversions, for loops that step
        a character at a time: int32 ids x [B, T], packed states s0 -> s1
        ([S, L, B, H], see :meth:`pack_state`), logits [B, T, V] of the
        model's dtype filled in. The core checks every array it is given."""
        self._core.forward(self._flat_params, x, s0, s1, logits)

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
               unknown: str = "error") -> Union[str, List[str]]:
        """Generate ``length`` characters that follow ``prime`` (not repeated
        in the result): a str, or a list of ``num_samples`` strs. See
        :func:`pycharrnn.sampling.sample` for every argument."""
        return sampling.sample(self, length, prime, temperature, top_k, seed, top_p=top_p,
                               num_samples=num_samples, stop=stop, warmup=warmup,
                               unknown=unknown)

    def generate(self, length: int, prime: str = "", temperature: float = 1.0,
                 top_k: Optional[int] = None, seed: Optional[int] = None, *,
                 top_p: Optional[float] = None, stop: Optional[str] = None,
                 warmup: str = "", unknown: str = "error") -> Iterator[str]:
        """Stream one sample a character at a time: ``"".join(generate(...))``
        equals :meth:`sample` with the same arguments (checked at once). See
        :func:`pycharrnn.sampling.generate`."""
        return sampling.generate(self, length, prime, temperature, top_k, seed, top_p=top_p,
                                 stop=stop, warmup=warmup, unknown=unknown)

    def trace(self, text: Any, top: int = 5):
        """Every layer's hidden state (LSTM cell state, GRU/LSTM gates) at every
        position of ``text`` read from a zero state, and the ``top``
        likeliest next characters there: a
        :class:`pycharrnn.diagnostics.Trace`."""
        from .diagnostics import trace

        return trace(self, text, top)

    def beam_search(self, prime: Any = "", length: int = 100, beam_width: int = 5, *,
                    length_penalty: float = 0.0, stop: Any = None, warmup: str = "",
                    unknown: str = "error") -> "sampling.BeamResult":
        """The most likely continuation of ``prime`` of at most ``length``
        characters, by beam search over ``beam_width`` hypotheses in C++: a
        str with ``.ids``, ``.score`` and ``.log_prob``. See
        :func:`pycharrnn.sampling.beam_search`."""
        return sampling.beam_search(self, prime, length, beam_width,
                                    length_penalty=length_penalty, stop=stop, warmup=warmup,
                                    unknown=unknown)

    # --------------------------------------------------------------------- I/O
    def save(self, path: str) -> None:
        """Write parameters, vocab and config to one file (atomically)."""
        save_model(self, path)

    @classmethod
    def from_checkpoint(cls, header: Dict[str, Any], arrays: Dict[str, np.ndarray],
                        path: Any = "?") -> "CharRNN":
        """Build a model from a checked checkpoint header and its arrays (what
        :func:`pycharrnn.checkpoint.read_arrays` returns); ``path`` names the file
        in errors, which are :class:`CheckpointError`."""
        cfg = header.get("config")
        if not isinstance(cfg, dict):
            raise CheckpointError(f"{path}: header has no model config")
        vocab = None
        if header.get("vocab") is not None:
            try:
                vocab = Vocab.from_json(header["vocab"])
            except (ValueError, TypeError) as e:
                raise CheckpointError(f"{path}: bad vocabulary: {e}") from None
        try:
            model = cls(
                vocab if vocab is not None else cfg["vocab_size"],
                hidden_size=cfg["hidden_size"],
                num_layers=cfg["num_layers"],
                cell=cfg["cell"],
                nonlinearity=cfg["nonlinearity"],
                embedding_dim=cfg["embedding_dim"],
                dropout=cfg["dropout"],
                dtype=cfg["dtype"],
                **{k: cfg[k] for k in REGULARIZERS if k in cfg},
            )
            if model.vocab_size != cfg["vocab_size"]:
                raise ValueError(f"vocabulary has {count(model.vocab_size, 'symbol')} but "
                                 f"the config says {cfg['vocab_size']}")
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: invalid model config: {e!r}") from None
        params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
        try:
            model.load_state_dict(params)
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"{path}: parameters do not match the config: {e}") from None
        if not np.isfinite(model.flat_params).all():
            raise CheckpointError(f"{path}: the parameters contain NaN or infinite values")
        return model
