"""The device argument: "cpu" works everywhere; "cuda" names why it cannot
be used on this build and machine, in one line, before anything is built
(the device model itself: tests/test_device_model.py)."""

import re

import numpy as np
import pytest

import pycharrnn as pc
from pycharrnn import backend


def test_cpu_is_the_default_and_to_cpu_is_the_model_itself():
    m = pc.CharRNN(12, hidden_size=8, seed=0)
    assert m.device == "cpu"
    assert pc.CharRNN(12, hidden_size=8, seed=0, device="CPU").device == "cpu"
    assert m.to("cpu") is m


@pytest.mark.parametrize("device, error", [("tpu", ValueError), ("cuda:1", ValueError),
                                           (0, TypeError)])
def test_an_unknown_device_is_refused_by_name(device, error):
    with pytest.raises(error, match="device"):
        pc.CharRNN(12, hidden_size=8, device=device)


@pytest.mark.parametrize("info, says", [
    ({"cuda": False}, "no CUDA backend: build it with pip install . -C "
                      "cmake.define.PYCHARRNN_CUDA=ON"),
    ({"cuda": True, "cuda_devices": [], "cuda_error": "no CUDA-capable device is detected"},
     "no usable CUDA device: no CUDA-capable device is detected"),
    ({"cuda": True, "cuda_devices": ["NVIDIA H100"]},
     "cuBLAS 13 was not found (libcublas.so.13: cannot open shared object file); install "
     "NVIDIA's wheel: pip install nvidia-cublas"),
])
def test_cuda_says_why_it_cannot_be_used(monkeypatch, info, says):
    monkeypatch.setattr(backend, "build_info", lambda: dict(info))
    # A CUDA build with a GPU but no cuBLAS, as the core reports it.
    monkeypatch.setattr(backend, "find_cublas", lambda: None)
    monkeypatch.setattr(backend._core, "cuda_set_cublas_path", lambda p: None, raising=False)
    monkeypatch.setattr(backend._core, "cuda_cublas", lambda: ("", says), raising=False)
    with pytest.raises(RuntimeError, match="device='cuda'") as e:
        pc.CharRNN(12, hidden_size=8, device="cuda")
    assert says in str(e.value) and "\n" not in str(e.value)
    m = pc.CharRNN(12, hidden_size=8, seed=3)
    before = m.flat_params.copy()
    with pytest.raises(RuntimeError, match=re.escape(says.split(":")[0])):
        m.to("cuda:0")
    assert m.device == "cpu" and np.array_equal(m.flat_params, before)


def test_this_build_answers_for_itself():
    why = backend.device_unavailable("cuda")
    info = pc.build_info()
    assert why and (("no CUDA backend" in why) == (not info["cuda"]))
