"""Exit statuses shared by every command of the project, and its argument parser.

======  =================================================================================
status  meaning
======  =================================================================================
0       success
1       internal error (a bug, or an outside tool such as pip failed: see the message)
2       some inputs could not be used; the others were processed (``runtime.classify``)
3       a check failed: parity found a mismatch, or the export gate refused an artifact
4       cannot start: the bundle, model directory, corpus or engine is missing, malformed
        or unusable; nothing was done
64      usage error: the command line is wrong
129     stopped by SIGHUP (128 + 1), as by Ctrl-C
130     interrupted (Ctrl-C); nothing half-written is left behind
143     stopped by SIGTERM (128 + 15: ``timeout``, systemd, ``docker stop``), as by Ctrl-C
======  =================================================================================
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

OK, INTERNAL, INPUT, CHECK_FAILED, UNUSABLE, USAGE, INTERRUPTED = 0, 1, 2, 3, 4, 64, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.print_usage()
        self.exit(USAGE, f"{self.prog}: error: {message}\n")


def parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """An argument parser whose description is ``doc``'s first paragraph and whose epilog is
    the rest; a usage error exits with ``USAGE``. ``doc`` is None under ``python -OO``
    (docstrings are stripped): the help then has no description."""
    head, _, rest = (doc or "").strip().partition("\n\n")
    return _Parser(prog=prog, description=head or None, epilog=rest or None,
                   formatter_class=argparse.RawDescriptionHelpFormatter)


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the command is, as Ctrl-C raises ``KeyboardInterrupt``:
    every ``finally`` and cleanup runs (workers stopped, no half-written output left)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def status_of(interrupt: KeyboardInterrupt) -> int:
    """The exit status of a command stopped by ``interrupt``: 128 + the signal's number for
    SIGTERM (143) and SIGHUP (129), ``INTERRUPTED`` (130) for Ctrl-C."""
    return 128 + interrupt.signum if isinstance(interrupt, Stopped) else INTERRUPTED


def interrupt_name(interrupt: KeyboardInterrupt) -> str:
    """How the command's one line names what stopped it."""
    return f"stopped by {interrupt.name}" if isinstance(interrupt, Stopped) else "interrupted"


@contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP raise ``Stopped`` (a ``KeyboardInterrupt``)
    in the main thread; the previous handlers come back after it. A signal that is ignored
    (``nohup`` ignores SIGHUP) or already handled by the program stays so. For a command's
    ``main`` only: a library must not set process-wide handlers. Outside the main thread
    nothing changes (Python lets only the main thread set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Stopped(signum)

    previous = {}
    try:
        for signum in STOP_SIGNALS:
            if signal.getsignal(signum) is signal.SIG_DFL:
                previous[signum] = signal.signal(signum, stop)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
