"""The packed GEMM against the reference loop and NumPy, and its determinism."""

import itertools

import numpy as np
import pytest

import pycharrnn as pc
from pycharrnn import _core

SHAPES = [(1, 1, 1), (1, 37, 300), (3, 17, 5), (4, 33, 70), (2, 7, 19), (4, 6, 300),
          (5, 16, 6), (7, 1, 300), (37, 53, 300), (100, 130, 513), (97, 4100, 3),
          (200, 20, 260)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ta,tb", list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("M,N,K", SHAPES)
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
def test_gemm_matches_reference(dtype, ta, tb, M, N, K, beta, rng):
    A = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
    B = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
    C0 = rng.standard_normal((M, N)).astype(dtype)
    if beta == 0.0:
        C0[0, 0] = np.nan  # beta = 0 must not read C
    C, R = C0.copy(), C0.copy()
    _core.gemm(A, B, C, ta=ta, tb=tb, beta=beta)
    _core.gemm(A, B, R, ta=ta, tb=tb, beta=beta, reference=True)
    opA = A.T if ta else A
    opB = B.T if tb else B
    want = opA.astype(np.float64) @ opB.astype(np.float64)
    if beta != 0.0:
        want += beta * C0
    tol = 1e-12 if dtype == np.float64 else 2e-5
    scale = np.abs(opA).max() * np.abs(opB).max() * K + 1
    assert np.abs(C - want).max() <= tol * scale
    assert np.abs(R - want).max() <= tol * scale


@pytest.mark.parametrize("M", [3, 97, 128, 300])
def test_gemm_bitwise_same_at_any_thread_count(M, rng, restore_threads):
    # The row blocks depend on the team's size (128 rows: one block on one
    # thread, two of 66 and 62 on two); the bits must not. M = 3: the
    # dot-product path, rows of B in groups of four.
    A = rng.standard_normal((M, 200)).astype(np.float32)
    B = rng.standard_normal((400, 200)).astype(np.float32)
    out = []
    for n in (1, 2, 3, 4):
        pc.set_num_threads(n)
        C = np.empty((M, 400), np.float32)
        _core.gemm(A, B, C, tb=True)
        out.append(C)
    assert all(np.array_equal(out[0], c) for c in out[1:])


def test_training_step_bitwise_same_at_any_thread_count(rng, restore_threads):
    x = rng.integers(0, 40, (8, 30))
    res = []
    for n in (1, 2):
        pc.set_num_threads(n)
        m = pc.CharRNN(40, hidden_size=96, num_layers=2, cell="rnn", embedding_dim=16,
                       dtype="float32", seed=1)
        loss, st = m.forward_backward(x, x)
        res.append((loss, m.flat_grads.copy(), st))
    assert res[0][0] == res[1][0]
    assert np.array_equal(res[0][1], res[1][1])
    assert np.array_equal(res[0][2], res[1][2])
