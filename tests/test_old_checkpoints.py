"""Checkpoints written by pycharrnn 0.1.0 before the run directory got one
owner (tests/data/v1, made by tests/make_v1_checkpoints.py) still load and
resume, bit for bit."""

import math
import shutil
from pathlib import Path

import numpy as np

import pycharrnn as pc
from make_v1_checkpoints import TEXT

V1 = Path(__file__).parent / "data" / "v1"


def test_a_saved_model_loads():
    m = pc.load(V1 / "model.npz")
    assert m.cell == "lstm" and m.num_layers == 2 and m.embedding_dim == 6
    assert np.array_equal(m.flat_params, np.load(V1 / "step20_params.npy"))
    assert len(m.sample(20, prime="It was", seed=0)) == len("It was") + 20


def test_a_training_checkpoint_resumes_bit_for_bit(tmp_path):
    shutil.copy(V1 / "step10.npz", tmp_path / "latest.npz")
    tr = pc.Trainer.resume(tmp_path, TEXT)
    assert tr.step_count == 10
    # the EMA of the old format (started at ln V) becomes the bias-corrected one
    losses = [h["loss"] for h in tr.history]
    w = tr.ema_decay ** np.arange(9, -1, -1)
    assert math.isclose(tr.ema_loss, float(np.dot(w, losses) / w.sum()), rel_tol=1e-9)
    tr.run(until_step=20)
    assert np.array_equal(tr.model.flat_params, np.load(V1 / "step20_params.npy"))
