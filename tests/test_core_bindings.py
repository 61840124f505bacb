"""The raw bindings of the C++ core cannot be called wrong: hyper-parameters
are keyword-only, a bool slot refuses a number, and every function says what
it does."""

import numpy as np
import pytest

from pycharrnn import _core

N = 9
# binding: (state buffers after params and grads, hyper-parameters, bool ones)
OPTIMIZERS = {
    "sgd_update": (["momentum_buffer"],
                   dict(lr=0.1, momentum=0.9, dampening=0.0, nesterov=True, first=True),
                   ["nesterov", "first"]),
    "adagrad_update": (["sum"], dict(clr=0.1, eps=1e-8, eps_inside=True), ["eps_inside"]),
    "rmsprop_update": (["square_avg", "grad_avg", "momentum_buffer"],
                       dict(lr=0.01, alpha=0.99, eps=1e-8, momentum=0.9, centered=True),
                       ["centered"]),
    "adam_update": (["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
                    dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, bias_correction1=0.1,
                         bias_correction2=0.001, decoupled=True, amsgrad=True),
                    ["decoupled", "amsgrad"]),
}


def _arrays(name, dtype):
    rng = np.random.default_rng(0)
    bufs = [np.zeros(N, dtype) for _ in OPTIMIZERS[name][0]]
    return np.ones(N, dtype), rng.standard_normal(N).astype(dtype), bufs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_binding_by_keyword(name, dtype):
    p, g, bufs = _arrays(name, dtype)
    getattr(_core, name)(p, g, *bufs, **OPTIMIZERS[name][1])
    assert not np.array_equal(p, np.ones(N, dtype))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_binding_refuses_positional_hyperparameters(name):
    p, g, bufs = _arrays(name, np.float32)
    with pytest.raises(TypeError):
        getattr(_core, name)(p, g, *bufs, *OPTIMIZERS[name][1].values())
    assert np.array_equal(p, np.ones(N, np.float32))


@pytest.mark.parametrize("bad", [5.0, 1, np.float64(1.0), None, "yes"])
@pytest.mark.parametrize("name,flag", [(n, f) for n, v in sorted(OPTIMIZERS.items())
                                       for f in v[2]])
def test_bool_slots_refuse_numbers(name, flag, bad):
    p, g, bufs = _arrays(name, np.float32)
    with pytest.raises(TypeError):
        getattr(_core, name)(p, g, *bufs, **{**OPTIMIZERS[name][1], flag: bad})
    assert np.array_equal(p, np.ones(N, np.float32))


def test_model_and_gemm_flags_are_keyword_only_bools():
    m = _core.ModelF64(2, 5, 0, 3, 1, 0.0)
    P = np.zeros(m.num_params)
    x = np.zeros((1, 2), np.int32)
    s0, s1 = np.zeros((1, 1, 1, 3)), np.zeros((1, 1, 1, 3))
    with pytest.raises(TypeError):
        m.forward(P, x, s0, s1, None, False, 0)
    with pytest.raises(TypeError):
        m.loss(P, x, x, s0, s1, train=1)
    m.loss(P, x, x, s0, s1, train=False, seed=0)
    A = np.ones((2, 2))
    with pytest.raises(TypeError):
        _core.gemm(False, False, A, A, np.zeros((2, 2)))
    with pytest.raises(TypeError):
        _core.gemm(A, A, np.zeros((2, 2)), ta=0)


def test_every_function_has_a_docstring():
    funcs = {k: v for k, v in vars(_core).items() if callable(v) and not k.startswith("__")}
    for cls in (_core.ModelF32, _core.ModelF64):
        funcs.update({f"{cls.__name__}.{k}": v for k, v in vars(cls).items()
                      if not k.startswith("_") or k == "__init__"})
    assert len(funcs) > 20
    for name, f in funcs.items():
        doc = getattr(f, "__doc__", None) or ""
        if isinstance(f, type):
            assert doc.strip(), name
            continue
        if isinstance(f, property):
            doc = f.fget.__doc__ or ""
        # pybind11 puts the signature first; a description must follow it
        text = doc.split("\n\n", 1)[1] if "\n\n" in doc else ""
        if name.startswith("Model") and "Overloaded" in doc:
            continue
        assert text.strip() or (isinstance(f, property) and doc.strip()), name
