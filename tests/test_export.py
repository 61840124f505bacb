"""safetensors export: a round trip bit for bit, the safetensors package and
PyTorch reading what pycharrnn writes, pycharrnn reading what the package
writes, malformed files refused by name, and the command."""

import json
import subprocess
import sys

import numpy as np
import pytest

import pycharrnn as pc
from pycharrnn.errors import CheckpointError
from pycharrnn.export import read_safetensors, save_safetensors

load_safetensors = pc.load

TEXT = "It was the best of times, it was the worst of times;\n" * 20

CASES = [
    dict(cell="lstm", num_layers=2, embedding_dim=8),
    dict(cell="gru", num_layers=1),
    dict(cell="rnn", nonlinearity="relu", num_layers=3, embedding_dim=5),
    dict(cell="gru", num_layers=2, dtype="float64"),
]


def _model(**kw):
    return pc.CharRNN(pc.Vocab.from_text(TEXT), hidden_size=12, seed=5, **kw)


@pytest.mark.parametrize("kw", CASES)
def test_a_round_trip_is_bit_exact(tmp_path, kw):
    m = _model(**kw)
    path = m.export(tmp_path / "m.safetensors")
    back = load_safetensors(path)
    assert back.config() == m.config() and back.vocab.chars == m.vocab.chars
    for k, v in m.state_dict().items():
        got = back.state_dict()[k]
        assert got.dtype == v.dtype and np.array_equal(got, v), k
    assert pc.load(path).sample(30, seed=2) == m.sample(30, seed=2)


@pytest.mark.parametrize("kw", CASES)
def test_the_safetensors_package_reads_it(tmp_path, kw):
    st = pytest.importorskip("safetensors.numpy")
    from safetensors import safe_open
    m = _model(**kw)
    path = save_safetensors(m, tmp_path / "m.safetensors")
    arrays = st.load_file(str(path))
    assert arrays.keys() == m.state_dict().keys()
    for k, v in m.state_dict().items():
        assert np.array_equal(arrays[k], v), k
    with safe_open(str(path), "np") as f:
        meta = f.metadata()
    assert json.loads(meta["config"]) == m.config()
    assert pc.Vocab.from_json(meta["vocab"]).chars == m.vocab.chars


def test_pycharrnn_reads_what_the_package_writes(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    m = _model(cell="lstm", num_layers=2)
    path = tmp_path / "other.safetensors"
    st.save_file(m.state_dict(), str(path), metadata={"config": json.dumps(m.config()),
                                                      "vocab": m.vocab.to_json()})
    tensors, meta = read_safetensors(path)
    assert all(np.array_equal(tensors[k], v) for k, v in m.state_dict().items())
    assert load_safetensors(path).sample(20, seed=1) == m.sample(20, seed=1)


@pytest.mark.torch
@pytest.mark.parametrize("kw", CASES)
def test_torch_modules_load_it_and_agree(tmp_path, kw):
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    from pycharrnn.torch_compat import TorchCharRNN
    m = _model(**kw)
    path = save_safetensors(m, tmp_path / "m.safetensors")
    t = TorchCharRNN(m.vocab_size, m.hidden_size, m.num_layers, m.cell, m.nonlinearity,
                     m.embedding_dim).to(torch.float64 if m.dtype == np.float64 else
                                         torch.float32)
    t.load_state_dict(st.load_file(str(path)))
    x = m.vocab.encode(TEXT[:40]).reshape(2, 20)
    ours = m.forward(x)[0]
    with torch.no_grad():
        theirs = t.eval()(torch.from_numpy(x.astype(np.int64)))[0].numpy()
    tol = 1e-12 if m.dtype == np.float64 else 1e-5
    assert np.allclose(ours, theirs, rtol=tol, atol=tol)


@pytest.mark.parametrize("damage", ["short", "length", "json", "dtype", "offsets", "config"])
def test_a_malformed_file_is_refused_by_name(tmp_path, damage):
    path = save_safetensors(_model(cell="gru"), tmp_path / "m.safetensors")
    data = bytearray(path.read_bytes())
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    if damage == "short":
        data = data[:5]
    elif damage == "length":
        data[:8] = (len(data) * 2).to_bytes(8, "little")
    elif damage == "json":
        data[8] = ord("!")
    else:
        if damage == "dtype":
            header["decoder.bias"]["dtype"] = "BF16"
        elif damage == "offsets":
            header["decoder.bias"]["data_offsets"][1] += 4
        else:
            del header["__metadata__"]["config"]
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        data = len(text).to_bytes(8, "little") + text + data[8 + n:]
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="m.safetensors"):
        load_safetensors(path)


def test_the_export_command(tmp_path):
    data = tmp_path / "t.txt"
    data.write_text(TEXT, encoding="utf-8")
    run = [sys.executable, "-m", "pycharrnn"]
    kw = dict(cwd=tmp_path, capture_output=True, text=True, timeout=300)
    r = subprocess.run(run + ["train", str(data), "--out", "r", "--steps", "3",
                              "--hidden-size", "16", "--batch-size", "4", "--seq-length", "16",
                              "--no-bar", "--sample-length", "0"], **kw)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(run + ["export", "r", "--format", "safetensors", "--out", "m.safetensors"],
                       **kw)
    assert r.returncode == 0 and r.stdout.startswith("wrote m.safetensors"), r.stderr
    assert np.array_equal(pc.load(tmp_path / "m.safetensors").flat_params,
                          pc.load(tmp_path / "r").flat_params)
    r = subprocess.run(run + ["sample", "m.safetensors", "--length", "20", "--seed", "3"], **kw)
    s = subprocess.run(run + ["sample", "r", "--length", "20", "--seed", "3"], **kw)
    assert r.returncode == 0 and r.stdout == s.stdout, r.stderr
