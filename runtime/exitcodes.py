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
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

OK, INTERNAL, INPUT, CHECK_FAILED, UNUSABLE, USAGE, INTERRUPTED = 0, 1, 2, 3, 4, 64, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        # one line on stderr (standard output carries results only); --help shows the usage
        self.exit(USAGE, f"{self.prog}: error: {message} (see --help)\n")


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


_active: StopRequests | None = None  # the command's, while its body runs (None in a library's caller)


def check_stop() -> None:
    """Raise the running command's stop if one was requested (nothing outside a command)."""
    if _active is not None:
        _active.check()


def note_published(path) -> None:
    """Tell the running command that ``path`` was published (a later stop says so)."""
    if _active is not None:
        _active.published.append(str(path))


@contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP wait until the block ends (main thread, POSIX; else nothing)."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, *STOP_SIGNALS})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class StopRequests:
    """Ctrl-C, SIGTERM and SIGHUP for a command's ``main`` (every ``python -m`` command).

    ``run(body, unwritten)`` calls ``body()`` with the three signals raising
    ``KeyboardInterrupt`` / ``Stopped`` in the main thread (each only if it has its default
    handler: an ignored signal stays ignored) and returns its status. A stop ends in one line
    on stderr (``interrupted; `` + ``unwritten``) and ``status_of``'s status, never a
    traceback. TensorFlow's C++ code may turn the ``KeyboardInterrupt`` into another exception
    on the way out, or report it from a finalizer as "Exception ignored" and go on: after a
    stop request, whatever ends the body is the stop, such reports are dropped, and
    ``check()`` (call it before publishing) raises it again. Handlers are restored afterwards.
    """

    def __init__(self):
        self.seen: int | None = None
        self.published: list[str] = []

    def _handler(self, signum, frame) -> None:
        if self.seen is None:
            self.seen = signum
        self.check()

    def check(self) -> None:
        """Raise the stop if one was requested (an error seen since may be its echo)."""
        if self.seen is not None:
            raise KeyboardInterrupt if self.seen == signal.SIGINT else Stopped(self.seen)

    def _unraisable(self, report) -> None:
        if self.seen is None:
            sys.__unraisablehook__(report)

    def run(self, body, unwritten: str, went_on: str | None = None) -> int:
        """``body()``'s exit status, or the status of a stop: one line naming what was not written
        (``unwritten``), what was when the stop came after publishing, or ``went_on`` (default
        ``unwritten``) when the body ended normally after a stop it did not see."""
        global _active
        previous, previous_unraisable, outer = {}, sys.unraisablehook, _active
        _active = self
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, *STOP_SIGNALS):
                handler = signal.getsignal(signum)
                if handler is signal.SIG_DFL or (signum == signal.SIGINT and handler is signal.default_int_handler):
                    previous[signum] = signal.signal(signum, self._handler)
            sys.unraisablehook = self._unraisable
        try:
            status = body()
            if self.seen is None or status in (INTERRUPTED, *(128 + s for s in STOP_SIGNALS)):
                return status  # no stop, or the body reported it in its own line
            error: BaseException | None = None  # the stop came and the body went on regardless
        except BaseException as e:
            if self.seen is None and not isinstance(e, KeyboardInterrupt):
                raise
            error = e
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            sys.unraisablehook = previous_unraisable
            _active = outer
        if self.seen is not None and self.seen != signal.SIGINT:
            stop: KeyboardInterrupt = Stopped(self.seen)
        else:
            stop = error if isinstance(error, KeyboardInterrupt) else KeyboardInterrupt()
        done = (f" after {', '.join(self.published)} was written" if self.published
                else f"; {went_on or unwritten}" if error is None else f"; {unwritten}")
        print(f"{interrupt_name(stop)}{done}", file=sys.stderr)
        return status_of(stop)
