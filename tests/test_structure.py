"""The shape of the Python layer: no module of the package imports another
that imports it back (directly or through others), counting the imports
inside functions too."""

import ast
from pathlib import Path

import pycharrnn as pc

PKG = Path(pc.__file__).parent


def _imports(path: Path, modules: set) -> set:
    """The package modules ``path`` imports (anywhere in the file)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 or (node.module or "").startswith("pycharrnn"):
                base = node.module or ""
                base = base[len("pycharrnn."):] if base.startswith("pycharrnn.") else \
                    ("" if base == "pycharrnn" else base)
                if base:
                    out.add(base.split(".")[0])
                else:  # from . import x, y
                    out.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "pycharrnn":
                    out.add("__init__")
                elif a.name.startswith("pycharrnn."):
                    out.add(a.name.split(".")[1])
    return out & modules


def test_no_import_cycles():
    modules = {p.stem for p in PKG.glob("*.py")}
    graph = {m: _imports(PKG / f"{m}.py", modules) - {m} for m in modules}
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
