"""Shared fixtures. The NumPy oracle is ``pycharrnn.reference``; tests/ is on
sys.path (pytest's rootdir insertion), so tests import helpers from here and
from each other."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import pycharrnn as pc

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("gru", "tanh"), ("lstm", "tanh")]


def cell_id(c) -> str:
    return c[0] if c[0] != "rnn" else f"rnn-{c[1]}"


def make_model(cell="rnn", nonlinearity="tanh", V=7, H=5, L=1, E=None, dtype="float64",
               seed=0, **kw):
    """The tests' CharRNN: V is a vocabulary size or a Vocab; kw goes to
    CharRNN (dropout=..., forget_bias=...)."""
    return pc.CharRNN(V, hidden_size=H, num_layers=L, cell=cell, nonlinearity=nonlinearity,
                      embedding_dim=E, dtype=dtype, seed=seed, **kw)


def good_ids(shape=(2, 3), seed=0, V=7):
    """Valid int32 ids for make_model()'s vocabulary."""
    return np.random.default_rng(seed).integers(0, V, size=shape).astype(np.int32)


def random_state(rng, cell, L, B, H, scale=0.5):
    h = rng.standard_normal((L, B, H)) * scale
    if cell == "lstm":
        return h, rng.standard_normal((L, B, H)) * scale
    return h


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def restore_threads():
    n = pc.get_num_threads()
    yield
    pc.set_num_threads(n)


@pytest.fixture
def restore_flush():
    before = pc.get_flush_denormals()
    yield
    pc.set_flush_denormals(before)


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run the tests marked slow (long fuzzing, 50 kill -9 runs)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow") or os.environ.get("PYCHARRNN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow or PYCHARRNN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def find_mpiexec():
    """The MPI launcher for mpi4py's MPI (the mpich wheel puts it beside
    python), or None without mpi4py or a launcher."""
    import shutil
    import sys

    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    return shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or \
        shutil.which("mpiexec")
