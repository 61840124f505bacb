"""The shape of the Python layer: no module of the package imports another
that imports it back (directly or through others, counting the imports
inside functions too); only the backends touch the compiled core; no module
over 500 lines and no function over 80."""

import ast
import re
from pathlib import Path

import pycharrnn as pc

PKG = Path(pc.__file__).parent


def _modules() -> dict:
    """{dotted name inside the package ("cli" for cli/__init__.py): path}."""
    out = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(PKG).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1] or ["__init__"]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: set) -> set:
    """The package modules ``path`` (module ``name``) imports, anywhere in the file."""
    package = name.split(".")[:-1] if path.name != "__init__.py" else \
        ([] if name == "__init__" else name.split("."))
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = base + (node.module.split(".") if node.module else [])
            elif (node.module or "").startswith("pycharrnn"):
                target = node.module.split(".")[1:]
            else:
                continue
            stem = ".".join(target) or "__init__"
            subs = [".".join(target + [a.name]) for a in node.names if a.name != "_core"]
            out.update(x for x in subs if x in modules)  # from . import x
            if any(x not in modules for x in subs):  # names of the module itself
                out.add(stem)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "pycharrnn":
                    out.add("__init__")
                elif a.name.startswith("pycharrnn."):
                    out.add(a.name.split(".", 1)[1])
    return out & modules


def test_no_import_cycles():
    mods = _modules()
    modules = set(mods)
    graph = {m: _imports(m, p, modules) - {m} for m, p in mods.items()}
    assert graph["rundir"] and graph["cli"]  # the parser sees imports at all
    state, cycle = {}, []

    def visit(m, path):
        state[m] = "open"
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                cycle.append(path[path.index(n):] + [n] if n in path else [m, n])
            elif n not in state:
                visit(n, path + [n])
        state[m] = "done"

    for m in sorted(modules):
        if m not in state:
            visit(m, [m])
    assert not cycle, " ; ".join(" -> ".join(c) for c in cycle)


def test_only_the_backend_touches_the_compiled_core():
    touching = []
    for name, path in _modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Name) and node.id == "_core") or \
                    (isinstance(node, ast.Attribute) and node.attr == "_core") or \
                    (isinstance(node, ast.alias) and node.name.split(".")[-1] == "_core"):
                touching.append(name)
                break
    assert sorted(touching) == ["backend", "backend_cuda"], touching
    # and only devices.make_backend builds a backend (for the model, which
    # alone calls it); the CUDA backend's CPU copy for the loops aside
    builders = [name for name, path in _modules().items()
                if not name.startswith("backend") and
                re.search(r"\b(CPU|CUDA)Backend\(", path.read_text(encoding="utf-8"))]
    assert builders == ["devices"], builders
    callers = [name for name, path in _modules().items()
               if name != "devices" and "make_backend(" in path.read_text(encoding="utf-8")]
    assert callers == ["model"], callers


def test_modules_and_functions_stay_small():
    long_modules, long_functions = [], []
    for name, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 500:
            long_modules.append((name, text.count("\n")))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long_functions.append((f"{name}.{node.name}", n))
    assert not long_modules and not long_functions, (long_modules, long_functions)
