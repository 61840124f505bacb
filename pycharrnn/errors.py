"""Exceptions raised by pycharrnn, and the wording of counts in its messages."""


class PyCharRNNError(Exception):
    """Base class of pycharrnn's own errors."""


class CheckpointError(PyCharRNNError, ValueError):
    """A file is not a valid pycharrnn checkpoint (wrong, truncated, foreign or too new)."""


def count(n: int, noun: str) -> str:
    """'1 character', '2 characters', '1,234 characters' (a regular plural)."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"
