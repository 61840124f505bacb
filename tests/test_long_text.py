"""Texts longer than 2**31 characters: 64-bit offsets everywhere, ids kept in
the smallest dtype (1 byte a character for up to 256 symbols), and text
converted in blocks so that no temporary grows with the text."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import pycharrnn as pc
from pycharrnn import vocab as vocab_mod
from pycharrnn.data import Batches, fingerprint
from pycharrnn.trainer import Trainer

BIG = 2**31 + 2**20  # more than 2**31 ids


@pytest.fixture
def sparse_ids(tmp_path):
    """A memory-mapped uint8 file of BIG ids, sparse on disk (all zero),
    with markers written beyond 2**31."""
    path = tmp_path / "ids.u8"
    with open(path, "wb") as f:
        f.truncate(BIG)
        f.seek(2**31 + 5)
        f.write(bytes(range(1, 41)))
        f.seek(BIG - 3)
        f.write(b"\x07\x08\x09")
    return np.memmap(path, dtype=np.uint8, mode="r", shape=(BIG,))


def test_batches_read_beyond_2_31_without_copying(sparse_ids):
    b = Batches(sparse_ids, batch_size=1, seq_length=8)
    assert np.shares_memory(b.ids, sparse_ids)  # no int32 copy of a 2 GiB text
    b.position = 2**31 + 5
    x, y, wrapped = b.next()
    assert not wrapped and x.dtype == np.int32 and y.dtype == np.int32
    assert x.tolist() == [list(range(1, 9))] and y.tolist() == [list(range(2, 10))]
    # The last chunk of the text, then the wrap to the start.
    b.position = b.stream_length - 8
    x, y, _ = b.next()
    assert x[0, -2:].tolist() == [7, 8] and y[0, -2:].tolist() == [8, 9]
    _, _, wrapped = b.next()
    assert wrapped and b.position == 8


def test_batches_streams_start_beyond_2_31(sparse_ids):
    # 4096 streams: the last ones start beyond 2**31.
    b = Batches(sparse_ids, batch_size=4096, seq_length=5)
    n = b.stream_length
    assert 4095 * n > 2**31
    s, pos = divmod(2**31 + 5, n)  # the stream holding the first marker, and where
    b.position = pos
    x, y, _ = b.next()
    assert x[s].tolist() == [1, 2, 3, 4, 5] and y[s].tolist() == [2, 3, 4, 5, 6]
    assert not x[:s].any() and not x[s + 1:].any()


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_block_conversion_matches_whole(monkeypatch, chunk):
    text = "héllo wörld\n日本語 🙂 e\u0301 \u05e9\u05dc\u05d5\u05dd\r\n\x00" * 7
    whole_vocab = pc.Vocab.from_text(text)
    whole = whole_vocab.encode(text)
    monkeypatch.setattr(vocab_mod, "CHUNK", chunk)
    v = pc.Vocab.from_text(text)
    assert v == whole_vocab
    assert np.array_equal(v.encode(text), whole)
    for dt in (np.uint8, np.uint16):
        e = v.encode(text, dtype=dt)
        assert e.dtype == dt and np.array_equal(e, whole)
    fp = fingerprint(whole.astype(np.uint8))
    assert fp == {"length": whole.size,
                  "sha256": hashlib.sha256(whole.astype("<i4").tobytes()).hexdigest()}
    with pytest.raises(ValueError, match=r"character 'z' \(U\+007A\) at position 4"):
        v.encode("héll" + "z" + text)


def test_encode_dtype_checks():
    v = pc.Vocab([chr(i) for i in range(300)])
    with pytest.raises(ValueError, match="300 ids do not fit in uint8"):
        v.encode("a", dtype=np.uint8)
    with pytest.raises(TypeError, match="dtype must be int32, uint16 or uint8"):
        v.encode("a", dtype=np.float32)
    assert vocab_mod.compact_dtype(256) == np.uint8
    assert vocab_mod.compact_dtype(257) == np.uint16
    assert vocab_mod.compact_dtype(70000) == np.int32


def test_trainer_keeps_compact_ids_and_resumes(tmp_path):
    text = "the quick brown fox jumps over the lazy dog\n" * 200
    m = pc.CharRNN(pc.Vocab.from_text(text), hidden_size=16, seed=0)
    tr = Trainer(m, text, batch_size=4, seq_length=16, checkpoint_dir=tmp_path)
    assert tr.batches.ids.dtype == np.uint8 and tr.val_ids.dtype == np.uint8
    tr.run(steps=3)
    # The fingerprint is that of the int32 ids, as checkpoints always had.
    ids32 = m.vocab.encode(text)
    assert tr.data_fingerprint == {
        "length": ids32.size, "sha256": hashlib.sha256(ids32.tobytes()).hexdigest()}
    r = Trainer.resume(tmp_path, ids32)  # int32 ids of the same text resume it
    assert r.step_count == 3
    u8 = np.memmap(tmp_path / "ids.u8", dtype=np.uint8, mode="w+", shape=ids32.shape)
    u8[:] = ids32
    r2 = Trainer.resume(tmp_path, u8)
    assert np.shares_memory(r2.batches.ids, u8)
    assert r.run(steps=2)[-1]["loss"] == r2.run(steps=2)[-1]["loss"]
    bad = u8.copy()
    bad[7] = 200
    with pytest.raises(ValueError, match="data holds id 200"):
        Trainer(m, bad)


@pytest.mark.slow
def test_train_on_a_text_longer_than_2_31_characters(tmp_path):
    """The whole path on a real str of 2**31 + 4096 characters: vocabulary,
    encoding (1 byte a character), training, validation, checkpoint, resume.
    Needs about 5 GiB of memory and a minute."""
    n = 2**31 + 4096
    text = ("abcdefgh" * (n // 8 + 1))[:n - 1] + "Z"
    v = pc.Vocab.from_text(text)
    assert v.chars == tuple("Zabcdefgh")
    m = pc.CharRNN(v, hidden_size=8, seed=0)
    tr = Trainer(m, text, batch_size=2, seq_length=16, val_fraction=1e-6,
                 checkpoint_dir=tmp_path, checkpoint_each_epoch=False)
    assert tr.batches.ids.dtype == np.uint8 and tr.batches.ids.size > 2**31
    assert tr.val_ids[-1] == v.encode("Z")[0]
    tr.batches.position = tr.batches.stream_length - 40  # the far end of stream 1
    tr.run(steps=2)
    assert np.isfinite(tr.evaluate())
    r = Trainer.resume(tmp_path, text)
    assert r.step_count == 2 and r.batches.position == tr.batches.position
