"""The ``pycharrnn`` command (also ``python -m pycharrnn``): train, sample,
eval, info, plot, report and bench. A thin mapping of flags to the library:
parsing and messages here, one module per group of commands
(:mod:`.train`; :mod:`.sample`; :mod:`.inspect` for eval, info, plot, report
and bench), every decision in the library."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Callable, Dict, List, Optional

from . import inspect, sample, train
from .args import PREFIX, Parser, describe, flags_named

__all__ = ["main", "entry", "parser"]


def parser() -> argparse.ArgumentParser:
    """The command's parser, every subcommand on it."""
    from .. import __version__

    p = Parser(prog="pycharrnn", description="Character-level RNN language models.")
    p.add_argument("--version", action="version", version=f"pycharrnn {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    train.add(sub)
    sample.add(sub)
    inspect.add(sub)
    return p


#: What a signal stopped, by command ("": the others, which write files).
STOPPED = {
    "train": "files already written are whole (a checkpoint being written was abandoned, "
             "the previous one kept)",
    "sample": "sampling stopped (it writes no file)",
    "eval": "the evaluation stopped (it writes no file)",
    "info": "nothing was written",
    "": "files already written are whole (a file being written was abandoned)",
}


def _commands() -> Dict[str, Callable[[argparse.Namespace], int]]:
    """Each subcommand's function, looked up when it runs."""
    return {"train": train.run, "sample": sample.run, **inspect.COMMANDS}


def _command(name: str) -> argparse.ArgumentParser:
    """A subcommand's own parser."""
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _warning(command: argparse.ArgumentParser):
    """A warnings.showwarning that prints the library's warnings as the
    command's own one-line ones, parameters named as flags."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"pycharrnn: warning: {flags_named(str(message), command)}",
              file=file or sys.stderr)
    return show


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line ``argv`` (default: sys.argv[1:]); returns the
    exit status: 0, 1 for an error (printed on one line), 2 for a usage error,
    128 + the signal's number when SIGINT or SIGTERM stopped it, 141 (as
    SIGPIPE) when the reader of its output went away."""
    import warnings

    from ..errors import PyCharRNNError
    from ..signals import SIGNALLED, Interrupted, exit_code, interrupted_by, raise_interrupt

    args = parser().parse_args(argv)
    SIGNALLED.clear()
    shown = warnings.showwarning
    warnings.showwarning = _warning(_command(args.command))
    # SIGTERM as Ctrl-C: a clean exit, 143. Ctrl-C's own KeyboardInterrupt is
    # replaced too, so that entry() knows of it however it surfaces.
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s, h in old.items():
        if h is not signal.SIG_IGN and (s != signal.SIGINT or h is signal.default_int_handler):
            signal.signal(s, raise_interrupt)
    try:
        code = _commands()[args.command](args)
        if SIGNALLED and not code:  # a signal whose exception something swallowed
            raise Interrupted(SIGNALLED[-1])
        return code
    except BaseException as e:  # noqa: BLE001 - sorted here
        if isinstance(e, BrokenPipeError):  # its reader went away (`| head`): nothing to say
            _quiet_stdout()
            return 128 + signal.SIGPIPE
        signum = None if isinstance(e, SystemExit) else interrupted_by(e)
        if signum is None:
            if not isinstance(e, (PyCharRNNError, ValueError, TypeError, OSError,
                                  ImportError, MemoryError)):
                raise
            print(PREFIX + flags_named(describe(e), _command(args.command)), file=sys.stderr)
            return 1
        print(f"\ninterrupted ({signal.Signals(signum).name}); "
              f"{STOPPED.get(args.command, STOPPED[''])}", file=sys.stderr)
        return exit_code(signum)
    finally:
        warnings.showwarning = shown
        for s, h in old.items():
            signal.signal(s, h)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush into
    a closed pipe does not print another error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor (a test's captured stdout)
        pass


def entry() -> None:
    """The ``pycharrnn`` command (and ``python -m pycharrnn``): :func:`main`,
    then exit with its status.

    After a signal that abandoned work (a second Ctrl-C or SIGTERM, or one
    before training started), the process ends without the interpreter's
    teardown: the exception may have cut an extension module's import short
    (matplotlib's ft2font, drawing curves.png), and tearing such a module
    down can abort the process ("Fatal Python error: PyThreadState_Get").
    Every file pycharrnn writes is closed by then; stdout and stderr are
    flushed first."""
    from ..signals import SIGNALLED

    code = main()
    if not SIGNALLED:
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed pipe: nothing more to say
            pass
    os._exit(code)
