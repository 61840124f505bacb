"""Ctrl-C and SIGTERM during training: the first stops the run after its
step (it then validates and saves, as at any end) and raises
:class:`Interrupted` once that is done; a second abandons whatever is under
way at once (a checkpoint being written is dropped, the one before it kept).

:meth:`pycharrnn.Trainer.run` does this by itself in the main thread
(``Trainer(stop_on_signals=False)`` turns it off). A signal's exception may
surface anywhere, even inside an extension module's import (which turns it
into an ImportError) or a call that swallows exceptions; :func:`interrupted_by`
finds it in an exception's chain, and :data:`SIGNALLED` remembers every
signal that raised, whatever became of its exception.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any, List, Optional

__all__ = ["Interrupted", "StopOnSignals", "interrupted_by", "raise_interrupt",
           "exit_code", "SIGNALLED", "check_signalled"]

#: The signals whose handler raised :class:`Interrupted` in this process (see
#: :func:`raise_interrupt`).
SIGNALLED: List[int] = []


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal. ``clean`` is True when it stopped after a
    step and ended as any run ends (validated; with a run directory, saved):
    the first signal; False when the work under way was abandoned (a second
    signal, or one outside a run). ``step`` is the step the run had reached
    (None outside a run)."""

    def __init__(self, signum: int, step: Optional[int] = None, clean: bool = False):
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name} after step {step}" if clean else
                         f"interrupted by {name}")
        self.signum, self.step, self.clean = int(signum), step, clean


def raise_interrupt(signum: int, frame: Any = None) -> None:
    """A signal handler: abandon whatever is under way (raise
    :class:`Interrupted`), and remember it in :data:`SIGNALLED`."""
    SIGNALLED.append(int(signum))
    raise Interrupted(signum)


def check_signalled() -> None:
    """Raise :class:`Interrupted` for a signal whose exception something
    swallowed (one in :data:`SIGNALLED`)."""
    if SIGNALLED:
        raise Interrupted(SIGNALLED[-1])


def interrupted_by(e: Optional[BaseException]) -> Optional[int]:
    """The signal of the interruption (:class:`Interrupted`; SIGINT for a
    KeyboardInterrupt) that ``e`` is or was raised from or during, if any: a
    signal that arrived inside an import, say, reaches the caller as
    ``ImportError("initialization failed")`` whose cause is the interruption."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, Interrupted):
            return e.signum
        if isinstance(e, KeyboardInterrupt):
            return int(signal.SIGINT)
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def exit_code(signum: int) -> int:
    """The shell's convention: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + int(signum)


class StopOnSignals:
    """While active (in the main thread; elsewhere it does nothing), the first
    SIGINT or SIGTERM calls ``trainer.request_stop()`` and is kept in
    :attr:`signum`; a second raises :class:`Interrupted` at once, wherever
    the run is. A signal the process was told to ignore stays ignored."""

    def __init__(self, trainer: Any, announce: bool = True) -> None:
        self.trainer, self.announce = trainer, announce
        self.signum: Optional[int] = None
        self._old: dict = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise_interrupt(signum)
        self.signum = signum
        self.trainer.request_stop()
        if self.announce:  # os.write, not print: it may interrupt a print
            os.write(2, f"\n{signal.Signals(signum).name}: stopping after this step to "
                        "validate and save (again to abandon)\n".encode())

    def __enter__(self) -> "StopOnSignals":
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handler)
                         for s in (signal.SIGINT, signal.SIGTERM)
                         if signal.getsignal(s) is not signal.SIG_IGN}
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}
