"""Subnormal floats: kernels flush them to zero (FTZ/DAZ) on every thread while
they run, by default; the caller's floating-point mode is left as it was."""

import platform

import numpy as np
import pytest

import pycharrnn as pc
from pycharrnn import _core

X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
TINY32 = np.float32(1e-39)  # subnormal in float32 (smallest normal: 1.18e-38)


def _subnormal_products(threads):
    """C = A @ B^T for a product large enough to run on `threads` threads,
    every entry of A subnormal: the fraction of C that came out non-zero."""
    pc.set_num_threads(threads)
    A = np.full((256, 64), TINY32, np.float32)
    B = np.ones((256, 64), np.float32) / 64
    C = np.full((256, 256), np.nan, np.float32)
    _core.gemm(A, B, C, tb=True)
    return np.count_nonzero(C) / C.size


def test_default_is_on():
    assert pc.get_flush_denormals() is True


@pytest.mark.skipif(not X86, reason="FTZ/DAZ are x86 MXCSR bits")
@pytest.mark.parametrize("threads", [1, 2])
def test_kernels_flush_and_restore(threads, restore_flush, restore_threads):
    pc.set_flush_denormals(True)
    assert _subnormal_products(threads) == 0.0  # read as zero: every entry 0
    pc.set_flush_denormals(False)
    # IEEE arithmetic again, on the calling thread and on the workers (a
    # worker left in flush mode by the first call would give zeros here).
    assert _subnormal_products(threads) == 1.0
    pc.set_flush_denormals(True)
    assert _subnormal_products(threads) == 0.0


def test_callers_mode_is_restored(restore_flush, restore_threads):
    pc.set_flush_denormals(True)
    for threads in (1, 2):
        _subnormal_products(threads)
        m = pc.CharRNN(5, hidden_size=8, cell="lstm", dtype="float32", seed=0)
        m.forward_backward(np.array([[1, 2, 3, 4]]), np.array([[2, 3, 4, 0]]))
        # NumPy runs on this thread: its arithmetic must still be IEEE.
        assert np.float32(1e-38) * np.float32(0.5) != 0
        assert np.array([TINY32]) * np.float32(1) != 0


def test_results_unchanged_without_subnormals(restore_flush, rng):
    x, y = rng.integers(0, 30, (3, 20)), rng.integers(0, 30, (3, 20))
    out = []
    for flush in (True, False):
        pc.set_flush_denormals(flush)
        m = pc.CharRNN(30, hidden_size=40, num_layers=2, cell="gru", dtype="float32", seed=2)
        loss, state = m.forward_backward(x, y)
        out.append((loss, m.flat_grads.copy(), state))
    assert out[0][0] == out[1][0]
    assert np.array_equal(out[0][1], out[1][1]) and np.array_equal(out[0][2], out[1][2])


@pytest.mark.parametrize("bad", [1, None, "yes", 1.0])
def test_setting_takes_only_bool(bad, restore_flush):
    with pytest.raises(TypeError):
        pc.set_flush_denormals(bad)


@pytest.mark.skipif(not X86, reason="FTZ/DAZ are x86 MXCSR bits")
def test_worker_threads_are_left_in_the_callers_mode(tmp_path):
    # In a fresh process the OpenMP team is formed inside the first kernel
    # call, whose mode the new threads inherit; after the call they must be
    # back in the caller's mode, or other OpenMP code in the process would
    # run with subnormals flushed.
    import subprocess
    import sys

    code = (
        "import numpy as np, pycharrnn as pc\n"
        "from pycharrnn import _core\n"
        "pc.set_num_threads(2)\n"
        "A = np.ones((256, 256), np.float32)\n"
        "C = np.empty((256, 256), np.float32)\n"
        "_core.gemm(A, A, C, tb=True)\n"
        "print(*_core._thread_fp_modes())\n"
    )
    # Run outside the checkout, whose source tree would shadow the installed package.
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    modes = [int(v) for v in r.stdout.split()]
    assert len(modes) == 2
    assert all(m & 0x8040 == 0 for m in modes), [hex(m) for m in modes]
