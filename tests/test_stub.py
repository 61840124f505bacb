"""pycharrnn/_core.pyi, the type stub of the compiled module, is complete and
accurate: every name of the module and of each class is in it and nothing
else is, and every function and method has the module's argument names,
keyword-only marks and defaults (read from the signatures pybind11 writes
into the docstrings). The stub is parsed with ast, so it cannot rot."""

import ast
from pathlib import Path

import pytest

import pycharrnn as pc
from pycharrnn import _core

STUB = Path(pc.__file__).with_name("_core.pyi")
# Functions present only in a CUDA build.
CUDA = {f"cuda_{k}_{d}" for k in ("cell_step", "softmax_xent", "adam") for d in ("f32", "f64")}
CUDA |= {"DeviceModelF32", "DeviceModelF64", "cuda_set_cublas_path", "cuda_cublas",
         "cuda_memory"}


def _stub():
    return ast.parse(STUB.read_text(encoding="utf-8"))


def _top_level(tree):
    """name -> node of what the stub defines at module level."""
    out = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out[node.name] = node
        elif isinstance(node, ast.AnnAssign):
            out[node.target.id] = node
        elif isinstance(node, ast.Assign):
            out.update({t.id: node for t in node.targets})
    return out


def _base_name(expr):
    return (expr.value if isinstance(expr, ast.Subscript) else expr).id


def _members(cls, defs):
    """name -> FunctionDef of a stub class, its stub base classes' included."""
    out = {}
    for base in cls.bases:
        name = _base_name(base)
        if name in defs:
            out.update(_members(defs[name], defs))
    out.update({n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)})
    return out


def _functions(defs):
    """qualified name -> FunctionDef of every function and method the stub
    gives the module (an annotated name: its protocol type's __call__)."""
    out = {}
    for name, node in defs.items():
        if name.startswith("_") and not hasattr(_core, name):
            continue  # the stub's own helpers (type variables, shared bases)
        if isinstance(node, ast.FunctionDef):
            out[name] = node
        elif isinstance(node, ast.ClassDef):
            out.update({f"{name}.{k}": f for k, f in _members(node, defs).items()})
        elif isinstance(node, ast.AnnAssign):
            out[name] = _members(defs[_base_name(node.annotation)], defs)["__call__"]
    return out


def _module_names():
    names = {k for k in vars(_core) if not k.startswith("__")}
    for cls in (v for v in vars(_core).values() if isinstance(v, type)):
        names |= {f"{cls.__name__}.{k}" for k in vars(cls)
                  if not k.startswith("_") or k == "__init__"}
    return names


def _stub_names():
    defs = _top_level(_stub())
    names = set(_functions(defs))
    names |= {k for k, v in defs.items() if isinstance(v, ast.ClassDef) and not k.startswith("_")}
    if not _core.build_info()["cuda"]:
        names = {n for n in names if n.split(".")[0] not in CUDA}
    return names


def test_every_name_of_the_module_is_in_the_stub():
    missing = _module_names() - _stub_names()
    assert not missing, f"not in pycharrnn/_core.pyi: {sorted(missing)}"


def test_the_stub_names_nothing_the_module_lacks():
    extra = _stub_names() - _module_names()
    assert not extra, f"in pycharrnn/_core.pyi but not in the module: {sorted(extra)}"


def test_the_cuda_functions_are_all_or_none():
    present = CUDA & set(vars(_core))
    assert present == (CUDA if _core.build_info()["cuda"] else set())


def _split_top(text):
    """text split at the commas outside brackets."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return parts + ([cur.strip()] if cur.strip() else [])


def _runtime_signature(obj, name):
    """[(argument, keyword-only, default or None)] from pybind11's docstring
    signature `name(a: T, *, b: T = 1) -> R` (self left out)."""
    first = (obj.__doc__ or "").split("\n", 1)[0]
    short = name.rsplit(".", 1)[-1]
    assert first.startswith(short + "("), f"{name}: no signature in {first!r}"
    depth, end = 0, None
    for i, ch in enumerate(first[len(short):], len(short)):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0:
            end = i
            break
    out, kw_only = [], False
    for part in _split_top(first[len(short) + 1:end]):
        if part == "*":
            kw_only = True
            continue
        arg, _, default = part.partition(" = ")
        arg = arg.split(":", 1)[0].strip()
        if arg != "self":
            out.append((arg, kw_only, ast.literal_eval(default) if default else None))
    return out


def _stub_signature(fn):
    a = fn.args
    pos = [x.arg for x in a.posonlyargs + a.args]
    defaults = [None] * (len(pos) - len(a.defaults)) + [ast.literal_eval(d) for d in a.defaults]
    out = [(n, False, d) for n, d in zip(pos, defaults) if n != "self"]
    out += [(x.arg, True, None if d is None else ast.literal_eval(d))
            for x, d in zip(a.kwonlyargs, a.kw_defaults)]
    return out


def _runtime(qualname):
    obj = _core
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


STUB_FUNCTIONS = sorted(_functions(_top_level(_stub())).items())


@pytest.mark.parametrize("name,fn", STUB_FUNCTIONS, ids=[n for n, _ in STUB_FUNCTIONS])
def test_each_signature_is_the_modules(name, fn):
    if name.split(".")[0] in CUDA and not hasattr(_core, name.split(".")[0]):
        pytest.skip("not a CUDA build")
    obj = _runtime(name)
    if isinstance(obj, property):
        assert any(isinstance(d, ast.Name) and d.id == "property" for d in fn.decorator_list), \
            f"{name} is a property in the module"
        return
    assert _stub_signature(fn) == _runtime_signature(obj, name)


def test_the_stub_ships_with_the_package():
    assert STUB.is_file()
    assert STUB.with_name("py.typed").is_file()
