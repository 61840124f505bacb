"""The README cannot rot: every Python block in README.md runs (in order, in
one namespace, in a scratch directory whose input.txt is a small text), and
where the README shows what a block prints (a ```text block after an
``<!-- output -->`` line) the printed text matches it (``...`` stands for
anything, as in doctest)."""

from __future__ import annotations

import contextlib
import doctest
import io
import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"```python\n(.*?)```(\s*<!-- output -->\s*```text\n(.*?)```)?", re.S)

# A small text in the shape of a play (speaker lines, verse, punctuation).
LINES = ["ROMEO:", "But, soft! what light through yonder window breaks?",
         "It is the east, and Juliet is the sun.", "", "JULIET:",
         "O Romeo, Romeo! wherefore art thou Romeo?",
         "Deny thy father and refuse thy name;", "",
         "MERCUTIO:", "Nay, gentle Romeo, we must have you dance.", ""]


def _text(n: int = 60_000) -> str:
    import numpy as np

    rng = np.random.default_rng(0)
    out, size = [], 0
    while size < n:
        line = LINES[int(rng.integers(len(LINES)))]
        out.append(line + "\n")
        size += len(line) + 1
    return "".join(out)


def blocks():
    return [(m.group(1), m.group(3)) for m in BLOCK.finditer(README.read_text("utf-8"))]


def test_the_readme_has_python_blocks_with_outputs():
    found = blocks()
    assert len(found) >= 3 and sum(out is not None for _, out in found) >= 2


def test_every_python_block_runs_and_prints_what_the_readme_says(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")  # the blocks draw curves.png
    monkeypatch.chdir(tmp_path)
    (tmp_path / "input.txt").write_text(_text(), encoding="utf-8")
    namespace = {"__name__": "__readme__"}
    checker = doctest.OutputChecker()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    for i, (code, shown) in enumerate(blocks()):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)
        if shown is not None:
            got = out.getvalue()
            assert checker.check_output(shown, got, flags), \
                f"block {i + 1} printed:\n{got}\nthe README says:\n{shown}"
    assert os.path.isdir(tmp_path / "runs")
