"""Scoring many records: in this process, in worker processes, or on Ray actors (a local
cluster, or the one ``RAY_ADDRESS`` names).

The reading process cuts its files into items (blocks of whole lines, or parsed CSV records,
see ``runtime.cli.records``); a ``BlockScorer`` turns an item into its rendered output: it parses
the records, scores them and renders each result as the command line prints it. Items come
back in input order and every byte is the one the single-process path gives (the engines are
batch-invariant), whatever the number of processes. With ``--jobs N`` the reading process is
one of the N: it scores the items its N - 1 worker processes (``runtime.cli.workers``) have no
room for, and so it does with Ray actors (``runtime.cli.ray_workers``). Every worker loads the
bundle once, and at most ``IN_FLIGHT`` items per worker are in flight, so memory stays
bounded for any number of records. A worker that dies makes the run fail with
``WorkerError`` instead of hanging. Ray is imported only when asked for.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial

from runtime.classifier import Classifier, load
from runtime.options import ClassifierOptions
from runtime.encoding.features import BULK_MEMO_SIZE
from runtime.cli.records import Item, records_of
from runtime.cli.render import OutputOptions, Renderer, Result, warnings
from runtime.cli.workers import Pool, Ticket, WorkerPool, available_cores


@dataclass(frozen=True)
class ScorerSpec:
    """What a worker needs to load the same classifier: its options (picklable, small), so
    that every option reaches a worker process or a Ray actor."""

    options: ClassifierOptions

    @classmethod
    def of(cls, clf: Classifier) -> ScorerSpec:
        return cls(clf.options)

    def load(self) -> Classifier:
        return load(options=self.options)


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
    """How many scoring processes ``--jobs jobs`` gets: one per available core for 0, and never
    more than there are cores (more processes only share the same cores, each with its own
    copy of the model)."""
    cores = available_cores()
    return cores if jobs <= 0 else min(jobs, cores)


def score(items: Iterable[Item], job: Job, clf: Classifier, jobs: int = 1,
          ray_workers: int | None = None, timeout: float | None = None,
          note: Callable[[str], None] | None = None) -> Iterator[Rendered]:
    """Each item's rendered output, in order.

    ``jobs`` > 1 scores in that many processes: this one, with ``clf``, and ``jobs - 1``
    workers, each loading the bundle once; ``ray_workers`` (0: one per CPU of the cluster,
    and never more) scores on that many Ray actors and here; else ``clf`` scores here alone.
    A worker that has not answered for ``timeout`` seconds (None: no limit) fails the run
    (``WorkerError``); ``note`` gets a line for the user about a worker that is slow to
    answer, and about Ray actors capped at the cluster's CPUs.
    """
    here = BlockScorer(job, clf)
    if ray_workers is not None:
        from runtime.cli.ray_workers import RayPool

        pool = RayPool(BlockScorer, (job,), ray_workers, IN_FLIGHT, timeout=timeout, note=note)
    elif jobs <= 1:
        for item in items:
            yield here.score(item)
        return
    else:
        pool = WorkerPool(partial(_block_scorer, job), jobs - 1, IN_FLIGHT, timeout=timeout, note=note)
    try:
        yield from _shared(items, here.score, pool)
    except BaseException:
        pool.close(kill=True)
        raise
    pool.close()


IN_FLIGHT = 2  # items sent to a worker process or a Ray actor and not yet answered
HELD = 32  # items scored here and waiting for an earlier one that a worker holds


def _shared(items: Iterable[Item], score_here, pool: Pool) -> Iterator[Rendered]:
    """Items scored by the pool's workers and here, output in input order.

    An item goes to a ready worker with room, else it is scored here: this process scores
    while the workers start (they import and load for about as long as this process did; Ray
    actors, after connecting, longer) and whenever they are busy, so no core waits for a
    process that only reads and writes, and a short input is done before a worker has loaded.
    Items scored here wait for an earlier worker's answer (at most ``HELD`` of them, besides
    the items in flight: memory stays bounded).
    """
    pending: deque[Ticket] = deque()
    for item in items:
        pool.collect()
        while pending and pending[0].ready:
            yield pending.popleft().value
        pending.append(pool.submit(item) if pool.room() else Ticket(value=score_here(item)))
        if len(pending) > HELD + pool.capacity():
            yield pool.wait(pending.popleft())
    for ticket in pending:
        yield pool.wait(ticket)
