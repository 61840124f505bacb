"""Exceptions raised by pycharrnn."""


class PyCharRNNError(Exception):
    """Base class of pycharrnn's own errors."""


class CheckpointError(PyCharRNNError, ValueError):
    """A file is not a valid pycharrnn checkpoint (wrong, truncated, foreign or too new)."""
