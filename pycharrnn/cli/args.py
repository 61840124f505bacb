"""What the command's parsers share: number types that name their range,
options that are fields of the library's configs (their defaults shown from
there), and help that shows every default."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any, Callable, Dict, NoReturn, Optional

from ..checks import range_problem
from ..config import ModelConfig, TrainConfig, defaults

__all__ = ["Parser", "Help", "number", "rate", "config_option", "DEFAULTS", "flag_of",
           "flags_named", "fail", "describe", "PREFIX"]

#: What every message of the command begins with.
PREFIX = "pycharrnn: error: "

#: Every config field's default (ModelConfig's and TrainConfig's).
DEFAULTS = {**defaults(ModelConfig), **defaults(TrainConfig)}


def describe(e: BaseException) -> str:
    """An error as one line: a file's error as "FILE: what" (not "[Errno 2]
    No such file or directory: 'FILE'"), others as their message (or their
    kind, when they have none)."""
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror[:1].lower()}{e.strerror[1:]}"
    text = " ".join(str(e).split())
    return text or type(e).__name__


def fail(message: str, code: int = 2) -> int:
    """Print ``message`` as the command's one-line error; returns ``code``."""
    print(PREFIX + message, file=sys.stderr)
    return code


class Parser(argparse.ArgumentParser):
    """A parser whose errors are one line, with the command's one prefix and
    where to find the usage (argparse prints the whole usage block first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PREFIX}{message} (see: {self.prog} --help)\n")


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" after every option that has a default (not for
    switches, nor where the help already says its default)."""

    def _get_help_string(self, action):
        h = action.help or ""
        d = action.default
        if d is None or d is False or d is argparse.SUPPRESS or "(default" in h:
            return h
        return super()._get_help_string(action)


def number(kind: type, lo: Optional[float] = None, hi: Optional[float] = None,
           lo_open: bool = False, hi_open: bool = False) -> Callable[[str], Any]:
    """An argparse type: ``kind`` (int or float) within [lo, hi] (an open end
    with lo_open / hi_open); argparse names the flag in the error."""
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        problem = range_problem(v, lo, hi, lo_open, hi_open)
        if problem:
            raise argparse.ArgumentTypeError(f"{problem}, got {v}")
        return v
    parse.__name__ = kind.__name__  # argparse's "invalid int value" wording
    return parse


#: A probability of dropping: [0, 1).
rate = number(float, 0, 1, hi_open=True)


def config_option(group: Any, flag: str, field: str, help: str, default_text: str = "",
                  **kw: Any) -> None:
    """An option that sets the config field ``field``: absent from the
    parsed arguments unless given (so that recipes and resumed runs can tell
    what the user set), its help ending with the field's default from
    :mod:`pycharrnn.config` (``default_text`` for a default that needs words)."""
    default = DEFAULTS[field]
    shown = default_text or ("off" if default is None else str(default))
    group.add_argument(flag, dest=field, default=argparse.SUPPRESS,
                       help=f"{help} (default: {shown})" if help else f"(default: {shown})",
                       **kw)


def _flags(command: argparse.ArgumentParser) -> Dict[str, str]:
    """{parameter name: flag} of a subcommand's long options."""
    out = {}
    for a in command._actions:
        longs = [s for s in a.option_strings if s.startswith("--")]
        if longs:
            out[a.dest] = longs[0]
    return out


def flag_of(name: str, command: argparse.ArgumentParser) -> str:
    """The flag of a subcommand's parser that sets the library's parameter ``name``."""
    for a in command._actions:
        if a.dest == name and a.option_strings:
            return a.option_strings[0]
    return name


def flags_named(message: str, command: argparse.ArgumentParser) -> str:
    """A library error message with its parameter names as the subcommand's
    flags: ``name=value`` as ``--flag value`` for any option, and the bare
    names that have an underscore (and temperature), which no other word of
    a message is."""
    every = _flags(command)
    message = re.sub(r"\b([a-z_]+)=(?=\S)",
                     lambda m: every[m.group(1)] + " " if m.group(1) in every else m.group(0),
                     message)
    flags = {k: v for k, v in every.items() if "_" in k or k == "temperature"}
    if not flags:
        return message
    return re.sub(r"(?<!-)\b(" + "|".join(map(re.escape, flags)) + r")\b",
                  lambda m: flags[m.group(1)], message)
