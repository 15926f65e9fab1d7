"""Ray actors that score items for the command, with the interface of ``runtime.cli.workers.WorkerPool``.

Connecting to a cluster (or starting a local one) and starting its actors takes a second or
more; a thread of the command does it while the command scores the first items itself, and
items go only to actors that are ready. The connection is closed explicitly at the end (Ray's
own handler at interpreter exit sleeps half a second first). Ray is imported only here, and
only when asked for.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from runtime.cli.workers import Pool, Ticket, WorkerError, available_cores, note_after

LOCAL_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # Ray's own switch for a single-machine, loopback cluster
# Ray's notices that say nothing to a user of the command, by logger: it set no SIGTERM handler
# outside the main thread (``start_ray`` runs in a thread of the command, and a SIGTERM stops the
# command as it would without Ray); a local cluster uses token authentication, Ray's default
# (the README says so). Ray's other warnings are kept.
QUIET = {"ray._private.worker": "SIGTERM handler is not set",
         "ray._private.authentication.authentication_token_setup": "Token authentication is enabled for this Ray cluster"}
CONNECT_SECONDS = 60.0  # Ray retries an unreachable cluster for minutes; the command gives up after this


def cluster_name() -> str:
    """The cluster ``start_ray`` uses, as an error message names it."""
    address = os.environ.get("RAY_ADDRESS")
    return f"the Ray cluster at {address}" if address else "a local Ray cluster"


LOCAL_STARTS = 2  # tries to start a local cluster


def start_ray(workers: int) -> tuple[int, bool]:
    """Connect to the cluster ``RAY_ADDRESS`` names, else start a local one with ``workers``
    CPUs (0: all; never more than this process may use) that listens on the loopback interface
    only; the cluster's number of CPUs, and whether this call connected (else the process
    already was)."""
    local = not os.environ.get("RAY_ADDRESS")
    if local:
        for key, value in LOCAL_ONLY.items():
            os.environ.setdefault(key, value)  # read when ray is first imported
    import ray

    for name, quiet in _FILTERS.items():
        logging.getLogger(name).addFilter(quiet)  # the same filter object: added once however many runs
    connected = not ray.is_initialized()
    for attempt in range(LOCAL_STARTS if local and connected else 1):
        try:
            if connected:
                # address "local": a cluster of this command's own, even where `ray start` runs one
                ray.init(address="local" if local else None,
                         num_cpus=(min(workers, available_cores()) or None) if local else None,
                         include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                         configure_logging=False)
            return int(ray.cluster_resources().get("CPU", 1)), connected
        except (ConnectionError, RuntimeError, ValueError) as e:
            if local and connected and attempt + 1 < LOCAL_STARTS:
                # A local cluster's control store (GCS) may fail to come up on a loaded machine;
                # the cluster is this command's own, so it is shut down and started again.
                ray.shutdown()
                continue
            raise WorkerError(f"cannot start or reach {cluster_name()} ({str(e).splitlines()[0]})") from None
    raise AssertionError("unreachable")


def _not_notice(notice: str, record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(notice)


_FILTERS = {name: partial(_not_notice, notice) for name, notice in QUIET.items()}


class _Actor:
    def __init__(self, handle, ready_ref):
        self.handle, self.ready_ref, self.ready = handle, ready_ref, False
        self.tickets: list[Ticket] = []  # sent, not yet answered


class RayPool(Pool):
    """``count`` Ray actors (0: one per CPU of the cluster), each holding the scorer
    ``scorer_class(*args)``; items go only to ready actors, at most ``in_flight`` each. A
    cluster not reached within ``connect_seconds`` fails the run (``WorkerError``). There are
    never more actors than the cluster has CPUs (``note`` is told when fewer than ``count``
    are started); see ``Pool`` for ``timeout``."""

    def __init__(self, scorer_class: type, args: tuple, count: int, in_flight: int = 2,
                 connect_seconds: float = CONNECT_SECONDS, timeout: float | None = None,
                 note: Callable[[str], None] | None = None):
        super().__init__(in_flight, timeout, note)
        self._connect_seconds = connect_seconds
        self._deadline = time.monotonic() + connect_seconds
        self._connected = False
        self._failure: WorkerError | None = None
        self._started = threading.Event()
        self._closed = threading.Event()
        threading.Thread(target=self._start, args=(scorer_class, args, count), daemon=True).start()

    def _start(self, scorer_class: type, args: tuple, count: int) -> None:
        try:
            import ray

            cpus, self._connected = start_ray(count)
            if count > cpus and self._note is not None:
                self._note(f"note: {count} Ray workers asked for; {cpus} started, one per CPU of {cluster_name()}")
            actor = ray.remote(num_cpus=1)(scorer_class)
            handles = [actor.remote(*args) for _ in range(min(count, cpus) or cpus)]
            self._members = [_Actor(h, h.__ray_ready__.remote()) for h in handles]
        except WorkerError as e:
            self._failure = e
        except Exception as e:  # noqa: BLE001 - the command reports it in one line
            self._failure = WorkerError(f"cannot start Ray workers ({type(e).__name__}: {str(e).splitlines()[0]})")
        self._started.set()
        self._closed.wait()  # a local cluster's processes die with the thread that started them (PR_SET_PDEATHSIG)

    def _is_started(self, wait: bool) -> bool:
        """Whether the starter thread is done (waiting for it if ``wait``); ``WorkerError`` if
        it failed or is past its deadline."""
        left = self._deadline - time.monotonic()
        if not self._started.wait(max(left, 0) if wait else 0):
            if left > 0 and not wait:
                return False
            raise WorkerError(f"cannot reach {cluster_name()} within {self._connect_seconds:g} s")
        if self._failure is not None:
            raise self._failure
        return True

    def collect(self) -> None:
        if not self._is_started(wait=False):
            return
        import ray

        refs = {a.ready_ref: a for a in self._members if not a.ready}
        refs.update({t.value: t for a in self._members for t in a.tickets})
        if not refs:
            return
        done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0, fetch_local=True)
        for ref in done:
            self._settle(refs[ref], ref)

    def _settle(self, waiting: _Actor | Ticket, ref) -> None:
        """Take the answer of ``ref`` (an actor's readiness, or a ticket's item); the pool is started."""
        import ray

        try:
            value = self._get(ray, ref, waiting if isinstance(waiting, _Actor) else waiting.worker)
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as e:
            raise WorkerError(f"a Ray worker died ({str(e).splitlines()[0]})") from None
        except ray.exceptions.RayTaskError as e:
            raise WorkerError(f"a Ray worker failed ({str(e).strip().splitlines()[-1]})") from None
        if isinstance(waiting, _Actor):
            waiting.ready = True
            return
        waiting.worker.tickets.remove(waiting)
        waiting.value, waiting.ready = value, True

    def _get(self, ray, ref, actor: _Actor) -> Any:
        """``ray.get(ref)``, with a note naming the actor when it is late, and the pool's timeout."""
        first = note_after(self.timeout)
        try:
            return ray.get(ref, timeout=first)
        except ray.exceptions.GetTimeoutError:
            pass
        actor_id = getattr(actor.handle, "_actor_id", None)
        who = f"Ray worker {actor_id.hex()}" if actor_id is not None else "a Ray worker"
        self._late(who, first)
        try:
            return ray.get(ref, timeout=None if self.timeout is None else max(self.timeout - first, 0))
        except ray.exceptions.GetTimeoutError:
            raise self._timed_out(who) from None

    def submit(self, item: Any) -> Ticket:
        actor = self._least_busy()
        ticket = Ticket(actor)
        ticket.value = actor.handle.score.remote(item)
        actor.tickets.append(ticket)
        return ticket

    def wait(self, ticket: Ticket) -> Any:
        if not ticket.ready:
            self._settle(ticket, ticket.value)
        return ticket.value

    def close(self, kill: bool = False) -> None:
        """Stop the actors and, if this pool connected, disconnect; a failed start is raised
        here unless ``kill`` (the run is failing already: a start still under way is not waited for)."""
        try:
            if kill and (not self._started.is_set() or self._failure is not None):
                return  # the run is failing already
            self._is_started(wait=True)
            import ray

            for actor in self._members:
                ray.kill(actor.handle)
            if self._connected:
                ray.shutdown()
        finally:
            self._closed.set()

