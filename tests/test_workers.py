"""Worker processes (runtime.cli.workers) and how the command shares items with them (runtime.cli.bulk._shared):
order, the command scoring while workers start or are busy, bounded memory, failures in one line."""

import multiprocessing
import os
import time
from functools import partial

import pytest

from runtime.cli.bulk import HELD, _shared
from runtime.cli.workers import WorkerError, WorkerPool


def _tagged(delay: float, load: float = 0.0):
    """A worker's scorer: (``"worker"``, item) after ``delay`` seconds; loads in ``load`` seconds."""
    time.sleep(load)

    def score(item):
        time.sleep(delay)
        return "worker", item

    return score


def _cannot_load():
    raise ValueError("no bundle here")


def _divides():
    return lambda item: 1 / item


def _unpicklable():
    return lambda item: lambda: item  # an answer that cannot be sent back


def _environment_reader():
    """A worker's scorer that answers the value of the environment variable it is given, and
    that leaves a file behind if the worker's interpreter runs its exit handlers."""
    import atexit

    def score(item):
        name, mark = item
        atexit.register(lambda: open(mark, "w").close())
        return os.environ.get(name)

    return score


def _first_answer(pool: WorkerPool, item, seconds: float = 60.0):
    """``item`` scored by the pool's first worker once it is ready."""
    deadline = time.monotonic() + seconds
    while not pool.room():
        assert time.monotonic() < deadline, "the worker did not start"
        pool.collect()
        time.sleep(0.01)
    return pool.wait(pool.submit(item))


@pytest.mark.parametrize("users", [None, "3"])
def test_workers_start_with_one_blas_thread_unless_told_and_exit_at_once(users, monkeypatch, tmp_path):
    if users is None:
        monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", users)
    before = dict(os.environ)
    pool = WorkerPool(_environment_reader, 1)
    try:
        answer = _first_answer(pool, ("OPENBLAS_NUM_THREADS", str(tmp_path / "exit-handlers-ran")))
    finally:
        pool.close()
    assert answer == (users or "1")
    assert dict(os.environ) == before  # the command's own environment is as it was
    worker = pool._members[0].process
    assert worker.exitcode == 0 and not (tmp_path / "exit-handlers-ran").exists()


def _here(delay: float, item):
    time.sleep(delay)
    return "here", item


def test_items_come_back_in_input_order_from_the_workers_and_from_here():
    pool = WorkerPool(partial(_tagged, 0.004), 2)
    try:
        out = list(_shared(range(400), partial(_here, 0.004), pool))
    finally:
        pool.close()
    assert [item for _, item in out] == list(range(400))
    where = [tag for tag, _ in out]
    assert where[0] == "here"  # the workers were still loading
    assert 0 < where.count("worker") < 400 and 0 < where.count("here") < 400


def test_a_short_input_is_done_here_while_the_workers_load_and_they_are_not_waited_for():
    started = time.monotonic()
    pool = WorkerPool(partial(_tagged, 0.0, load=60.0), 2)
    out = list(_shared(range(5), partial(_here, 0.0), pool))
    pool.close()
    assert out == [("here", i) for i in range(5)]
    assert time.monotonic() - started < 30, "close waited for workers still loading"
    assert not multiprocessing.active_children()


def test_results_held_for_a_busy_worker_are_bounded():
    """A worker slow on its items: the command scores on, but holds at most HELD answers
    waiting for the worker's, so memory stays bounded."""
    pool = WorkerPool(partial(_tagged, 1.0), 1)
    read, lead = 0, 0

    def items():
        nonlocal read
        for i in range(120):
            read += 1
            yield i

    try:
        for done, (_, item) in enumerate(_shared(items(), partial(_here, 0.01), pool)):
            assert item == done
            lead = max(lead, read - done)
    finally:
        pool.close()
    assert HELD < lead <= HELD + pool.in_flight + 1


@pytest.mark.parametrize("start, message", [
    (_cannot_load, "a worker process failed: cannot load the model (ValueError: no bundle here)"),
    (_divides, "a worker process failed: ZeroDivisionError: division by zero"),
    (_unpicklable, "a worker process failed: AttributeError: Can't pickle local object"),
])
def test_a_worker_that_fails_stops_the_run_with_one_line(start, message):
    pool = WorkerPool(start, 1)
    with pytest.raises(WorkerError) as e:
        try:
            list(_shared([0] * 300, partial(_here, 0.01), pool))
        finally:
            pool.close(kill=True)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
    assert not multiprocessing.active_children()
