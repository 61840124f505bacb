"""Models out of pycharrnn: the ONNX format.

:func:`save_onnx` writes a model as one ONNX graph made of ONNX's own
operators: the input (Gather on the embedding, or OneHot), one RNN, GRU or
LSTM node per layer, and the decoder (MatMul + Add). The graph:

    inputs   ids     int64   [B, T]     batch-first, as CharRNN.forward
             h0      float32 [L, B, H]  the initial state (zeros for a fresh start)
             c0      float32 [L, B, H]  LSTM only: the initial cell state
    outputs  logits  float32 [B, T, V]
             h_n     float32 [L, B, H]  the final state (feed it back as h0)
             c_n     float32 [L, B, H]  LSTM only

B and T are free; L, H and V are the model's. Ids must lie in [0, V).

The recurrent nodes are time-major (``layout=0``) and the graph transposes
around them: onnxruntime refuses ``layout=1`` (batch-first) for all three
operators. The file is float32 whatever the model's dtype (a float64 model
is rounded to float32): onnxruntime runs RNN, GRU and LSTM in float32 only.

PyTorch's gate order is not ONNX's, so the weights are reordered: GRU
r,z,n becomes z,r,h (with ``linear_before_reset=1``, which is PyTorch's and
pycharrnn's GRU), LSTM i,f,g,o becomes i,o,f,c. ONNX's bias B of a layer is
``bias_ih`` and ``bias_hh`` concatenated. One-hot input is ONNX's OneHot
followed by the layer's full input weights (multiplying by a one-hot vector
is exact, so this computes the same column gather pycharrnn does).

The model's ``metadata_props`` hold ``config`` (the model's config as
JSON, as in the safetensors export; its ``dtype`` is the model's, the
file's tensors are float32), ``vocab`` (the characters as JSON, when the
model has a vocabulary) and ``pycharrnn_format`` "1".

The ``onnx`` package builds the graph; it is imported only when a model is
exported (``pip install "pycharrnn[onnx]"`` installs it and onnxruntime).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

import numpy as np

from .files import atomic_write

__all__ = ["save_onnx", "build_onnx", "check_exportable", "OPSET", "IR_VERSION"]

PathLike = Union[str, Path]

#: The ONNX operator set the graph uses (RNN, GRU and LSTM as of opset 14).
OPSET = 17
#: The ONNX file format version written (read by onnxruntime 1.18, the onnx
#: extra's oldest, and later).
IR_VERSION = 8

_INSTALL = ('exporting to ONNX needs the onnx package, which is not installed: '
            'pip install "pycharrnn[onnx]" (installs onnx and onnxruntime)')

#: The config keys the graph expresses, and those that only change training
#: (every dropout kind is off at inference, so the graph has none).
_EXPRESSED = ("vocab_size", "hidden_size", "num_layers", "cell", "nonlinearity",
              "embedding_dim", "dtype")
_TRAINING_ONLY = ("dropout", "input_dropout", "output_dropout", "weight_drop",
                  "embedding_dropout", "locked_dropout")

#: Each cell's ONNX operator and its gate blocks in ONNX's order, as indices
#: of PyTorch's blocks (GRU r,z,n -> z,r,h; LSTM i,f,g,o -> i,o,f,c).
_OPS = {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM"}
_GATES = {"rnn": (0,), "gru": (1, 0, 2), "lstm": (0, 3, 1, 2)}

#: The largest protobuf message (an ONNX file without external data).
_MAX_BYTES = 2**31 - 2**24


def _onnx() -> Any:
    try:
        import onnx
        from onnx import helper, numpy_helper  # noqa: F401 - the submodules are used
    except ImportError as e:
        raise ImportError(_INSTALL) from e
    return onnx


def _param_names(cfg: Dict[str, Any]) -> List[str]:
    names = ["embedding.weight"] if cfg["embedding_dim"] else []
    for k in range(cfg["num_layers"]):
        names += [f"rnn.{w}_l{k}" for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    return names + ["decoder.weight", "decoder.bias"]


def check_exportable(model: Any) -> None:
    """Raise ValueError, naming the feature, when ``model`` has anything the
    graph of :func:`save_onnx` cannot express (a config key or parameter this
    exporter does not know, an unknown cell or nonlinearity, or weights over
    ONNX's 2 GB file limit)."""
    cfg = model.config()
    unknown = [k for k in cfg if k not in _EXPRESSED + _TRAINING_ONLY]
    if unknown:
        raise ValueError(f"ONNX export cannot express the model's {', '.join(unknown)} "
                         "(the graph is input -> ONNX RNN/GRU/LSTM layers -> Linear only)")
    if cfg["cell"] not in _OPS or cfg["nonlinearity"] not in ("tanh", "relu"):
        raise ValueError(f"ONNX export: cell {cfg['cell']!r} with nonlinearity "
                         f"{cfg['nonlinearity']!r} has no ONNX operator here")
    params = model.state_dict()
    extra = sorted(set(params) - set(_param_names(cfg)))
    if extra:
        raise ValueError(f"ONNX export cannot express the parameters {', '.join(extra)}")
    size = 4 * sum(a.size for a in params.values())
    if size > _MAX_BYTES:
        raise ValueError(f"ONNX export: {size / 2**30:.1f} GiB of float32 weights is over "
                         "the 2 GiB an ONNX file holds without external data")


def _gates(a: np.ndarray, cell: str, H: int) -> np.ndarray:
    """A [G*H, ...] weight or [G*H] bias with its gate blocks in ONNX's order."""
    blocks = a.reshape((len(_GATES[cell]), H) + a.shape[1:])
    return blocks[list(_GATES[cell])].reshape(a.shape)


def _tensors(model: Any) -> Dict[str, np.ndarray]:
    """The graph's initializers, float32, by name: each layer's W [1, G*H, in],
    R [1, G*H, H] and B [1, 2*G*H] in ONNX's gate order, the embedding, the
    decoder's weight transposed [H, V] and its bias."""
    p = {k: np.asarray(v, np.float32) for k, v in model.state_dict().items()}
    cell, H = model.cell, model.hidden_size
    out = {}
    if model.embedding_dim:
        out["embedding.weight"] = p["embedding.weight"]
    for k in range(model.num_layers):
        out[f"rnn.W_l{k}"] = _gates(p[f"rnn.weight_ih_l{k}"], cell, H)[None]
        out[f"rnn.R_l{k}"] = _gates(p[f"rnn.weight_hh_l{k}"], cell, H)[None]
        out[f"rnn.B_l{k}"] = np.concatenate([_gates(p[f"rnn.bias_ih_l{k}"], cell, H),
                                             _gates(p[f"rnn.bias_hh_l{k}"], cell, H)])[None]
    out["decoder.weight_t"] = np.ascontiguousarray(p["decoder.weight"].T)
    out["decoder.bias"] = p["decoder.bias"]
    out["split"] = np.ones(model.num_layers, np.int64)
    if not model.embedding_dim:
        out["onehot.depth"] = np.array(model.vocab_size, np.int64)
        out["onehot.values"] = np.array([0.0, 1.0], np.float32)
    return out


def _layer(helper: Any, model: Any, k: int, x: str) -> Tuple[List[Any], str]:
    """Layer k's nodes: the recurrent node on x [T, B, in] -> y [T, B, H]."""
    cell = model.cell
    states = [f"h0_l{k}"] + ([f"c0_l{k}"] if cell == "lstm" else [])
    outs = [f"y4_l{k}", f"h_n_l{k}"] + ([f"c_n_l{k}"] if cell == "lstm" else [])
    attrs: Dict[str, Any] = {"hidden_size": model.hidden_size, "direction": "forward"}
    if cell == "rnn":
        attrs["activations"] = ["Relu" if model.nonlinearity == "relu" else "Tanh"]
    elif cell == "gru":
        attrs["linear_before_reset"] = 1
    node = helper.make_node(_OPS[cell], [x, f"rnn.W_l{k}", f"rnn.R_l{k}", f"rnn.B_l{k}", ""]
                            + states, outs, name=f"{_OPS[cell].lower()}_l{k}", **attrs)
    y = f"y_l{k}"
    squeeze = helper.make_node("Squeeze", [outs[0], "axis1"], [y], name=f"squeeze_l{k}")
    return [node, squeeze], y


def _nodes(helper: Any, model: Any) -> List[Any]:
    """Every node of the graph, in order."""
    L = model.num_layers
    nodes = [helper.make_node("Transpose", ["ids"], ["ids_tb"], perm=[1, 0])]
    if model.embedding_dim:
        nodes.append(helper.make_node("Gather", ["embedding.weight", "ids_tb"], ["x_l0"]))
    else:
        nodes.append(helper.make_node("OneHot", ["ids_tb", "onehot.depth", "onehot.values"],
                                      ["x_l0"], axis=-1))
    names = ["h"] + (["c"] if model.cell == "lstm" else [])
    for s in names:
        nodes.append(helper.make_node("Split", [f"{s}0", "split"],
                                      [f"{s}0_l{k}" for k in range(L)], axis=0))
    x = "x_l0"
    for k in range(L):
        layer, x = _layer(helper, model, k, x)
        nodes += layer
    for s in names:
        nodes.append(helper.make_node("Concat", [f"{s}_n_l{k}" for k in range(L)],
                                      [f"{s}_n"], axis=0))
    nodes += [helper.make_node("Transpose", [x], ["y_bt"], perm=[1, 0, 2]),
              helper.make_node("MatMul", ["y_bt", "decoder.weight_t"], ["decoded"]),
              helper.make_node("Add", ["decoded", "decoder.bias"], ["logits"])]
    return nodes


def build_onnx(model: Any) -> Any:
    """The model as an ``onnx.ModelProto`` (see the module's docstring for
    the graph), checked by ``onnx.checker``. Raises ValueError for what
    :func:`check_exportable` refuses, ImportError without the onnx package."""
    check_exportable(model)
    onnx = _onnx()
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    F, L, H, V = onnx.TensorProto.FLOAT, model.num_layers, model.hidden_size, model.vocab_size
    states = ["h"] + (["c"] if model.cell == "lstm" else [])
    inputs = [helper.make_tensor_value_info("ids", onnx.TensorProto.INT64,
                                            ["batch", "sequence"])]
    inputs += [helper.make_tensor_value_info(f"{s}0", F, [L, "batch", H]) for s in states]
    outputs = [helper.make_tensor_value_info("logits", F, ["batch", "sequence", V])]
    outputs += [helper.make_tensor_value_info(f"{s}_n", F, [L, "batch", H]) for s in states]
    tensors = _tensors(model)
    tensors["axis1"] = np.array([1], np.int64)
    inits = [numpy_helper.from_array(a, name) for name, a in tensors.items()]
    graph = helper.make_graph(_nodes(helper, model), "pycharrnn", inputs, outputs, inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=IR_VERSION, producer_name="pycharrnn",
                              doc_string=f"pycharrnn {model!r}")
    meta = {"pycharrnn_format": "1", "config": json.dumps(model.config())}
    if model.vocab is not None:
        meta["vocab"] = model.vocab.to_json()
    helper.set_model_props(proto, meta)
    onnx.checker.check_model(proto)
    return proto


def save_onnx(model: Any, path: PathLike) -> Path:
    """Write ``model`` (a :class:`pycharrnn.CharRNN`) to ``path``
    (atomically) as ONNX: ids [B, T] and the initial state in, logits and
    the final state out, float32 (see the module's docstring). Returns the
    path. Raises ValueError naming anything the graph cannot express, and
    ImportError saying what to install when the onnx package is missing."""
    data = build_onnx(model).SerializeToString()
    atomic_write(path, lambda f: f.write(data))
    return Path(path)
