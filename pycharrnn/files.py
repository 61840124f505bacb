"""Files on disk: reading a text as the models read it, and writing any file
so that it is never seen half written (a temporary file beside it, flushed to
disk, renamed over it), and removing the temporaries a killed write left."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, List, Union

__all__ = ["read_text", "NotTextError", "atomic_write", "remove_stale_temporaries"]

PathLike = Union[str, "os.PathLike[str]"]

#: The byte-order mark some editors put at the start of a UTF-8 file.
BOM = "\ufeff"


class NotTextError(ValueError):
    """A file is not UTF-8 text."""


def read_text(path: PathLike) -> str:
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


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: PathLike, write) -> None:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, flush it to
    disk and rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; use the usual mode
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def remove_stale_temporaries(directory: PathLike, names: Iterable[str],
                             older_than: float) -> List[Path]:
    """Delete the temporary files that :func:`atomic_write` left for ``names``
    in ``directory`` when its process was killed mid-write, if last modified
    before ``older_than`` (a time.time() value), so that a temporary file
    another process is writing now is left alone. Returns what was removed."""
    removed = []
    d = Path(directory)
    for name in names:
        for tmp in d.glob(f".{name}.*.tmp"):
            try:
                if tmp.is_file() and tmp.stat().st_mtime < older_than:
                    tmp.unlink()
                    removed.append(tmp)
            except OSError:
                pass
    return removed
