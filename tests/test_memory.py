"""The memory check: its count against what a training run really holds
(the process's peak resident memory, measured in a fresh process), and its
reading of what the machine can give."""

import json
import os
import subprocess
import sys

import pytest

import pycharrnn as pc
from pycharrnn import memory

# Trains a model whose buffers dwarf the interpreter's own, and prints the
# growth of the peak resident set over a baseline taken just before the
# model is built, next to the check's count.
SCRIPT = r"""
import json, sys
import numpy as np
import pycharrnn as pc
from pycharrnn import memory

def kib(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

cfg = pc.ModelConfig(**json.loads(sys.argv[1]))
B, T, opt = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
text = "".join(chr(97 + i % 26) for i in range(200000))
vocab = pc.Vocab.from_text(text)
needs = memory.training_needs(len(vocab), cfg, B, T, opt)
base = kib("VmRSS:")
model = pc.CharRNN.from_config(vocab, cfg, seed=0)
tr = pc.Trainer(model, text, batch_size=B, seq_length=T,
                optimizer=pc.optim.create(opt, model), val_fraction=0.05, eval_every=None,
                checkpoint_each_epoch=False, progress=False, stop_on_signals=False)
tr.run(steps=2)
tr.evaluate()
print(json.dumps({"measured": kib("VmHWM:") - base, "estimate": needs.total}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
@pytest.mark.parametrize("cfg, B, T, opt", [
    (dict(hidden_size=768, num_layers=2, cell="lstm"), 64, 128, "adam"),
    (dict(hidden_size=1024, num_layers=1, cell="gru", embedding_dim=64), 32, 64, "adamw"),
    (dict(hidden_size=2048, num_layers=1, cell="rnn"), 16, 32, "sgd"),
])
def test_the_count_matches_the_memory_a_run_holds(tmp_path, cfg, B, T, opt):
    r = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(cfg), str(B), str(T), opt],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    # The count leaves out small things and rounds the packed weights up;
    # what the process holds beyond the buffers (the trainer's batches, the
    # allocator's slack) is small beside models this size.
    assert 0.8 <= got["measured"] / got["estimate"] <= 1.25, got


def test_the_parameter_count_is_the_models():
    vocab = pc.Vocab.from_text("abcdefghij")
    for cfg in (pc.ModelConfig(hidden_size=12, num_layers=3, cell="lstm"),
                pc.ModelConfig(hidden_size=9, num_layers=2, cell="gru", embedding_dim=5),
                pc.ModelConfig(hidden_size=7, cell="rnn", nonlinearity="relu")):
        model = pc.CharRNN.from_config(vocab, cfg)
        assert memory.parameter_count(len(vocab), cfg) == model.num_params


def test_what_the_machine_can_give_is_read():
    have, what = memory.available()
    if have is None:
        pytest.skip("neither /proc/meminfo nor a cgroup limit here")
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < have <= total and what


def test_the_check_names_what_to_shrink(monkeypatch):
    monkeypatch.setattr(memory, "available", lambda: (1 * memory.GiB,
                                                      "this process's memory limit (cgroup) leaves"))
    cfg = pc.ModelConfig(hidden_size=4096, num_layers=2)
    with pytest.raises(MemoryError, match=r"needs about \d+\.\d GiB \(parameters .*more than the "
                       r"1\.0 GiB this process's memory limit \(cgroup\) leaves: use a smaller "
                       r"hidden_size \(4096\), num_layers \(2\) or batch_size \(32\)"):
        memory.check_training(65, cfg, 32, 64)
    memory.check_training(65, pc.ModelConfig(hidden_size=64), 32, 64)  # small: passes
