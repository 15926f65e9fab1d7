"""Scoring many records: in this process, in worker processes, or on Ray actors (a local
cluster, or the one ``RAY_ADDRESS`` names).

The reading process cuts its files into items (blocks of whole lines, or parsed CSV records,
see ``runtime.records``); a ``BlockScorer`` turns an item into its rendered output: it parses
the records, scores them and renders each result as the command line prints it. Items come
back in input order and every byte is the one the single-process path gives (the engines are
batch-invariant), whatever the number of workers, while the reading process only moves bytes.
Local workers are started with ``spawn`` (no engine state is inherited); every worker loads
the bundle once, and at most two items per worker are in flight, so memory stays bounded for
any number of records. A worker that dies makes the run fail with ``WorkerError`` instead of
hanging. Ray is imported only when asked for.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from runtime.classifier import Classifier, load
from runtime.features import BULK_MEMO_SIZE
from runtime.records import Item, records_of
from runtime.render import OutputOptions, Renderer, Result, warnings


class WorkerError(RuntimeError):
    """A worker process died or failed."""


@dataclass(frozen=True)
class ScorerSpec:
    """What a worker needs to load the same classifier: picklable, small."""

    bundle: str | None
    artifact: str | None
    backend: str
    threshold: float | None
    uncertain: tuple[float, float] | None = None

    @classmethod
    def of(cls, clf: Classifier) -> ScorerSpec:
        return cls(str(clf.bundle.root), clf.artifact, clf.engine, clf.threshold, clf.uncertain)

    def load(self) -> Classifier:
        return load(self.bundle, self.artifact, self.backend, self.threshold, uncertain=self.uncertain)


@dataclass(frozen=True)
class Job:
    """Everything that decides a record's output: the classifier, the record format and the output options."""

    spec: ScorerSpec
    fmt: str
    encoding: str
    key: str
    options: OutputOptions


@dataclass(frozen=True)
class Rendered:
    """An item's output: the text for the output, the lines for standard error, whether a
    record failed, and how many records it held."""

    out: str
    errors: list[str]
    failed: bool
    count: int


class BlockScorer:
    """Parses, scores and renders items; one per process (the command's, a worker's or a Ray actor)."""

    def __init__(self, job: Job, clf: Classifier | None = None):
        self.job = job
        self.clf = clf or job.spec.load()
        self.clf.encoder.set_memo_size(BULK_MEMO_SIZE)
        self.renderer = Renderer(self.clf, job.options)

    def score(self, item: Item) -> Rendered:
        job = self.job
        records = records_of(item, job.fmt, job.encoding, job.key)
        predictions = iter(self.clf.predict_batch([r.text for r in records if r.text is not None]))
        out, errors, failed = [], [], False
        for record in records:
            if record.text is None:
                result = Result(record.source, None, error=record.error, fields=record.fields)
            else:
                p = next(predictions)
                result = Result(record.source, p, warnings(record.replaced, p.known_words, job.encoding),
                                fields=record.fields, text=record.text)
            text, messages, bad = self.renderer.render(result)
            out.append(text)
            errors += messages
            failed |= bad
        return Rendered("".join(out), errors, failed, len(records))


_worker: BlockScorer | None = None


def _start_worker(job: Job) -> None:
    global _worker
    _worker = BlockScorer(job)


def _score_in_worker(item: Item) -> Rendered:
    return _worker.score(item)


def jobs_count(jobs: int) -> int:
    """``jobs`` worker processes, 0 meaning one per available core."""
    if jobs > 0:
        return jobs
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def score(items: Iterable[Item], job: Job, clf: Classifier, jobs: int = 1,
          ray_workers: int | None = None) -> Iterator[Rendered]:
    """Each item's rendered output, in order.

    ``jobs`` > 1 scores in that many worker processes, each loading the bundle once;
    ``ray_workers`` (0: one per CPU of the cluster) scores on that many Ray actors instead;
    else ``clf`` scores here.
    """
    if ray_workers is not None:
        yield from _in_order(items, *_ray_actors(job, ray_workers))
    elif jobs <= 1:
        here = BlockScorer(job, clf)
        for item in items:
            yield here.score(item)
    else:
        context = multiprocessing.get_context("spawn")
        before = set(multiprocessing.active_children())
        pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker, initargs=(job,))
        broken = False
        try:
            yield from _in_order(items, lambda i, item: pool.submit(_score_in_worker, item), lambda f: f.result(), jobs)
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


def _in_order(items: Iterable[Item], submit, result, workers: int) -> Iterator[Rendered]:
    """Submit items to ``workers`` workers, at most two each in flight, and yield their output in input order."""
    pending: deque = deque()
    for i, item in enumerate(items):
        pending.append(submit(i, item))
        if len(pending) >= 2 * workers:
            yield result(pending.popleft())
    while pending:
        yield result(pending.popleft())


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


def _ray_actors(job: Job, workers: int):
    """(submit, result, workers) over ``workers`` Ray actors, each holding a ``BlockScorer``."""
    import ray

    cpus = start_ray(workers)
    workers = workers or cpus
    actor = ray.remote(num_cpus=1)(BlockScorer)
    actors = [actor.remote(job) for _ in range(workers)]

    def submit(i: int, item: Item):
        return actors[i % workers].score.remote(item)

    def result(ref) -> Rendered:
        try:
            return ray.get(ref)
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as e:
            raise WorkerError(f"a Ray worker died ({str(e).splitlines()[0]})") from None

    return submit, result, workers
