"""CharRNN: the model object, a thin owner of the C++ core's flat buffers."""

from __future__ import annotations

import math
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from . import _core
from .checkpoint import save_model
from .errors import CheckpointError, count
from .vocab import Vocab

__all__ = ["CharRNN", "State"]

#: A recurrent state: an array [L, B, H], or for the LSTM a pair (h, c).
State = Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]

_CELLS = {"rnn": None, "gru": 2, "lstm": 3}
_NONLINEARITIES = {"tanh": 0, "relu": 1}
_DTYPES = {"float32": np.float32, "float64": np.float64}


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def as_ids(x: Any, vocab_size: int, name: str = "x") -> np.ndarray:
    """Token ids as a C-contiguous int32 array [B, T] (1-D input is one sequence).

    Integer arrays are converted only when no value is lost; floats and bools
    are refused (a float is never silently taken as an id).
    """
    a = np.asarray(x)
    if a.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {a.shape}")
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer token ids, got dtype {a.dtype}")
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape [batch, time], got {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} must not be empty, got shape {a.shape}")
    lo, hi = int(a.min()), int(a.max())
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{name} holds id {bad}, outside [0, {vocab_size})")
    return np.ascontiguousarray(a, dtype=np.int32)


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
        dropout: inverted dropout between layers, in [0, 1).
        dtype: "float32" (default) or "float64" (for checks).
        seed: seeds the initial weights and the dropout masks.
        forget_bias: LSTM only: initialise the forget-gate bias to this value
            (in ``bias_ih``; the ``bias_hh`` part set to 0) instead of
            PyTorch's uniform init. 1.0 is a common choice.

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
    ):
        if isinstance(vocab, Vocab):
            self.vocab: Optional[Vocab] = vocab
            vocab_size = len(vocab)
        else:
            self.vocab = None
            vocab_size = _check_int("vocab (size)", vocab, 1)
        hidden_size = _check_int("hidden_size", hidden_size, 1)
        num_layers = _check_int("num_layers", num_layers, 1)
        if embedding_dim is not None:
            embedding_dim = _check_int("embedding_dim", embedding_dim, 1)
        if cell not in _CELLS:
            raise ValueError(f"cell must be one of {sorted(_CELLS)}, got {cell!r}")
        if nonlinearity not in _NONLINEARITIES:
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        if cell != "rnn" and nonlinearity != "tanh":
            raise ValueError("nonlinearity applies to cell='rnn' only")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise TypeError(f"dropout must be a float, got {type(dropout).__name__}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if isinstance(dtype, np.dtype) or (isinstance(dtype, type) and
                                           issubclass(dtype, np.generic)):
            dtype = np.dtype(dtype).name  # np.float32 / np.dtype("float64")
        if str(dtype) not in _DTYPES:
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        if seed is not None:
            seed = _check_int("seed", seed, 0)
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
        self.dtype = np.dtype(_DTYPES[str(dtype)])
        self.seed = seed
        self.forget_bias = forget_bias
        self.training = True

        code = _CELLS[cell] if cell != "rnn" else _NONLINEARITIES[nonlinearity]
        core_cls = _core.ModelF64 if self.dtype == np.float64 else _core.ModelF32
        self._core = core_cls(code, vocab_size, embedding_dim or 0, hidden_size, num_layers,
                              self.dropout)
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
        }

    def __repr__(self) -> str:
        c = self.config()
        inp = f"embedding {c['embedding_dim']}" if c["embedding_dim"] else "one-hot"
        cell = self.cell if self.cell != "rnn" else f"rnn-{self.nonlinearity}"
        return (f"CharRNN({cell}, V={self.vocab_size}, {inp}, {self.num_layers}x"
                f"{self.hidden_size}, dropout={self.dropout}, {self.dtype.name}, "
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
        batch_size = _check_int("batch_size", batch_size, 1)
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
        self._core.forward(self._flat_params, x, s0, s1, logits, False, 0)
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
            loss = self._core.loss(self._flat_params, x, y, s0, s1, False, 0)
            return float(loss), self.unpack_state(s1)
        rows = np.empty(x.shape[0], np.float64)
        self._core.loss(self._flat_params, x, y, s0, s1, False, 0, rows)
        return rows / x.shape[1], self.unpack_state(s1)

    def forward_backward(self, x: Any, y: Any,
                         state: Optional[State] = None) -> Tuple[float, State]:
        """Loss and final state as :meth:`loss`, and every gradient: fills
        :attr:`grads` (overwritten, not accumulated) and :attr:`state_grad`
        (d loss / d initial state). Dropout is applied when ``training``."""
        x, y = self._xy(x, y)
        s0 = self.pack_state(state, x.shape[0])
        s1 = np.empty_like(s0)
        ds = np.empty_like(s0)
        train = self.training and self.dropout > 0
        seed = self._dropout_seed() if train else 0
        loss = self._core.forward_backward(self._flat_params, self._flat_grads, x, y, s0, s1,
                                           ds, train, seed)
        self.state_grad = self.unpack_state(ds)
        return float(loss), self.unpack_state(s1)

    def train(self, mode: bool = True) -> "CharRNN":
        """Training mode (dropout in forward_backward) on or off."""
        self.training = bool(mode)
        return self

    def eval(self) -> "CharRNN":
        return self.train(False)

    # ---------------------------------------------------------------- sampling
    def sample_ids(self, length: int, prime: Any = None, temperature: float = 1.0,
                   top_k: Optional[int] = None, seed: Optional[int] = None, *,
                   top_p: Optional[float] = None, num_samples: int = 1) -> np.ndarray:
        """Generate ``length`` ids after the ids ``prime``.

        Args:
            length: ids to generate per sample (>= 0).
            prime: ids fed through the model first; they set the state and
                are not repeated in the result. Without a prime the first id
                is drawn uniformly (the model has no context yet).
            temperature: the logits are divided by it; 0 takes the most
                likely id (argmax) and uses no randomness.
            top_k: keep only the k most likely ids (after temperature).
            seed: seeds the draws; the same seed and arguments give the same
                ids.
            top_p: nucleus sampling, 0 < top_p <= 1: after temperature and
                top_k, keep the smallest set of most likely ids whose
                probability mass is >= top_p (equal probabilities: lower id
                first) and renormalise. 1.0 is exactly the same as None.
            num_samples: N independent samples generated together: per step
                one forward call of batch N and one vectorized draw.

        Returns:
            int32 ``[length]`` when ``num_samples == 1``, else int32
            ``[num_samples, length]``.

        Every row of a batched run starts from the same state after the prime
        and draws with its own uniform number per step, all taken from the one
        seeded generator (N per step, row order), so a seeded batched run is
        reproducible. Its row 0 is in general NOT the single-sample result
        for the same seed (only the first id after a prime coincides).
        ``num_samples=1`` keeps the random stream of earlier versions: the same
        seed gives the same ids for the same (older) arguments.
        """
        length, top_k, top_p = _check_sampling(length, temperature, top_k, top_p)
        num_samples = _check_int("num_samples", num_samples, 1)
        context = None
        if prime is not None:
            p = np.asarray(prime)
            if p.size > 0:
                context = as_ids(p.reshape(1, -1), self.vocab_size, "prime")
        rng = np.random.default_rng(seed)
        out = np.empty((num_samples, length), dtype=np.int32)
        for i, ids in enumerate(self._stream(length, context, temperature, top_k, top_p,
                                             rng, num_samples)):
            out[:, i] = ids
        return out.reshape(length) if num_samples == 1 else out

    def sample(self, length: int, prime: str = "", temperature: float = 1.0,
               top_k: Optional[int] = None, seed: Optional[int] = None, *,
               top_p: Optional[float] = None, num_samples: int = 1,
               stop: Optional[str] = None, warmup: str = "",
               unknown: str = "error") -> Union[str, List[str]]:
        """Generate ``length`` characters that follow ``prime`` (the prime is
        not repeated in the result).

        ``temperature``, ``top_k``, ``top_p``, ``seed`` and ``num_samples`` are
        as in :meth:`sample_ids`. Returns a str, or a list of ``num_samples``
        strs when ``num_samples > 1``.

        Args:
            stop: end a sample as soon as its generated text ends with this
                string (included in the result; prime and warm-up do not
                count towards a match). Each row of a batched run stops on
                its own; generation ends when every row stopped or ``length``
                is reached. Rows that stopped keep drawing (unseen) until all
                stop, so with a seed every result is exactly the text without
                ``stop``, cut after the first occurrence of ``stop``. Its
                characters must be in the vocabulary.
            warmup: text fed through the model before the prime to set the
                hidden state (in one sequence: ``warmup + prime``); it does not
                appear in the output. Its characters must be in the vocabulary.
                With a warm-up but no prime the first character is drawn from
                the model (not uniformly).
            unknown: characters of ``prime`` and ``warmup`` that are not in
                the vocabulary raise ValueError ("error", the default) or are
                left out ("drop").

        With ``num_samples == 1`` this is ``"".join(self.generate(...))`` with
        the same arguments.
        """
        num_samples = _check_int("num_samples", num_samples, 1)
        if num_samples == 1:
            return "".join(self.generate(length, prime, temperature, top_k, seed, top_p=top_p,
                                         stop=stop, warmup=warmup, unknown=unknown))
        run = self._text_run(length, prime, temperature, top_k, seed, top_p, stop, warmup,
                             num_samples, unknown)
        out = np.empty((num_samples, int(length)), dtype=np.int32)
        lengths = np.zeros(num_samples, dtype=np.int64)
        for i, (ids, live) in enumerate(run):
            out[:, i] = ids
            lengths += live
        return [self.vocab.decode(out[r, :lengths[r]]) for r in range(num_samples)]

    def generate(self, length: int, prime: str = "", temperature: float = 1.0,
                 top_k: Optional[int] = None, seed: Optional[int] = None, *,
                 top_p: Optional[float] = None, stop: Optional[str] = None,
                 warmup: str = "", unknown: str = "error") -> Iterator[str]:
        """Stream one sample one character at a time (e.g. to print as it is made).

        Takes the arguments of :meth:`sample` except ``num_samples``; the
        arguments are checked at once (not at the first ``next``).
        ``"".join(model.generate(...))`` equals ``model.sample(...)`` for the
        same arguments and seed: sample is built on this iterator.
        """
        run = self._text_run(length, prime, temperature, top_k, seed, top_p, stop, warmup, 1,
                             unknown)
        return _chars(self.vocab.chars, run)

    def _text_run(self, length: Any, prime: Any, temperature: Any, top_k: Any, seed: Any,
                  top_p: Any, stop: Any, warmup: Any, num_samples: int,
                  unknown: str = "error") -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        """Check the text-sampling arguments now; the (ids, live) steps of
        :func:`_until_stop` over :meth:`_stream`."""
        if self.vocab is None:
            raise ValueError("this model has no Vocab (it was built from a vocabulary size); "
                             "use sample_ids")
        length, top_k, top_p = _check_sampling(length, temperature, top_k, top_p)
        for name, text in (("prime", prime), ("warmup", warmup)):
            if not isinstance(text, str):
                raise TypeError(f"{name} must be a str, got {type(text).__name__}")
        if stop is not None:
            if not isinstance(stop, str):
                raise TypeError(f"stop must be a str or None, got {type(stop).__name__}")
            if not stop:
                raise ValueError("stop must not be empty (use None for no stop string)")
        if unknown not in ("error", "drop"):
            raise ValueError(f'unknown must be "error" or "drop", got {unknown!r}')
        warm_ids = self._encode_arg("warmup", warmup, unknown)
        context_ids = np.concatenate([warm_ids, self._encode_arg("prime", prime, unknown)])
        stop_ids = self._encode_arg("stop", stop) if stop is not None else None
        context = context_ids.reshape(1, -1) if context_ids.size else None
        rng = np.random.default_rng(seed)
        return _until_stop(self._stream(length, context, temperature, top_k, top_p, rng,
                                        num_samples), stop_ids, num_samples)

    def _encode_arg(self, name: str, text: str, unknown: str = "error") -> np.ndarray:
        """``vocab.encode(text)``, naming the argument in the error."""
        if not text:
            return np.empty(0, dtype=np.int32)
        try:
            return self.vocab.encode(text, unknown=unknown)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None

    def _stream(self, length: int, context: Optional[np.ndarray], temperature: float,
                top_k: Optional[int], top_p: Optional[float], rng: np.random.Generator,
                n: int) -> Iterator[np.ndarray]:
        """Yield ``length`` steps, each the int32 ids [n] drawn for every row.

        ``context`` (int32 [1, T] or None) is run once with batch 1 and its
        final state copied to the n rows; after that each step is one
        ``_core.forward`` of batch n and one vectorized :func:`_draw`.
        """
        if length == 0:
            return
        V = self.vocab_size
        if context is not None:
            s0 = self.pack_state(None, 1)
            s1 = np.empty_like(s0)
            clog = np.empty((1, context.shape[1], V), self.dtype)
            self._core.forward(self._flat_params, context, s0, s1, clog, False, 0)
            s = np.ascontiguousarray(np.repeat(s1, n, axis=2)) if n > 1 else s1
            ids = _draw(np.broadcast_to(clog[0, -1], (n, V)), temperature, top_k, top_p, rng)
        else:
            s = self.pack_state(None, n)
            ids = rng.integers(V, size=n).astype(np.int32)
        yield ids
        s_next = np.empty_like(s)
        x = np.empty((n, 1), dtype=np.int32)
        logits = np.empty((n, 1, V), self.dtype)
        for _ in range(1, length):
            x[:, 0] = ids
            self._core.forward(self._flat_params, x, s, s_next, logits, False, 0)
            s, s_next = s_next, s
            ids = _draw(logits[:, 0], temperature, top_k, top_p, rng)
            yield ids

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


def _check_sampling(length: Any, temperature: Any, top_k: Any,
                    top_p: Any) -> Tuple[int, Optional[int], Optional[float]]:
    """Check the arguments shared by every sampling method; (length, top_k, top_p)."""
    length = _check_int("length", length, 0)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.number)):
        raise TypeError("temperature must be a number")
    if not (temperature >= 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be finite and >= 0, got {temperature}")
    if top_k is not None:
        top_k = _check_int("top_k", top_k, 1)
    if top_p is not None:
        if isinstance(top_p, (bool, np.bool_)) or \
                not isinstance(top_p, (int, float, np.integer, np.floating)):
            raise TypeError(f"top_p must be a number in (0, 1] or None, "
                            f"got {type(top_p).__name__}")
        top_p = float(top_p)
        if not 0.0 < top_p <= 1.0:  # also refuses NaN
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    return length, top_k, top_p


def _until_stop(stream: Iterator[np.ndarray], stop_ids: Optional[np.ndarray],
                n: int) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Yield (ids [n], live [n] bool) per step of ``stream``: ``live`` marks the
    rows the step's ids belong to (rows not stopped before it). A row stops
    once its last ``len(stop_ids)`` ids are ``stop_ids``; the run ends when
    every row has stopped. Vectorized over rows (a rolling window)."""
    live = np.ones(n, dtype=bool)
    if stop_ids is None:
        for ids in stream:
            yield ids, live
        return
    window = np.full((n, stop_ids.size), -1, dtype=np.int32)
    for ids in stream:
        yield ids, live
        window[:, :-1] = window[:, 1:]
        window[:, -1] = ids
        hit = (window == stop_ids).all(axis=1)
        if hit.any():
            live = live & ~hit  # a new array: the one yielded is not changed
            if not live.any():
                return


def _chars(chars: Tuple[str, ...], run: Iterator[Tuple[np.ndarray, np.ndarray]]) -> Iterator[str]:
    """The characters of row 0 of a one-row run."""
    for ids, _ in run:
        yield chars[ids[0]]


def _nucleus(p: np.ndarray, top_p: float) -> np.ndarray:
    """Zero all but the smallest set of largest entries of each row of p
    (unnormalised, >= 0) that holds at least top_p of the row's mass."""
    order = np.argsort(-p, axis=1, kind="stable")
    sorted_p = np.take_along_axis(p, order, axis=1)
    mass = np.cumsum(sorted_p, axis=1)
    before = np.zeros_like(mass)
    before[:, 1:] = mass[:, :-1]
    keep_sorted = before < top_p * mass[:, -1:]  # the most likely one always stays
    keep = np.empty_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=1)
    return np.where(keep, p, 0.0)


def _draw(logits: np.ndarray, temperature: float, top_k: Optional[int],
          top_p: Optional[float], rng: np.random.Generator) -> Union[int, np.ndarray]:
    """One id per row of ``logits`` [N, V]: int32 [N] (1-D logits: one int).

    Temperature 0 is argmax (no random numbers used). Otherwise the logits are
    divided by the temperature, cut to the top_k largest, then to the top_p
    nucleus, and one id is drawn per row with one ``rng.random`` number each
    (inverse CDF; for one row the exact stream of earlier versions). A
    temperature so low that logits / temperature overflows is argmax too.
    NaN or infinite logits raise ValueError.
    """
    z = logits.astype(np.float64)
    single = z.ndim == 1
    if single:
        z = z[None, :]
    n, V = z.shape
    if temperature > 0:
        if logits.dtype == np.float32 and temperature >= _NO_OVERFLOW_TEMPERATURE:
            zt = z / temperature  # cannot overflow: no errstate (3 us a call)
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                zt = z / temperature
        # Finite zt implies finite z; a NaN or an infinity reaches the max or
        # the min (two reductions, cheaper than isfinite over the array).
        # Else z is bad, or the temperature so low that this is argmax.
        if math.isfinite(np.maximum.reduce(zt, axis=None)) and \
                math.isfinite(np.minimum.reduce(zt, axis=None)):
            return _draw_scaled(zt, single, n, V, top_k, top_p, rng)
    if not np.isfinite(z).all():
        raise ValueError("the model's output is NaN or infinite (non-finite parameters or "
                         "state?): nothing can be sampled from it")
    ids = np.argmax(z, axis=1).astype(np.int32)
    return int(ids[0]) if single else ids


# float32 logits (|z| < 3.5e38) divided by a temperature at least this
# large cannot overflow float64.
_NO_OVERFLOW_TEMPERATURE = 1e-250


def _draw_scaled(z: np.ndarray, single: bool, n: int, V: int, top_k: Optional[int],
                 top_p: Optional[float], rng: np.random.Generator) -> Union[int, np.ndarray]:
    if top_k is not None and top_k < V:
        kth = np.partition(z, V - top_k, axis=1)[:, V - top_k]
        z = np.where(z >= kth[:, None], z, -np.inf)
    # ufunc methods directly: this runs once per step, wrappers cost time.
    p = np.exp(z - np.maximum.reduce(z, axis=1, keepdims=True))
    if top_p is not None and top_p < 1.0:
        p = _nucleus(p, top_p)
    c = np.add.accumulate(p, axis=1)  # = np.cumsum
    u = rng.random(n)
    # Row-wise searchsorted(c, u * total, side="right"): c is non-decreasing.
    # One row (sampling's common case) is that search itself; more rows
    # count c <= u * total in one vectorized pass. The same ids either way.
    if n == 1:
        ids = np.searchsorted(c[0], u * c[0, -1], side="right").astype(np.int32)
    else:
        ids = np.add.reduce(c <= (u * c[:, -1])[:, None], axis=1, dtype=np.int32)
    if np.maximum.reduce(ids) >= V:  # u * total rounded up to total: take the last allowed id
        last = V - 1 - np.argmax(p[:, ::-1] > 0, axis=1)
        ids = np.where(ids >= V, last, ids).astype(np.int32)
    return int(ids[0]) if single else ids
