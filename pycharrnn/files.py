"""Reading a training or evaluation text from a file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

__all__ = ["read_text", "NotTextError"]

#: The byte-order mark some editors put at the start of a UTF-8 file.
BOM = "\ufeff"


class NotTextError(ValueError):
    """A file is not UTF-8 text."""


def read_text(path: Union[str, "os.PathLike[str]"]) -> str:
    """The text of a UTF-8 file as the models read it: line ends CRLF and CR
    become LF, and a leading byte-order mark (U+FEFF) is dropped.

    Raises :class:`NotTextError` naming the file, the first byte that is not
    UTF-8 and its offset; FileNotFoundError (and other OSErrors) as ``open``.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        bad = data[e.start:e.end]
        raise NotTextError(
            f"{path} is not UTF-8 text: byte 0x{bad[0]:02X} at offset {e.start:,} "
            f"({e.reason}); save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
    del data
    if text.startswith(BOM):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text
