"""The README and the docs cannot rot: every Python block in README.md runs
(in order, in one namespace, in a scratch directory whose input.txt is a
small text), and so does every Python block of each page in docs/ (each
page in its own namespace and scratch directory); where a page shows what a
block prints (a ```text block after an ``<!-- output -->`` line) the printed
text matches it (``...`` stands for anything, as in doctest)."""

from __future__ import annotations

import contextlib
import doctest
import io
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
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


def blocks(page: Path = README):
    return [(m.group(1), m.group(3)) for m in BLOCK.finditer(page.read_text("utf-8"))]


def run_blocks(page: Path, directory: Path, monkeypatch) -> None:
    """Run the page's Python blocks in order in one namespace, in
    ``directory`` (given an input.txt), checking the outputs shown."""
    monkeypatch.chdir(directory)
    (directory / "input.txt").write_text(_text(), encoding="utf-8")
    namespace = {"__name__": "__readme__"}
    checker = doctest.OutputChecker()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    name = page.relative_to(ROOT).as_posix()
    for i, (code, shown) in enumerate(blocks(page)):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"{name} python block {i + 1}", "exec"), namespace)
        if shown is not None:
            got = out.getvalue()
            assert checker.check_output(shown, got, flags), \
                f"{name} block {i + 1} printed:\n{got}\nthe page says:\n{shown}"


def test_the_readme_has_python_blocks_with_outputs():
    found = blocks()
    assert len(found) >= 3 and sum(out is not None for _, out in found) >= 2


def test_every_python_block_runs_and_prints_what_the_readme_says(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")  # the blocks draw curves.png
    run_blocks(README, tmp_path, monkeypatch)
    assert os.path.isdir(tmp_path / "runs")


def test_the_docs_exist():
    assert {p.name for p in DOCS} >= {"python.md", "cli.md", "inspect.md"}


@pytest.mark.parametrize("page", [p for p in DOCS if blocks(p)], ids=lambda p: p.name)
def test_every_python_block_of_the_docs_runs_and_prints_what_it_says(page, tmp_path,
                                                                   monkeypatch):
    pytest.importorskip("matplotlib")  # the blocks draw curves.png
    run_blocks(page, tmp_path, monkeypatch)
