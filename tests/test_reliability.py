"""Reliability: threads, Unicode end to end, divergence, a vocabulary beyond
16 bits, and crashes in the middle of a checkpoint write."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import pycharrnn
from pycharrnn import CharRNN, Vocab
from pycharrnn import checkpoint as ckpt
from pycharrnn import files
from pycharrnn.optim import SGD, Adam
from pycharrnn.trainer import Trainer, TrainingDiverged


def _run_threads(targets):
    """Run each callable in its own thread, started together; re-raise the
    first exception any of them raised."""
    barrier = threading.Barrier(len(targets))
    errors = []

    def wrap(fn):
        def go():
            try:
                barrier.wait(timeout=30)
                fn()
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
        return go

    threads = [threading.Thread(target=wrap(fn)) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "a worker thread hung"
    if errors:
        raise errors[0]


# --------------------------------------------------------------------- threads
def _train_job(cell: str, seed: int, steps: int = 30):
    rng = np.random.default_rng(seed)
    V, B, T = 23, 4, 16
    data = rng.integers(0, V, size=(steps, B, T + 1)).astype(np.int32)
    model = CharRNN(V, hidden_size=32, num_layers=2, cell=cell, embedding_dim=8,
                    dtype="float32", seed=seed)
    opt = Adam(model, lr=1e-2, clip_norm=1.0)
    losses = []

    def run():
        state = None
        for i in range(steps):
            loss, state = model.forward_backward(data[i, :, :-1], data[i, :, 1:], state)
            opt.step()
            losses.append(loss)

    return model, losses, run


def test_two_models_trained_in_two_threads_match_sequential_bitwise():
    seq = [_train_job("gru", 1), _train_job("lstm", 2)]
    for _, _, run in seq:
        run()
    par = [_train_job("gru", 1), _train_job("lstm", 2)]
    _run_threads([run for _, _, run in par])
    for (m_seq, l_seq, _), (m_par, l_par, _) in zip(seq, par):
        assert len(l_par) == 30
        assert np.all(np.isfinite(m_par.flat_params))
        # Training really changed the weights (so equality is not trivial).
        fresh = CharRNN(23, hidden_size=32, num_layers=2, cell=m_par.cell, embedding_dim=8,
                        seed=m_par.seed)
        assert not np.array_equal(fresh.flat_params, m_par.flat_params)
        assert l_seq == l_par
        np.testing.assert_array_equal(m_seq.flat_params, m_par.flat_params)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_one_model_shared_by_two_threads(cell):
    model = CharRNN(31, hidden_size=64, num_layers=2, cell=cell, embedding_dim=6, seed=3)
    rng = np.random.default_rng(0)
    # Different shapes on the two threads: a shared, shape-keyed workspace
    # would be reallocated under the other thread's feet.
    inputs = [rng.integers(0, 31, size=(3, 120)).astype(np.int32),
              rng.integers(0, 31, size=(5, 47)).astype(np.int32)]
    targets = [rng.integers(0, 31, size=x.shape).astype(np.int32) for x in inputs]
    expected = [model.loss(x, y)[0] for x, y in zip(inputs, targets)]
    expected_logits = [model.forward(x)[0] for x in inputs]
    expected_sample = model.sample_ids(40, prime=inputs[0][0], seed=7)
    before = model.flat_params.copy()
    n = 60
    got = [[], []]
    bad_logits = [0, 0]
    samples = []

    def worker(k):
        def go():
            for i in range(n):
                got[k].append(model.loss(inputs[k], targets[k])[0])
                if i % 10 == 0:
                    logits, _ = model.forward(inputs[k])
                    if not np.array_equal(logits, expected_logits[k]):
                        bad_logits[k] += 1
            samples.append(model.sample_ids(40, prime=inputs[0][0], seed=7))
        return go

    _run_threads([worker(0), worker(1)])
    for k in range(2):
        assert got[k] == [expected[k]] * n, f"thread {k} saw different losses"
        assert bad_logits[k] == 0
    for s in samples:
        np.testing.assert_array_equal(s, expected_sample)
    np.testing.assert_array_equal(model.flat_params, before)


# --------------------------------------------------------------------- unicode
UNICODE_TEXT = (
    "cafe\u0301 na\u0131\u0308ve "            # combining acute / diaeresis
    "\U0001F600 \U0001F44D\U0001F3FD "       # emoji, emoji + skin tone
    "\U0001F468\u200D\U0001F469\u200D\U0001F467 "  # ZWJ family
    "\U0001F3F3\uFE0F\u200D\U0001F308 "       # rainbow flag (VS16 + ZWJ)
    "\u6f22\u5b57\u304b\u306a\ud55c\uae00 "   # CJK, kana, hangul
    "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627 \u200f"  # Hebrew, Arabic, RLM
    "nul\x00byte\r\nnext line\r\n"
    "lone\ud800surrogate \U00010348 tab\t end"
)


def test_unicode_vocab_round_trip():
    v = Vocab.from_text(UNICODE_TEXT)
    ids = v.encode(UNICODE_TEXT)
    assert ids.dtype == np.int32
    assert len(ids) == len(UNICODE_TEXT)
    assert v.decode(ids) == UNICODE_TEXT
    assert set(v.chars) == set(UNICODE_TEXT)
    assert list(v.chars) == sorted(set(UNICODE_TEXT))
    for c in ("\x00", "\r", "\n", "\u0301", "\u200d", "\ud800", "\U0001F468", "\u05e9"):
        assert c in v
        assert v.decode(v.encode(c)) == c
    v2 = Vocab.from_json(v.to_json())
    assert v2 == v and v2.chars == v.chars


def test_unicode_train_sample_save_load(tmp_path):
    text = UNICODE_TEXT * 4
    vocab = Vocab.from_text(text)
    model = CharRNN(vocab, hidden_size=16, cell="gru", embedding_dim=8, seed=0)
    tr = Trainer(model, text, batch_size=2, seq_length=16, val_fraction=0,
                 optimizer=Adam(model, lr=1e-2), checkpoint_dir=tmp_path / "run")
    hist = tr.run(steps=6)
    assert len(hist) == 6 and all(math.isfinite(h["loss"]) for h in hist)

    prime = "e\u0301\U0001F468\u200D\x00\r\n\u05e9\ud800"
    s1 = model.sample(80, prime=prime, seed=5)
    assert isinstance(s1, str) and s1.startswith(prime) and len(s1) == len(prime) + 80
    assert set(s1) <= set(vocab.chars)
    assert model.sample(80, prime=prime, seed=5) == s1

    path = tmp_path / "m.npz"
    model.save(path)
    for src in (path, tmp_path / "run"):  # a file, and a run directory's latest.npz
        m2 = pycharrnn.load(src)
        assert m2.vocab == vocab
        assert m2.vocab.chars == vocab.chars
        assert m2.vocab.decode(m2.vocab.encode(text)) == text
        for k, a in model.state_dict().items():
            np.testing.assert_array_equal(m2.state_dict()[k], a)
        assert m2.sample(80, prime=prime, seed=5) == s1

    for bad in ("Z", "\U0001F601", "\udfff", "e\u0302"):
        with pytest.raises(ValueError) as ei:
            model.sample(5, prime="e" + bad, seed=0)
        ch = bad[-1]
        msg = str(ei.value)
        assert repr(ch) in msg or f"U+{ord(ch):04X}" in msg, msg
        # Only when asked, unknown characters are dropped: the same as without them.
        kept = "".join(c for c in "e" + bad if c in vocab)
        assert model.sample(5, prime="e" + bad, seed=0, unknown="drop") == \
            model.sample(5, prime=kept, seed=0)
    with pytest.raises(ValueError, match='unknown must be "error" or "drop"'):
        model.sample(5, prime="e", unknown="ignore")
    assert vocab.encode("Z😁", unknown="drop").size == 0


# ------------------------------------------------------------------ divergence
def test_divergence_raises_at_its_step_and_keeps_last_checkpoint(tmp_path):
    text = "".join(chr(97 + (i * 7) % 11) for i in range(600))
    vocab = Vocab.from_text(text)
    model = CharRNN(vocab, hidden_size=16, cell="rnn", nonlinearity="relu", seed=0)
    run_dir = tmp_path / "run"
    seen = []
    saved_steps = []
    saved_params = []

    def cb(trainer, event, m):
        if event == "step":
            seen.append(int(m["step"]))
        elif event == "checkpoint":
            saved_steps.append(int(m["step"]))
            saved_params.append(trainer.model.flat_params.copy())

    tr = Trainer(model, text, batch_size=2, seq_length=8, val_fraction=0,
                 optimizer=SGD(model, lr=1e6), checkpoint_dir=run_dir, checkpoint_every=1,
                 callbacks=[cb])
    # Step 1 with a sane learning rate gives a checkpoint before the blow-up.
    tr.optimizer.lr = 1e-3
    tr.step()
    assert (run_dir / "latest.npz").is_file()
    snapshot = (run_dir / "latest.npz").read_bytes()
    tr.optimizer.lr = 1e6
    with pytest.raises(TrainingDiverged) as ei:
        tr.run(steps=50)
    bad_step = seen[-1] + 1
    assert bad_step <= 50
    assert f"step {bad_step}" in str(ei.value)
    assert tr.step_count == bad_step - 1
    assert saved_steps == seen  # a checkpoint for every finished step, none after

    # The checkpoint on disk is the last good step's, loadable and finite; no
    # other file (no temporary, no best.npz from the diverged model) appeared.
    assert _checkpoint_files(run_dir) == ["latest.npz"]
    header, _ = ckpt.read_arrays(run_dir / "latest.npz")
    assert header["extra"]["trainer"]["step"] == bad_step - 1
    if bad_step == 2:
        assert (run_dir / "latest.npz").read_bytes() == snapshot
    m2 = pycharrnn.load(run_dir)
    assert np.all(np.isfinite(m2.flat_params))
    np.testing.assert_array_equal(m2.flat_params, saved_params[-1])
    # Explicit saving of the diverged trainer is refused too.
    if not np.all(np.isfinite(model.flat_params)):
        with pytest.raises(TrainingDiverged):
            tr.save_checkpoint(run_dir / "latest.npz")
        assert _checkpoint_files(run_dir) == ["latest.npz"]
    # The run can resume from the good checkpoint.
    tr2 = Trainer.resume(run_dir, text)
    assert tr2.step_count == bad_step - 1


# ------------------------------------------------------------ large vocabulary
@pytest.fixture(scope="module")
def big_vocab():
    text = "".join(chr(i) for i in range(70_000))  # includes the lone surrogates
    return text, Vocab.from_text(text)


def test_large_vocab_round_trip(big_vocab):
    text, v = big_vocab
    assert len(v) == 70_000
    ids = v.encode(text)
    np.testing.assert_array_equal(ids, np.arange(70_000, dtype=np.int32))
    assert v.decode(ids) == text
    hi = "\U00010000\ud7ff\U0001116f"
    assert v.encode(hi).tolist() == [65_536, 0xD7FF, 69_999]
    with pytest.raises(ValueError, match="U\\+11170"):
        v.encode("a\U00011170")
    assert v.decode(np.array([65_536, 69_999], np.int32)) == "\U00010000\U0001116f"
    assert Vocab.from_json(v.to_json()) == v


def _ref_rnn_logits(model, x):
    """NumPy reference of a 1-layer tanh RNN with an embedding, float64."""
    p = {k: a.astype(np.float64) for k, a in model.state_dict().items()}
    B, T = x.shape
    h = np.zeros((B, model.hidden_size))
    out = np.empty((B, T, model.vocab_size))
    for t in range(T):
        e = p["embedding.weight"][x[:, t]]
        h = np.tanh(e @ p["rnn.weight_ih_l0"].T + p["rnn.bias_ih_l0"]
                    + h @ p["rnn.weight_hh_l0"].T + p["rnn.bias_hh_l0"])
        out[:, t] = h @ p["decoder.weight"].T + p["decoder.bias"]
    return out


def test_large_vocab_model(big_vocab, tmp_path):
    _, v = big_vocab
    model = CharRNN(v, hidden_size=4, embedding_dim=4, cell="rnn", seed=0)
    x = np.array([[65_536, 69_999, 65_535, 70_000 - 1 - 4464, 0],
                  [69_998, 65_537, 1, 66_000, 69_000]], dtype=np.int32)
    y = np.array([[69_999, 65_536, 65_600, 3, 69_999],
                  [0, 69_997, 66_001, 65_536, 69_999]], dtype=np.int32)
    logits, _ = model.forward(x)
    assert logits.shape == (2, 5, 70_000)
    ref = _ref_rnn_logits(model, x)
    np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-5)
    # ids that alias modulo 2**16 give different logits
    x_alias = x.copy()
    x_alias[x_alias >= 65_536] -= 65_536
    assert not np.allclose(model.forward(x_alias)[0], logits)

    lse = np.log(np.exp(ref - ref.max(-1, keepdims=True)).sum(-1)) + ref.max(-1)
    ref_loss = float(np.mean(lse - np.take_along_axis(ref, y[..., None], -1)[..., 0]))
    loss, _ = model.loss(x, y)
    assert loss == pytest.approx(ref_loss, rel=1e-4)
    loss2, _ = model.forward_backward(x, y)
    assert loss2 == pytest.approx(ref_loss, rel=1e-4)
    g = model.grads
    # decoder.bias grad = mean over B*T of softmax - onehot(y)
    prob = np.exp(ref - lse[..., None])
    gb = prob.sum((0, 1))
    np.add.at(gb, y.reshape(-1), -1.0)
    gb /= y.size
    np.testing.assert_allclose(g["decoder.bias"], gb, rtol=1e-3, atol=1e-7)
    # embedding rows: non-zero exactly for the ids that were read
    used = np.unique(x)
    nz = np.flatnonzero(np.abs(g["embedding.weight"]).sum(1))
    np.testing.assert_array_equal(nz, used)

    path = tmp_path / "big.npz"
    model.save(path)
    m2 = pycharrnn.load(path)
    assert m2.vocab == v and len(m2.vocab) == 70_000
    np.testing.assert_array_equal(m2.flat_params, model.flat_params)
    assert m2.loss(x, y)[0] == loss
    ids = m2.sample_ids(20, prime=x[0], seed=1)
    assert ids.min() >= 0 and ids.max() < 70_000
    np.testing.assert_array_equal(ids, model.sample_ids(20, prime=x[0], seed=1))


# ----------------------------------------------------------- interrupted write
class _Crash(Exception):
    pass


def _saved_model(tmp_path):
    vocab = Vocab.from_text("hello world\x00\u6f22")
    model = CharRNN(vocab, hidden_size=8, cell="lstm", seed=0)
    path = tmp_path / "model.npz"
    model.save(path)
    return model, path


def _assert_intact(tmp_path, path, original_bytes, model):
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name], \
        "a temporary file was left behind"
    assert path.read_bytes() == original_bytes
    m2 = pycharrnn.load(path)
    np.testing.assert_array_equal(m2.flat_params, model.flat_params)
    assert m2.vocab == model.vocab


@pytest.mark.parametrize("exc", [_Crash, KeyboardInterrupt, OSError])
def test_crash_inside_savez_keeps_previous_checkpoint(tmp_path, monkeypatch, exc):
    model, path = _saved_model(tmp_path)
    original = path.read_bytes()
    real_savez = np.savez
    calls = []

    def crashing_savez(f, *args, **kw):
        calls.append(1)
        f.write(b"PK\x03\x04 partial zip data")  # something is already on disk
        raise exc("simulated crash during write")

    monkeypatch.setattr(ckpt.np, "savez", crashing_savez)
    changed = CharRNN(model.vocab, hidden_size=8, cell="lstm", seed=1)
    with pytest.raises(exc):
        changed.save(path)
    assert calls == [1]
    monkeypatch.setattr(ckpt.np, "savez", real_savez)
    _assert_intact(tmp_path, path, original, model)


def test_crash_midway_through_a_large_write(tmp_path, monkeypatch):
    """The file object fails after part of the archive was written."""
    model, path = _saved_model(tmp_path)
    original = path.read_bytes()
    real = ckpt.atomic_write

    def atomic_write(p, write):
        def partial(f):
            class Broken:
                def __init__(self, f):
                    self.f, self.n = f, 0

                def write(self, b):
                    self.n += len(b)
                    if self.n > 200:
                        raise OSError(28, "No space left on device")
                    return self.f.write(b)

                def __getattr__(self, name):
                    return getattr(self.f, name)
            write(Broken(f))
        real(p, partial)

    monkeypatch.setattr(ckpt, "atomic_write", atomic_write)
    changed = CharRNN(model.vocab, hidden_size=8, cell="lstm", seed=1)
    with pytest.raises(OSError):
        changed.save(path)
    _assert_intact(tmp_path, path, original, model)


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_crash_at_fsync_or_rename_keeps_previous_checkpoint(tmp_path, monkeypatch, where):
    model, path = _saved_model(tmp_path)
    original = path.read_bytes()

    def boom(*a, **k):
        raise OSError(5, f"simulated {where} failure")

    monkeypatch.setattr(files.os, where, boom)
    changed = CharRNN(model.vocab, hidden_size=8, cell="lstm", seed=1)
    with pytest.raises(OSError):
        changed.save(path)
    monkeypatch.undo()
    _assert_intact(tmp_path, path, original, model)


def _checkpoint_files(run_dir):
    """The checkpoints and temporary files in a run directory (it also holds
    run.json, metrics.jsonl and curves.png)."""
    return sorted(p.name for p in run_dir.iterdir() if p.suffix in (".npz", ".tmp"))


def test_trainer_checkpoint_crash_keeps_previous(tmp_path, monkeypatch):
    text = "abcdefgh" * 40
    vocab = Vocab.from_text(text)
    model = CharRNN(vocab, hidden_size=8, cell="gru", seed=0)
    run_dir = tmp_path / "run"
    tr = Trainer(model, text, batch_size=2, seq_length=8, val_fraction=0,
                 checkpoint_dir=run_dir, checkpoint_every=2)
    tr.run(steps=2)
    latest = run_dir / "latest.npz"
    original = latest.read_bytes()

    def crashing_savez(f, *a, **k):
        f.write(b"\0" * 64)
        raise _Crash("power cut")

    monkeypatch.setattr(ckpt.np, "savez", crashing_savez)
    with pytest.raises(_Crash):
        tr.run(steps=2)
    monkeypatch.undo()
    assert _checkpoint_files(run_dir) == ["latest.npz"]
    assert latest.read_bytes() == original
    tr2 = Trainer.resume(run_dir, text)
    assert tr2.step_count == 2
    tr2.run(steps=2)
    assert Trainer.resume(run_dir, text).step_count == 4


# ------------------------------------------------------------ memory limits
def test_workspace_larger_than_memory_is_refused_before_allocating():
    m = pycharrnn.CharRNN(65, hidden_size=2048, cell="lstm", seed=0)
    huge = np.zeros((4096, 4096), np.int32)  # 64 MiB of ids; the workspace would be ~900 GiB
    with pytest.raises(MemoryError, match="workspace .* GiB"):
        m.loss(huge, huge)
    with pytest.raises(MemoryError):
        m.forward_backward(huge, huge)
    small = np.zeros((2, 5), np.int32)
    loss, _ = m.loss(small, small)  # the model is still usable afterwards
    assert np.isfinite(loss)


LEAK_SCRIPT = r"""
import numpy as np, pycharrnn as pc
def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
m = pc.CharRNN(30, hidden_size=32, num_layers=2, cell="lstm", embedding_dim=8, dropout=0.1, seed=0)
opt = pc.optim.Adam(m, clip_norm=1.0)
rng = np.random.default_rng(0)
x = rng.integers(0, 30, (4, 20)); y = rng.integers(0, 30, (4, 20))
state = m.initial_state(4)
marks = []
for step in range(1, 10001):
    loss, state = m.forward_backward(x, y, state)
    opt.step()
    if step in (1000, 10000):
        marks.append(rss_kib())
print(marks[0], marks[1])
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
def test_ten_thousand_steps_keep_rss_flat(tmp_path):
    if pycharrnn.build_info().get("sanitize"):
        pytest.skip("AddressSanitizer keeps freed memory in quarantine: RSS grows by design")
    r = subprocess.run([sys.executable, "-c", LEAK_SCRIPT], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    after_1k, after_10k = map(int, r.stdout.split())
    assert after_10k - after_1k < 2048, (after_1k, after_10k)  # KiB
