"""Scoring a stream of records in batches: in this process, in worker processes, or on
Ray actors (a local cluster, or the one ``RAY_ADDRESS`` names).

Results come back in input order, and every probability is the one the single-process path
gives (the engines are batch-invariant), whatever the number of workers. Local workers are
started with ``spawn`` (no engine state is inherited); every worker loads the bundle once,
and at most two batches per worker are in flight, so memory stays bounded for any number of
records. A worker that dies makes the run fail with ``WorkerError`` instead of hanging. Ray
is imported only when asked for.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import islice

from runtime.classifier import Classifier, Prediction, load
from runtime.features import BULK_MEMO_SIZE
from runtime.records import Record
from runtime.scorer import ReviewScorer

BATCH = 256  # records scored together in this process
WORKER_BATCH = 1024  # records sent to a worker at a time: fewer, larger messages


class WorkerError(RuntimeError):
    """A worker process died or failed."""


@dataclass(frozen=True)
class ScorerSpec:
    """What a worker needs to load the same classifier: picklable, small."""

    bundle: str | None
    artifact: str | None
    backend: str
    threshold: float | None

    @classmethod
    def of(cls, clf: Classifier) -> ScorerSpec:
        return cls(str(clf.bundle.root), clf.artifact, clf.engine, clf.threshold)

    def load(self) -> Classifier:
        return load(self.bundle, self.artifact, self.backend, self.threshold)


_worker: Classifier | None = None


def _start_worker(spec: ScorerSpec) -> None:
    global _worker
    _worker = spec.load()
    _worker.encoder.set_memo_size(BULK_MEMO_SIZE)


def _score_in_worker(texts: list[str]) -> tuple:
    return _worker.score_batch(texts)


def jobs_count(jobs: int) -> int:
    """``jobs`` worker processes, 0 meaning one per available core."""
    if jobs > 0:
        return jobs
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _batches(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    it = iter(records)
    while batch := list(islice(it, size)):
        yield batch


def _merge(batch: list[Record], predictions: list[Prediction]) -> Iterator[tuple[Record, Prediction | None]]:
    scored = iter(predictions)
    for record in batch:
        yield record, (next(scored) if record.text is not None else None)


def _texts(batch: list[Record]) -> list[str]:
    return [r.text for r in batch if r.text is not None]


def score(records: Iterable[Record], clf: Classifier, jobs: int = 1, batch: int = BATCH,
          ray_workers: int | None = None) -> Iterator[tuple[Record, Prediction | None]]:
    """Each record with its prediction (None for a record that cannot be classified), in order.

    ``jobs`` > 1 scores in that many worker processes, each loading ``clf``'s bundle once;
    ``ray_workers`` (0: one per CPU of the cluster) scores on that many Ray actors instead.
    """
    if ray_workers is not None:
        yield from _in_order(_batches(records, WORKER_BATCH), clf, *_ray_actors(clf, ray_workers))
    elif jobs <= 1:
        for b in _batches(records, batch):
            yield from _merge(b, clf.predict_batch(_texts(b)))
    else:
        context = multiprocessing.get_context("spawn")
        before = set(multiprocessing.active_children())
        pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker,
                                   initargs=(ScorerSpec.of(clf),))
        broken = False
        try:
            yield from _in_order(_batches(records, WORKER_BATCH), clf,
                                 lambda i, texts: pool.submit(_score_in_worker, texts), lambda f: f.result(), jobs)
        except (BrokenProcessPool, BrokenPipeError, EOFError, ConnectionResetError) as e:
            # BrokenPipeError: a worker killed while it was being started (its set-up data is
            # written to it from here); the others may wait forever on a queue it held.
            broken = True
            raise WorkerError(f"a worker process died ({e or type(e).__name__})") from None
        finally:
            if broken:
                for worker in set(multiprocessing.active_children()) - before:
                    worker.kill()
            pool.shutdown(wait=True, cancel_futures=True)


def _in_order(batches: Iterable[list[Record]], clf: Classifier, submit, result,
              workers: int) -> Iterator[tuple[Record, Prediction | None]]:
    """Submit batches to ``workers`` workers, at most two each in flight, and yield in input
    order; a worker's ``score_batch`` arrays become predictions here."""
    pending: deque = deque()
    for i, b in enumerate(batches):
        pending.append((b, submit(i, _texts(b))))
        if len(pending) >= 2 * workers:
            b, handle = pending.popleft()
            yield from _merge(b, clf.predictions(*result(handle)))
    while pending:
        b, handle = pending.popleft()
        yield from _merge(b, clf.predictions(*result(handle)))


LOCAL_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # Ray's own switch for a single-machine, loopback cluster


def start_ray(workers: int) -> int:
    """Connect to the cluster ``RAY_ADDRESS`` names, else start a local one with ``workers``
    CPUs (0: all) that listens on the loopback interface only; the cluster's number of CPUs."""
    import logging

    local = not os.environ.get("RAY_ADDRESS")
    if local:
        for key, value in LOCAL_ONLY.items():
            os.environ.setdefault(key, value)  # read when ray is first imported
    import ray

    try:
        if not ray.is_initialized():
            ray.init(num_cpus=(workers or None) if local else None, include_dashboard=False,
                     log_to_driver=False, logging_level=logging.ERROR, configure_logging=False)
        return int(ray.cluster_resources().get("CPU", 1))
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {os.environ['RAY_ADDRESS']}" if not local else "a local Ray cluster"
        raise WorkerError(f"cannot start or reach {where} ({str(e).splitlines()[0]})") from None


def _ray_actors(clf: Classifier, workers: int):
    """(submit, result, workers) over ``workers`` Ray actors, each holding a ``ReviewScorer``."""
    import ray

    cpus = start_ray(workers)
    workers = workers or cpus
    spec = ScorerSpec.of(clf)
    actor = ray.remote(num_cpus=1)(ReviewScorer)
    actors = [actor.remote(spec.bundle, spec.artifact, spec.backend, spec.threshold) for _ in range(workers)]

    def submit(i: int, texts: list[str]):
        return actors[i % workers].score_batch.remote(texts)

    def result(ref) -> tuple:
        try:
            return ray.get(ref)
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as e:
            raise WorkerError(f"a Ray worker died ({str(e).splitlines()[0]})") from None

    return submit, result, workers
