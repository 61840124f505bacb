"""ONNX export: onnxruntime running the exported graph agrees with
CharRNN.forward (logits and final state, from a nonzero initial state) for
every cell, 1-3 layers, one-hot and embedding input; the metadata carries
the config and vocabulary; the command writes it; what the graph cannot
express is refused by name; a missing onnx package says what to install.

The tests that run a graph need onnx and onnxruntime (the onnx extra) and
skip without them; CI installs both and runs this file."""

import json
import subprocess
import sys

import numpy as np
import pytest

import pycharrnn as pc
from conftest import CELLS, cell_id
from pycharrnn import onnx_export
from pycharrnn.cli import main
from pycharrnn.onnx_export import save_onnx

pytestmark = pytest.mark.onnx

TEXT = "It was the best of times, it was the worst of times;\n" * 20
TOL = 1e-5


@pytest.fixture
def ort():
    pytest.importorskip("onnx")
    return pytest.importorskip("onnxruntime")


def _model(cell="lstm", nonlinearity="tanh", L=1, E=None, H=12, V=None, **kw):
    vocab = pc.Vocab.from_text(TEXT) if V is None else V
    return pc.CharRNN(vocab, hidden_size=H, num_layers=L, cell=cell, nonlinearity=nonlinearity,
                      embedding_dim=E, seed=7, **kw)


def _inputs(model, B=3, T=9, seed=0):
    """Ids [B, T] and a nonzero initial state of the model's dtype."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, model.vocab_size, size=(B, T))
    shape = (model.num_layers, B, model.hidden_size)
    h = (rng.standard_normal(shape) * 0.5).astype(model.dtype)
    c = (rng.standard_normal(shape) * 0.5).astype(model.dtype)
    return x, ((h, c) if model.cell == "lstm" else h)


def _run(ort, path, x, state):
    """logits and the final state (a pair for an LSTM) from onnxruntime."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    parts = state if isinstance(state, tuple) else (state,)
    feed = {"ids": np.asarray(x, np.int64)}
    feed.update({n: np.asarray(p, np.float32) for n, p in zip(("h0", "c0"), parts)})
    out = sess.run(None, feed)
    return out[0], (tuple(out[1:]) if len(out) == 3 else out[1])


def _max_error(ours, theirs):
    """The largest absolute difference over logits and every state part."""
    (la, sa), (lb, sb) = ours, theirs
    sa, sb = (sa if isinstance(sa, tuple) else (sa,)), (sb if isinstance(sb, tuple) else (sb,))
    assert len(sa) == len(sb) and la.shape == lb.shape
    assert all(a.shape == b.shape for a, b in zip(sa, sb))
    return max(float(np.max(np.abs(np.asarray(a, np.float64) - b)))
               for a, b in zip((la,) + sa, (lb,) + sb))


def _assert_close(ours, theirs):
    (la, sa), (lb, sb) = ours, theirs
    np.testing.assert_allclose(lb, la, rtol=TOL, atol=TOL, err_msg="logits")
    sa, sb = (sa if isinstance(sa, tuple) else (sa,)), (sb if isinstance(sb, tuple) else (sb,))
    for name, a, b in zip(("h_n", "c_n"), sa, sb):
        np.testing.assert_allclose(b, a, rtol=TOL, atol=TOL, err_msg=name)


@pytest.mark.parametrize("E", [None, 6], ids=["one-hot", "embedding"])
@pytest.mark.parametrize("L", [1, 2, 3])
@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
def test_onnxruntime_agrees_with_forward(tmp_path, ort, cell, L, E):
    m = _model(*cell, L=L, E=E)
    x, s0 = _inputs(m)
    path = save_onnx(m, tmp_path / "m.onnx")
    _assert_close(m.forward(x, s0), _run(ort, path, x, s0))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_a_wrong_gate_order_would_fail(tmp_path, ort, cell, monkeypatch):
    """The comparison above can fail: PyTorch's gate order written as it is
    (no reordering) disagrees far beyond the tolerance."""
    m = _model(cell, L=2, E=6)
    x, s0 = _inputs(m)
    monkeypatch.setitem(onnx_export._GATES, cell, tuple(range(3 if cell == "gru" else 4)))
    path = save_onnx(m, tmp_path / "m.onnx")
    assert _max_error(m.forward(x, s0), _run(ort, path, x, s0)) > 1e-2


def test_the_state_carries_from_one_run_to_the_next(tmp_path, ort):
    m = _model("lstm", L=2)
    x, s0 = _inputs(m, T=12)
    path = m.export(tmp_path / "m.onnx", format="onnx")
    _, mid = _run(ort, path, x[:, :5], s0)
    logits, end = _run(ort, path, x[:, 5:], mid)
    full, s1 = m.forward(x, s0)
    _assert_close((full[:, 5:], s1), (logits, end))


def test_a_float64_model_and_regularisers(tmp_path, ort):
    """A float64 model is written as float32 and still agrees to 1e-5;
    dropout of every kind (training only) leaves the graph as it is."""
    onnx = pytest.importorskip("onnx")
    m = _model("gru", L=2, E=5, dtype="float64", dropout=0.3, input_dropout=0.2,
               output_dropout=0.1, weight_drop=0.4, embedding_dropout=0.1, locked_dropout=True)
    x, s0 = _inputs(m)
    path = save_onnx(m, tmp_path / "m.onnx")
    _assert_close(m.forward(x, s0), _run(ort, path, x, s0))
    proto = onnx.load(str(path))
    assert {t.data_type for t in proto.graph.initializer} <= {onnx.TensorProto.FLOAT,
                                                             onnx.TensorProto.INT64}
    assert json.loads(_meta(proto)["config"])["dtype"] == "float64"


def _meta(proto):
    return {p.key: p.value for p in proto.metadata_props}


def test_the_metadata_carries_config_and_vocabulary(tmp_path, ort):
    onnx = pytest.importorskip("onnx")
    m = _model("rnn", "relu", L=2, E=4)
    proto = onnx.load(str(save_onnx(m, tmp_path / "m.onnx")))
    meta = _meta(proto)
    assert pc.Vocab.from_json(meta["vocab"]).chars == m.vocab.chars
    assert json.loads(meta["config"]) == m.config() and meta["pycharrnn_format"] == "1"
    assert [i.name for i in proto.graph.input] == ["ids", "h0"]
    assert [o.name for o in proto.graph.output] == ["logits", "h_n"]
    assert "vocab" not in _meta(onnx.load(str(save_onnx(_model(V=9), tmp_path / "n.onnx"))))


def test_the_file_is_written_whole(tmp_path, ort):
    """Atomically, over an existing file, leaving no temporary beside it."""
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")
    assert _model("gru").export(path, format="onnx") == path
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    assert path.read_bytes()[:3] != b"old"


def test_unsupported_features_are_refused_by_name(tmp_path, monkeypatch):
    m = _model("lstm")
    path = tmp_path / "m.onnx"
    config = m.config
    monkeypatch.setattr(m, "config", lambda: {**config(), "layer_norm": True})
    with pytest.raises(ValueError, match="cannot express the model's layer_norm"):
        save_onnx(m, path)
    monkeypatch.setattr(m, "config", config)
    params = m.state_dict
    monkeypatch.setattr(m, "state_dict",
                        lambda: {**params(), "rnn.weight_hr_l0": np.zeros((4, 12))})
    with pytest.raises(ValueError, match="parameters rnn.weight_hr_l0"):
        save_onnx(m, path)
    monkeypatch.setattr(m, "state_dict", params)
    monkeypatch.setattr(onnx_export, "_MAX_BYTES", 1000)
    with pytest.raises(ValueError, match="2 GiB"):
        save_onnx(m, path)
    assert not path.exists()
    with pytest.raises(ValueError, match="'safetensors', 'onnx'"):
        m.export(path, format="tflite")


def test_without_onnx_the_error_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    m = _model("gru")
    with pytest.raises(ImportError, match=r'pip install "pycharrnn\[onnx\]"'):
        m.export(tmp_path / "m.onnx", format="onnx")
    m.save(tmp_path / "m.npz")
    code = main(["export", str(tmp_path / "m.npz"), "--format", "onnx",
                 "--out", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith("pycharrnn: error: ") and 'pip install "pycharrnn[onnx]"' in err
    assert not (tmp_path / "m.onnx").exists()


def test_the_export_command(tmp_path, ort):
    m = _model("lstm", L=2, E=6)
    m.save(tmp_path / "m.npz")
    r = subprocess.run([sys.executable, "-m", "pycharrnn", "export", "m.npz", "--format",
                        "onnx", "--out", "model.onnx"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("wrote model.onnx (onnx, "), r.stderr
    x, s0 = _inputs(m)
    _assert_close(m.forward(x, s0), _run(ort, tmp_path / "model.onnx", x, s0))
