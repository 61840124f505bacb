"""``python -m pycharrnn``: the command line."""

from .cli import entry

entry()
