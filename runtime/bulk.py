"""Scoring many records: in this process, in worker processes, or on Ray actors (a local
cluster, or the one ``RAY_ADDRESS`` names).

The reading process cuts its files into items (blocks of whole lines, or parsed CSV records,
see ``runtime.records``); a ``BlockScorer`` turns an item into its rendered output: it parses
the records, scores them and renders each result as the command line prints it. Items come
back in input order and every byte is the one the single-process path gives (the engines are
batch-invariant), whatever the number of processes. With ``--jobs N`` the reading process is
one of the N: it scores the items its N - 1 worker processes (``runtime.workers``) have no
room for. Every worker loads the bundle once, and at most ``IN_FLIGHT`` items per worker are
in flight, so memory stays bounded for any number of records. A worker that dies makes the
run fail with ``WorkerError`` instead of hanging. Ray is imported only when asked for.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial

from runtime.classifier import Classifier, load
from runtime.features import BULK_MEMO_SIZE
from runtime.records import Item, records_of
from runtime.render import OutputOptions, Renderer, Result, warnings
from runtime.workers import Ticket, WorkerError, WorkerPool


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


def _block_scorer(job: Job) -> Callable[[Item], Rendered]:
    """A worker's scorer: built in the worker, once."""
    return BlockScorer(job).score


def jobs_count(jobs: int) -> int:
    """``jobs`` scoring processes, 0 meaning one per available core."""
    if jobs > 0:
        return jobs
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def score(items: Iterable[Item], job: Job, clf: Classifier, jobs: int = 1,
          ray_workers: int | None = None) -> Iterator[Rendered]:
    """Each item's rendered output, in order.

    ``jobs`` > 1 scores in that many processes: this one, with ``clf``, and ``jobs - 1``
    workers, each loading the bundle once; ``ray_workers`` (0: one per CPU of the cluster)
    scores on that many Ray actors instead; else ``clf`` scores here.
    """
    if ray_workers is not None:
        yield from _in_order(items, *_ray_actors(job, ray_workers))
        return
    here = BlockScorer(job, clf)
    if jobs <= 1:
        for item in items:
            yield here.score(item)
        return
    pool = WorkerPool(partial(_block_scorer, job), jobs - 1, IN_FLIGHT)
    try:
        yield from _shared(items, here.score, pool)
    except BaseException:
        pool.close(kill=True)
        raise
    pool.close()


IN_FLIGHT = 2  # items sent to a worker process or a Ray actor and not yet answered
HELD = 32  # items scored here and waiting for an earlier one that a worker holds


def _shared(items: Iterable[Item], score_here, pool: WorkerPool) -> Iterator[Rendered]:
    """Items scored by the pool's workers and here, output in input order.

    An item goes to a ready worker with room, else it is scored here: this process scores
    while the workers start (they import and load for about as long as this process did) and
    whenever they are busy, so no core waits for a process that only reads and writes, and a
    short input is done before a worker has loaded. Items scored here wait for an earlier
    worker's answer (at most ``HELD`` of them: memory stays bounded).
    """
    pending: deque[Ticket] = deque()
    for item in items:
        pool.collect()
        while pending and pending[0].ready:
            yield pending.popleft().value
        pending.append(pool.submit(item) if pool.room() else Ticket(value=score_here(item)))
        if len(pending) > HELD:
            yield pool.wait(pending.popleft())
    for ticket in pending:
        yield pool.wait(ticket)


def _in_order(items: Iterable[Item], submit, result, workers: int) -> Iterator[Rendered]:
    """Submit items to ``workers`` workers, at most two each in flight, and yield their output in input order."""
    pending: deque = deque()
    for i, item in enumerate(items):
        pending.append(submit(i, item))
        if len(pending) >= IN_FLIGHT * workers:
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
