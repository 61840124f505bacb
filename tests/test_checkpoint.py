"""Model files: exact save/load round trips, run directories, atomic writes,
and a clear CheckpointError for every kind of bad file."""

from __future__ import annotations

import functools
import json
import os
import zipfile

import numpy as np
import pytest

import pycharrnn as pc
from pycharrnn import checkpoint, files
from pycharrnn.checkpoint import HEADER_KEY, model_header, save_arrays
from pycharrnn.errors import CheckpointError

import conftest

TEXT = "hello, world!"          # 10 distinct characters
H = 6


# conftest.make_model with this file's defaults: the text's vocabulary, H=6, float32
make_model = functools.partial(conftest.make_model, V=pc.Vocab.from_text(TEXT), H=H,
                               dtype="float32")


def ids_for(model, shape=(2, 5), seed=0):
    return np.random.default_rng(seed).integers(0, model.vocab_size, size=shape)


def assert_same_model(a, b):
    assert a.config() == b.config()
    assert a.vocab == b.vocab
    if a.vocab is not None:
        assert a.vocab.chars == b.vocab.chars
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype, k
        assert sa[k].shape == sb[k].shape, k
        assert np.array_equal(sa[k], sb[k]), k
    assert np.array_equal(a.flat_params, b.flat_params)
    x = ids_for(a)
    la, sta = a.forward(x)
    lb, stb = b.forward(x)
    assert la.dtype == lb.dtype
    assert np.array_equal(la, lb)
    for p, q in zip(sta if isinstance(sta, tuple) else (sta,),
                    stb if isinstance(stb, tuple) else (stb,)):
        assert np.array_equal(p, q)


def listing(d):
    return sorted(os.listdir(d))


# ================================================================ round trip

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("embedding_dim", [None, 4], ids=["one-hot", "embedding"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_round_trip_rnn(tmp_path, dtype, embedding_dim, nonlinearity, num_layers):
    m = make_model(nonlinearity=nonlinearity, L=num_layers,
                   E=embedding_dim, dtype=dtype, seed=7)
    path = tmp_path / "model.npz"
    m.save(path)
    loaded = pc.load(path)
    assert isinstance(loaded, pc.CharRNN)
    assert_same_model(m, loaded)
    assert loaded.dtype == np.dtype(dtype)
    # The loaded model owns its buffers: changing it leaves the original alone.
    loaded.flat_params[...] = 0
    assert np.any(m.flat_params != 0)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("embedding_dim", [None, 3], ids=["one-hot", "embedding"])
def test_round_trip_other_cells(tmp_path, cell, dtype, embedding_dim):
    m = make_model(cell=cell, L=2, E=embedding_dim, dtype=dtype, seed=3)
    m.save(tmp_path / "m.npz")
    assert_same_model(m, pc.load(tmp_path / "m.npz"))


def test_round_trip_without_vocab(tmp_path):
    m = pc.CharRNN(9, hidden_size=H, num_layers=2, cell="rnn", embedding_dim=3, seed=1)
    m.save(tmp_path / "m.npz")
    loaded = pc.load(tmp_path / "m.npz")
    assert loaded.vocab is None
    assert loaded.vocab_size == 9
    assert_same_model(m, loaded)


def test_round_trip_keeps_dropout_and_trained_params(tmp_path):
    m = make_model(L=2, dropout=0.25, E=3)
    t = pc.Trainer(m, TEXT * 4, batch_size=2, seq_length=4)
    t.run(steps=3)
    m.save(tmp_path / "m.npz")
    loaded = pc.load(tmp_path / "m.npz")
    assert loaded.dropout == 0.25
    assert_same_model(m, loaded)


def test_round_trip_str_and_pathlike(tmp_path):
    m = make_model()
    m.save(str(tmp_path / "a.npz"))
    assert_same_model(m, pc.load(str(tmp_path / "a.npz")))
    m.save(tmp_path / "b.npz")
    assert_same_model(m, pc.load(tmp_path / "b.npz"))


def test_save_any_file_name_exactly(tmp_path):
    m = make_model()
    m.save(tmp_path / "model.ckpt")
    assert listing(tmp_path) == ["model.ckpt"]       # no ".npz" appended
    assert_same_model(m, pc.load(tmp_path / "model.ckpt"))


def test_save_creates_parent_directories(tmp_path):
    m = make_model()
    path = tmp_path / "run" / "sub" / "latest.npz"
    m.save(path)
    assert_same_model(m, pc.load(path))


def test_file_is_a_plain_npz_without_pickles(tmp_path):
    m = make_model(E=3)
    m.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        files = set(z.files)
        header = json.loads(z[HEADER_KEY].tobytes().decode("utf-8"))
    assert files == {HEADER_KEY} | {f"param/{k}" for k in m.state_dict()}
    assert header["format"] == "pycharrnn"
    assert header["version"] == 1
    assert header["config"] == m.config()


# ============================================================ run directories

def test_load_run_directory_picks_latest(tmp_path):
    older = make_model(seed=1)
    latest = make_model(seed=2)
    newer = make_model(seed=3)
    latest.save(tmp_path / "latest.npz")
    older.save(tmp_path / "step_000010.npz")
    newer.save(tmp_path / "step_000020.npz")    # written after latest.npz
    os.utime(tmp_path / "latest.npz", (1_000_000, 1_000_000))   # and make it look old
    for p in (tmp_path, str(tmp_path)):
        assert_same_model(latest, pc.load(p))


def test_load_run_directory_without_latest(tmp_path):
    m = make_model(seed=4)
    m.save(tmp_path / "checkpoint.npz")
    assert_same_model(m, pc.load(tmp_path))


def test_load_empty_run_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        pc.load(tmp_path)


def test_load_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        pc.load(tmp_path / "nope.npz")
    with pytest.raises(FileNotFoundError):
        pc.load(tmp_path / "no" / "such" / "dir")


# ================================================================== atomicity

def test_save_leaves_no_temporary_files(tmp_path):
    m = make_model()
    m.save(tmp_path / "latest.npz")
    assert listing(tmp_path) == ["latest.npz"]


def test_save_over_existing_file_replaces_it(tmp_path):
    a, b = make_model(seed=1), make_model(seed=2, E=3, L=2)
    path = tmp_path / "latest.npz"
    a.save(path)
    assert_same_model(a, pc.load(path))
    b.save(path)
    assert listing(tmp_path) == ["latest.npz"]
    assert_same_model(b, pc.load(path))
    a.save(path)
    assert listing(tmp_path) == ["latest.npz"]
    assert_same_model(a, pc.load(path))


def test_save_replaces_rather_than_rewrites_in_place(tmp_path):
    # Atomic replace gives the path a new inode; an open reader of the old file
    # still sees the complete old file.
    a, b = make_model(seed=1), make_model(seed=2)
    path = tmp_path / "latest.npz"
    a.save(path)
    old_bytes = path.read_bytes()
    with open(path, "rb") as reader:
        b.save(path)
        assert reader.read() == old_bytes
    assert_same_model(b, pc.load(path))


def test_failed_save_keeps_old_file_and_no_temporaries(tmp_path, monkeypatch):
    a, b = make_model(seed=1), make_model(seed=2)
    path = tmp_path / "latest.npz"
    a.save(path)
    before = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        b.save(path)
    monkeypatch.undo()
    assert listing(tmp_path) == ["latest.npz"]
    assert path.read_bytes() == before
    assert_same_model(a, pc.load(path))


def test_saved_file_has_ordinary_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        make_model().save(tmp_path / "m.npz")
    finally:
        os.umask(umask)
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o644


# ================================================================= bad files

@pytest.fixture
def good_file(tmp_path):
    m = make_model(L=2, E=3)
    path = tmp_path / "good.npz"
    m.save(path)
    return m, path


def assert_checkpoint_error(path, *fragments):
    with pytest.raises(CheckpointError) as e:
        pc.load(path)
    assert isinstance(e.value, ValueError)
    msg = str(e.value)
    assert os.path.basename(str(path)) in msg, msg
    for f in fragments:
        assert f in msg, msg
    return msg


def write_model_file(path, model, header_changes=None, config_changes=None,
                     params=None, drop=(), extra=None):
    header = model_header(model)
    header["extra"] = {}
    header.update(header_changes or {})
    header["config"] = dict(header["config"], **(config_changes or {}))
    arrays = {f"param/{k}": v for k, v in model.state_dict().items()}
    if params:
        arrays.update({f"param/{k}": v for k, v in params.items()})
    for k in drop:
        del arrays[f"param/{k}"]
    arrays.update(extra or {})
    save_arrays(path, header, arrays)


def test_check_of_write_model_file_itself(tmp_path, good_file):
    m, _ = good_file
    write_model_file(tmp_path / "same.npz", m)
    assert_same_model(m, pc.load(tmp_path / "same.npz"))


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)
    assert issubclass(CheckpointError, pc.PyCharRNNError)
    assert pc.CheckpointError is CheckpointError


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.1, 0.01])
def test_truncated_file(tmp_path, good_file, fraction):
    _, path = good_file
    data = path.read_bytes()
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(data[:int(len(data) * fraction)])
    assert_checkpoint_error(bad)


def test_truncated_by_one_byte(tmp_path, good_file):
    _, path = good_file
    bad = tmp_path / "short.npz"
    bad.write_bytes(path.read_bytes()[:-1])
    assert_checkpoint_error(bad)


def test_corrupted_parameter_bytes(tmp_path, good_file):
    m, path = good_file
    data = bytearray(path.read_bytes())
    raw = m.params["decoder.weight"].tobytes()
    at = data.find(raw)
    assert at > 0
    data[at + len(raw) // 2] ^= 0xFF
    bad = tmp_path / "flipped.npz"
    bad.write_bytes(bytes(data))
    assert_checkpoint_error(bad)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_bytes(tmp_path, seed):
    bad = tmp_path / "random.npz"
    bad.write_bytes(np.random.default_rng(seed).bytes(2000))
    assert_checkpoint_error(bad)


def test_random_bytes_after_zip_magic(tmp_path):
    bad = tmp_path / "fakezip.npz"
    bad.write_bytes(b"PK\x03\x04" + np.random.default_rng(0).bytes(500))
    assert_checkpoint_error(bad)


def test_empty_file(tmp_path):
    bad = tmp_path / "empty.npz"
    bad.write_bytes(b"")
    assert_checkpoint_error(bad)


def test_text_file(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("this is not a checkpoint\n")
    assert_checkpoint_error(bad)


def test_npz_without_header(tmp_path, good_file):
    m, _ = good_file
    bad = tmp_path / "plain.npz"
    np.savez(bad, a=np.arange(3), **{f"param/{k}": v for k, v in m.state_dict().items()})
    assert_checkpoint_error(bad, "header")


def test_zip_that_is_not_npz(tmp_path):
    bad = tmp_path / "other.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("readme.txt", "hello")
    assert_checkpoint_error(bad)


def test_zip_with_garbage_header_entry(tmp_path):
    bad = tmp_path / "garbage_entry.npz"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr(HEADER_KEY + ".npy", b"\x00not an npy array")
    assert_checkpoint_error(bad)


def test_zip_with_garbage_param_entry(tmp_path, good_file):
    m, path = good_file
    bad = tmp_path / "garbage_param.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "param/decoder.bias.npy":
                data = b"\x00not an npy array"
            dst.writestr(info, data)
    assert_checkpoint_error(bad, "decoder.bias")


def test_pickled_array_is_not_loaded(tmp_path):
    bad = tmp_path / "pickle.npz"
    np.savez(bad, **{HEADER_KEY: np.array([{"format": "pycharrnn"}], dtype=object)})
    assert_checkpoint_error(bad)


@pytest.mark.parametrize("header_bytes", [
    b"\xff\xfe not utf-8",
    b"not json at all",
    b"",
    b"[1, 2, 3]",
    b'"pycharrnn"',
    b"null",
    b'{"version": 1}',
])
def test_header_not_a_pycharrnn_json_object(tmp_path, good_file, header_bytes):
    m, _ = good_file
    bad = tmp_path / "badheader.npz"
    np.savez(bad, **{HEADER_KEY: np.frombuffer(header_bytes, np.uint8)},
             **{f"param/{k}": v for k, v in m.state_dict().items()})
    assert_checkpoint_error(bad)


def test_header_format_other(tmp_path, good_file):
    m, _ = good_file
    bad = tmp_path / "other.npz"
    write_model_file(bad, m, header_changes={"format": "other"})
    assert_checkpoint_error(bad, "not a pycharrnn checkpoint")


def test_header_version_too_new(tmp_path, good_file):
    m, _ = good_file
    bad = tmp_path / "future.npz"
    write_model_file(bad, m, header_changes={"version": 999})
    assert_checkpoint_error(bad, "999")


@pytest.mark.parametrize("version", [0, -1, "1", 1.0, None, [1]])
def test_header_version_invalid(tmp_path, good_file, version):
    m, _ = good_file
    bad = tmp_path / "badversion.npz"
    write_model_file(bad, m, header_changes={"version": version})
    assert_checkpoint_error(bad, "version")


def test_header_without_version(tmp_path, good_file):
    m, _ = good_file
    bad = tmp_path / "noversion.npz"
    header = model_header(m)
    del header["version"]
    save_arrays(bad, header, {f"param/{k}": v for k, v in m.state_dict().items()})
    assert_checkpoint_error(bad, "version")


@pytest.mark.parametrize("name,shape", [
    ("decoder.weight", (H, 10)),               # transposed
    ("decoder.bias", (11,)),
    ("rnn.weight_hh_l1", (H, H + 1)),
    ("embedding.weight", (10, 4)),
    ("rnn.bias_ih_l0", ()),
])
def test_params_do_not_match_config(tmp_path, good_file, name, shape):
    m, _ = good_file
    bad = tmp_path / "mismatch.npz"
    write_model_file(bad, m, params={name: np.zeros(shape, np.float32)})
    assert_checkpoint_error(bad, name, "do not match")


def test_param_missing(tmp_path, good_file):
    m, _ = good_file
    bad = tmp_path / "missing.npz"
    write_model_file(bad, m, drop=["rnn.weight_ih_l1"])
    assert_checkpoint_error(bad, "rnn.weight_ih_l1")


def test_param_unexpected(tmp_path, good_file):
    m, _ = good_file
    bad = tmp_path / "unexpected.npz"
    write_model_file(bad, m, params={"rnn.weight_ih_l2": np.zeros((H, H), np.float32)})
    assert_checkpoint_error(bad, "rnn.weight_ih_l2")


def test_param_not_numeric(tmp_path, good_file):
    m, _ = good_file
    bad = tmp_path / "strings.npz"
    write_model_file(bad, m, params={"decoder.bias": np.array(["x"] * 10)})
    assert_checkpoint_error(bad, "decoder.bias")


def test_config_says_more_layers_than_params(tmp_path, good_file):
    m, _ = good_file
    bad = tmp_path / "layers.npz"
    write_model_file(bad, m, config_changes={"num_layers": 3})
    assert_checkpoint_error(bad)


def test_config_vocab_size_disagrees_with_vocab(tmp_path, good_file):
    m, _ = good_file
    bad = tmp_path / "vsize.npz"
    write_model_file(bad, m, config_changes={"vocab_size": 11})
    assert_checkpoint_error(bad, "vocabulary")


@pytest.mark.parametrize("changes", [
    {"hidden_size": 0},
    {"hidden_size": "6"},
    {"cell": "transformer"},
    {"dtype": "float16"},
    {"dropout": 1.0},
])
def test_config_invalid_values(tmp_path, good_file, changes):
    m, _ = good_file
    bad = tmp_path / "config.npz"
    write_model_file(bad, m, config_changes=changes)
    assert_checkpoint_error(bad, "config")


@pytest.mark.parametrize("key", ["hidden_size", "num_layers", "cell", "dtype",
                                 "embedding_dim"])
def test_config_missing_key(tmp_path, good_file, key):
    m, _ = good_file
    bad = tmp_path / "nokey.npz"
    header = model_header(m)
    del header["config"][key]
    save_arrays(bad, header, {f"param/{k}": v for k, v in m.state_dict().items()})
    assert_checkpoint_error(bad, key)


def test_config_missing_vocab_size(tmp_path, good_file):
    m, _ = good_file
    bad = tmp_path / "novsize.npz"
    header = model_header(m)
    del header["config"]["vocab_size"]
    save_arrays(bad, header, {f"param/{k}": v for k, v in m.state_dict().items()})
    assert_checkpoint_error(bad, "vocab_size")


@pytest.mark.parametrize("config", [None, [], "rnn", 5])
def test_config_not_a_dict(tmp_path, good_file, config):
    m, _ = good_file
    bad = tmp_path / "noconfig.npz"
    header = model_header(m)
    header["config"] = config
    save_arrays(bad, header, {f"param/{k}": v for k, v in m.state_dict().items()})
    assert_checkpoint_error(bad, "config")


@pytest.mark.parametrize("vocab_json", ["garbage", '{"code_points": [-5]}', "{}", 42,
                                        '{"code_points": [97, 97]}'])
def test_bad_vocab_in_header(tmp_path, good_file, vocab_json):
    m, _ = good_file
    bad = tmp_path / "badvocab.npz"
    write_model_file(bad, m, header_changes={"vocab": vocab_json})
    assert_checkpoint_error(bad, "vocab")


def test_npy_file_is_not_a_checkpoint(tmp_path):
    bad = tmp_path / "array.npy"
    np.save(bad, np.arange(5.0))
    assert_checkpoint_error(bad)


def test_directory_named_like_a_file(tmp_path):
    d = tmp_path / "model.npz"
    d.mkdir()
    with pytest.raises((FileNotFoundError, CheckpointError)):
        pc.load(d)


# ========================================================== Unicode vocabularies

UNICODE_CHARS = [
    "a", "Z", " ", "\t",
    "\U0001F600", "\U0001F44D", "\u2764",            # emoji
    "\u4e2d", "\u6587", "\u65e5",                    # CJK
    "e", "\u0301", "\u0308", "\u20dd",               # combining marks
    "\x00", "\r", "\n", "\x7f", "\u2028", "\ufeff",  # NUL, CRLF, DEL, separators, BOM
    "\ud800", "\udc00",                              # two lone surrogates, kept apart
    "\ud83d", "\ude00",                              # the UTF-16 halves of U+1F600, apart
    "\udfff", "\U0010FFFF", "\uffff",
]


def test_unicode_vocab_survives_save_load(tmp_path):
    assert len(set(UNICODE_CHARS)) == len(UNICODE_CHARS)
    text = "".join(UNICODE_CHARS) + "a\r\n\ud800\udc00e\u0301\U0001F600\ud83d\ude00\x00"
    vocab = pc.Vocab.from_text(text)
    assert len(vocab) == len(UNICODE_CHARS)
    m = make_model(V=vocab, E=3, dtype="float64")
    m.save(tmp_path / "unicode.npz")
    loaded = pc.load(tmp_path / "unicode.npz")
    assert loaded.vocab.chars == vocab.chars
    assert len(loaded.vocab) == len(UNICODE_CHARS)
    assert loaded.vocab.decode(loaded.vocab.encode(text)) == text
    assert np.array_equal(loaded.vocab.encode(text), vocab.encode(text))
    assert_same_model(m, loaded)
    s = loaded.sample(40, prime="\ud800\udc00", seed=5)
    assert s.startswith("\ud800\udc00") and len(s) == 2 + 40 and set(s) <= set(UNICODE_CHARS)
    assert s == m.sample(40, prime="\ud800\udc00", seed=5)


def test_unsorted_vocab_order_survives_save_load(tmp_path):
    vocab = pc.Vocab(list(reversed(UNICODE_CHARS)))
    m = make_model(V=vocab)
    m.save(tmp_path / "order.npz")
    loaded = pc.load(tmp_path / "order.npz")
    assert loaded.vocab.chars == tuple(reversed(UNICODE_CHARS))
    assert_same_model(m, loaded)


def test_single_character_vocab(tmp_path):
    m = make_model(V=pc.Vocab(["\ud800"]))
    m.save(tmp_path / "one.npz")
    loaded = pc.load(tmp_path / "one.npz")
    assert loaded.vocab.chars == ("\ud800",)
    assert loaded.sample(3, seed=0) == "\ud800" * 3


@pytest.mark.parametrize("field,value", [(8, 1), (10, 99), (10, 12)])
def test_zip_member_marked_encrypted_or_unknown_compression(tmp_path, good_file, field, value):
    # Offsets 8 and 10 of a central directory entry: flag bits (bit 0:
    # encrypted) and compression method (99: AES, 12: bzip2 with bad data).
    _, path = good_file
    data = bytearray(path.read_bytes())
    for i in range(len(data) - 4):
        if data[i:i + 4] == b"PK\x01\x02":
            data[i + field] = value
    bad = tmp_path / "odd.npz"
    bad.write_bytes(bytes(data))
    assert_checkpoint_error(bad, "not a pycharrnn checkpoint")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_parameters_are_refused(tmp_path, good_file, value):
    m, _ = good_file
    w = m.state_dict()["decoder.weight"].copy()
    w[0, 0] = value
    write_model_file(tmp_path / "nan.npz", m, params={"decoder.weight": w})
    assert_checkpoint_error(tmp_path / "nan.npz", "NaN or infinite")


def test_remove_stale_temporaries(tmp_path):
    import time as _time

    old = tmp_path / ".latest.npz.abc123.tmp"
    new = tmp_path / ".latest.npz.def456.tmp"
    other = tmp_path / ".notes.txt.abc.tmp"
    for f in (old, new, other):
        f.write_bytes(b"partial")
    t = _time.time()
    os.utime(old, (t - 100, t - 100))
    removed = files.remove_stale_temporaries(tmp_path, ["latest.npz", "best.npz"], t - 50)
    assert removed == [old]
    assert not old.exists() and new.exists() and other.exists()
