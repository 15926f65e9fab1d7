"""Worker processes that score items for the command: each is started with ``spawn`` (no
engine state is inherited), with Ctrl-C ignored and one BLAS thread, builds its scorer once,
says it is ready, answers the items sent to it, in order, and leaves at once when told to stop.

The command scores items too (``runtime.cli.bulk``), so between two items of its own it must see,
without waiting, which workers are ready and have room: it reads their answers straight from
each worker's pipe (``concurrent.futures.ProcessPoolExecutor`` cannot tell a loading worker
from a busy one). Items are written by one thread of the command into pipes widened where the
system allows (Linux) to hold a whole block, so a worker reads its next block at once rather
than in pipe-sized pieces. Memory stays bounded: at most
``in_flight`` items per worker are sent and not yet answered. A worker that does not answer
(stopped with SIGSTOP, or stuck) is named in a note after ``NOTE_SECONDS`` and fails the run
after the pool's ``timeout``.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.reduction import ForkingPickler
from typing import Any

from runtime.engines.base import usable_cpus as available_cores  # noqa: F401 (the pools' name for it)
from runtime.errors import Error

PIPE_BYTES = 1 << 20  # pipe capacity asked for: a block of lines (runtime.cli.records.line_blocks) at once; Linux's limit for users
# A worker's environment besides the command's (a variable the user has set is kept): the runtime
# never calls BLAS, and numpy's OpenBLAS otherwise starts a thread per core, which takes CPU from
# the core the command scores on while the worker imports (docs/notes/bulk.md).
WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1"}
NOTE_SECONDS = 30.0  # a worker that has not answered for this long (or half the timeout) is named on stderr


def note_after(timeout: float | None) -> float:
    """Seconds without an answer after which the user is told which worker is late."""
    return NOTE_SECONDS if timeout is None else min(NOTE_SECONDS, timeout / 2)


class WorkerError(Error, RuntimeError):
    """A worker process died or failed."""


class Ticket:
    """An item's answer: ready once it has come back (at once for an item scored in the command)."""

    __slots__ = ("ready", "value", "worker")

    def __init__(self, worker: _Worker | None = None, value: Any = None):
        self.worker, self.value, self.ready = worker, value, worker is None


class _Worker:
    def __init__(self, process, items, answers):
        self.process, self.items, self.answers = process, items, answers
        self.ready = False  # its scorer is built
        self.tickets: deque[Ticket] = deque()  # sent, not yet answered, in order


class Pool:
    """Workers the command shares items with (``runtime.cli.bulk._shared``): worker processes
    here, Ray actors in ``runtime.cli.ray_workers``. Each member has ``ready`` (its scorer is
    built) and ``tickets`` (items sent and not yet answered); at most ``in_flight`` each.
    ``wait`` fails with ``WorkerError`` once a worker has not answered for ``timeout`` seconds
    (None: no limit), and calls ``note`` with a line naming it after ``note_after(timeout)``."""

    def __init__(self, in_flight: int, timeout: float | None = None, note: Callable[[str], None] | None = None):
        self.in_flight = in_flight
        self.timeout = timeout
        self._note = note
        self._members: list = []

    def _late(self, who: str, waited: float) -> None:
        """Tell the user that ``who`` has not answered for ``waited`` seconds."""
        if self._note is not None:
            limit = f"; the run fails if it has not answered within {self.timeout:g} s" if self.timeout else ""
            self._note(f"note: {who} has not answered for {waited:g} s (stopped or stuck?){limit}")

    def _timed_out(self, who: str) -> WorkerError:
        return WorkerError(f"{who} has not answered for {self.timeout:g} s (stopped or stuck?)")

    def room(self) -> bool:
        """Whether a ready worker has fewer than ``in_flight`` items unanswered (as of the last ``collect``)."""
        return any(m.ready and len(m.tickets) < self.in_flight for m in self._members)

    def capacity(self) -> int:
        """How many items may be in flight: ``in_flight`` for each worker (none before they are started)."""
        return self.in_flight * len(self._members)

    def _least_busy(self):
        """The ready worker with the fewest items unanswered."""
        return min((m for m in self._members if m.ready), key=lambda m: len(m.tickets))

    def collect(self) -> None:
        """Take every answer (and every worker's readiness) that has come, without waiting."""
        raise NotImplementedError

    def submit(self, item: Any) -> Ticket:
        """Send ``item`` to the least busy ready worker; its ticket."""
        raise NotImplementedError

    def wait(self, ticket: Ticket) -> Any:
        """The ticket's answer, waiting for it if need be; ``WorkerError`` if its worker died or failed."""
        raise NotImplementedError

    def close(self, kill: bool = False) -> None:
        """Stop the workers (at once with ``kill``)."""
        raise NotImplementedError


class WorkerPool(Pool):
    """``count`` worker processes, each running the scorer ``start()`` builds (``start`` must
    be picklable: it is called in the worker). Items go only to ready workers, so a short
    input is done by the command before a worker has even loaded."""

    def __init__(self, start: Callable[[], Callable[[Any], Any]], count: int, in_flight: int = 2,
                 timeout: float | None = None, note: Callable[[str], None] | None = None):
        super().__init__(in_flight, timeout, note)
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()  # (worker, item) for the writer thread
        self._writer: threading.Thread | None = None  # started with the first item: none while the command loads
        try:
            self._start_all(start, count)
        except OSError as e:  # too many open files or processes, no memory: the real cause, in one line
            for worker in self._members:
                if worker.process.pid is not None:
                    worker.process.kill()
                    worker.process.join()
                worker.items.close()
                worker.answers.close()
            raise WorkerError(f"cannot start {count} worker process{'es' if count > 1 else ''}: "
                              f"{e.strerror or e}") from None

    def _start_all(self, start: Callable[[], Callable[[Any], Any]], count: int) -> None:
        context = multiprocessing.get_context("spawn")
        for _ in range(count):
            items_in, items_out = context.Pipe(duplex=False)
            try:
                answers_in, answers_out = context.Pipe(duplex=False)
            except OSError:
                items_in.close()
                items_out.close()
                raise
            for end in (items_out, answers_out):
                _widen(end)
            process = context.Process(target=_worker_main, args=(items_in, answers_out, start), daemon=True)
            self._members.append(_Worker(process, items_out, answers_in))
            try:
                with _sigint_ignored(), _environment(WORKER_ENV):
                    process.start()
            finally:
                items_in.close()
                answers_out.close()

    def collect(self) -> None:
        """Take every message the workers have sent, without waiting."""
        for worker in self._members:
            while worker.answers.poll():
                self._receive(worker)

    def submit(self, item: Any) -> Ticket:
        """Send ``item`` to the ready worker with the fewest unanswered; its ticket."""
        data = ForkingPickler.dumps(item)  # here, so that an item that cannot be sent fails here
        worker = self._least_busy()
        ticket = Ticket(worker)
        worker.tickets.append(ticket)
        if self._writer is None:
            self._writer = threading.Thread(target=_write_all, args=(self._outbox,), daemon=True)
            self._writer.start()
        self._outbox.put((worker, data))
        return ticket

    def wait(self, ticket: Ticket) -> Any:
        """The ticket's answer, waiting for it if need be; ``WorkerError`` if its worker died,
        failed or has not answered within the pool's timeout."""
        while not ticket.ready:
            self._await(ticket.worker)
            self._receive(ticket.worker)
        return ticket.value

    def _await(self, worker: _Worker) -> None:
        """Wait until ``worker`` has sent something (or died), with a note and the timeout."""
        first = note_after(self.timeout)
        if worker.answers.poll(first):
            return
        who = f"worker process {worker.process.pid}"
        self._late(who, first)
        if self.timeout is None:
            return  # wait as long as it takes
        if not worker.answers.poll(max(self.timeout - first, 0)):
            raise self._timed_out(who)

    def _receive(self, worker: _Worker) -> None:
        try:
            kind, value = worker.answers.recv()
        except (EOFError, OSError):
            raise WorkerError(f"a worker process died ({_death(worker.process)})") from None
        if kind == "failed":
            raise WorkerError(f"a worker process failed: {value}")
        if kind == "ready":
            worker.ready = True
            return
        ticket = worker.tickets.popleft()
        ticket.value, ticket.ready = value, True

    def close(self, kill: bool = False) -> None:
        """Stop the workers: those still loading at once, the others once they have answered
        what they hold; every one at once with ``kill``."""
        for worker in self._members:
            if kill or not worker.ready:
                worker.process.kill()  # SIGKILL ends a stopped (SIGSTOP) process too
            else:
                self._outbox.put((worker, _END))
        self._outbox.put(None)
        if self._writer is None:
            _write_all(self._outbox)
        else:
            self._writer.join(timeout=10)
        for worker in self._members:
            worker.process.join(timeout=10)
            if worker.process.exitcode is None:
                worker.process.kill()
                worker.process.join()
            worker.items.close()
            worker.answers.close()


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore Ctrl-C while a worker is started: a new Python that inherits an ignored SIGINT
    keeps ignoring it, so a Ctrl-C at the terminal (which reaches every process of the group)
    stops the command, which stops its workers, and no worker prints a traceback, even one
    still importing. Only the main thread may set signal handlers; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def _environment(extra: dict[str, str]) -> Iterator[None]:
    """``extra``'s variables that are not set, set while a worker is started (a spawned process
    inherits the environment when it is started; numpy reads these when the worker imports it)."""
    added = [key for key in extra if key not in os.environ]
    for key in added:
        os.environ[key] = extra[key]
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _widen(end) -> None:
    """Ask for a pipe of ``PIPE_BYTES`` (Linux); elsewhere, or if refused, the pipe stays as it is."""
    try:
        import fcntl

        fcntl.fcntl(end.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass


def _death(process) -> str:
    process.join(timeout=5)
    code = process.exitcode
    if code is None:
        return "it closed its pipe"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


_END = ForkingPickler.dumps(None)  # tells a worker to stop


def _write_all(outbox: queue.SimpleQueue) -> None:
    """The command's writer: pickled items to their workers, in order, until a None."""
    while (job := outbox.get()) is not None:
        worker, data = job
        try:
            worker.items.send_bytes(data)
        except OSError:
            pass  # the worker has died: its answer pipe says so to the command


def _send_all(answers, outbox: queue.SimpleQueue) -> None:
    """A worker's sender thread: pickled answers to the command while the worker scores the next item."""
    try:
        while (data := outbox.get()) is not None:
            answers.send_bytes(data)
    except OSError:
        pass  # the command has gone


def _worker_main(items, answers, start: Callable[[], Callable[[Any], Any]]) -> None:
    """A worker process's target: ``_serve``, then exit at once. Its answers are sent by then,
    and the interpreter's own finalization (about 25 ms with numpy and an engine loaded) would
    keep the command waiting in ``close``."""
    _serve(items, answers, start)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _serve(items, answers, start: Callable[[], Callable[[Any], Any]]) -> None:
    """A worker process: build the scorer, say so, then answer every item until a None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # already so if started from the main thread
    try:
        score = start()
    except Exception as e:  # noqa: BLE001 - the command reports it in one line
        answers.send(("failed", f"cannot load the model ({type(e).__name__}: {e})"))
        return
    answers.send(("ready", None))
    outbox: queue.SimpleQueue = queue.SimpleQueue()
    sender = threading.Thread(target=_send_all, args=(answers, outbox), daemon=True)
    sender.start()
    try:
        while (item := items.recv()) is not None:
            outbox.put(ForkingPickler.dumps(("done", score(item))))
    except EOFError:
        pass  # the command has gone
    except Exception as e:  # noqa: BLE001 - the command reports it in one line
        outbox.put(ForkingPickler.dumps(("failed", f"{type(e).__name__}: {e}")))
    outbox.put(None)
    sender.join()
