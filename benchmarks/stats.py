"""Timing statistics, and an interleaved timer so machine drift hits every candidate alike."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np


def summarize(seconds: Sequence[float]) -> dict:
    """p50/p90/p99, mean and min of timings, in microseconds."""
    us = np.asarray(seconds, dtype=np.float64) * 1e6
    if us.size == 0:
        raise ValueError("no timings to summarize")
    p50, p90, p99 = np.percentile(us, [50, 90, 99])
    return {"n": int(us.size), "p50_us": float(p50), "p90_us": float(p90), "p99_us": float(p99),
            "mean_us": float(us.mean()), "min_us": float(us.min())}


def round_p50s(seconds: Sequence[float], rounds: int) -> list[float]:
    """The p50 of each of ``rounds`` equal consecutive slices of timings, in microseconds:
    ``interleaved`` records its repeats one after the other, so a slice is one round."""
    if rounds < 1 or len(seconds) % rounds:
        raise ValueError(f"{len(seconds)} timings do not make {rounds} equal rounds")
    per = len(seconds) // rounds
    return [float(np.percentile(np.asarray(seconds[i * per : (i + 1) * per], dtype=np.float64), 50) * 1e6)
            for i in range(rounds)]


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, as a plain float (inf when the denominator is 0)."""
    return float(numerator / denominator) if denominator else float("inf")


def interleaved(candidates: dict[str, Callable[[object], object]], inputs: Sequence[object],
                repeats: int, warmup: int = 1, on_round: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """Time each candidate on each input, ``repeats`` times, rotating the candidate order
    for every input so that slow phases of a shared machine fall on all of them alike."""
    names = list(candidates)
    for _ in range(warmup):
        for name in names:
            for x in inputs[: max(1, len(inputs) // 10)]:
                candidates[name](x)
    samples: dict[str, list[float]] = {n: [] for n in names}
    clock = time.perf_counter
    for r in range(repeats):
        for i, x in enumerate(inputs):
            k = (i + r) % len(names)
            for name in names[k:] + names[:k]:
                f = candidates[name]
                t0 = clock()
                f(x)
                samples[name].append(clock() - t0)
        if on_round is not None:
            on_round()
    return samples


def throughput(run: Callable[[Sequence[object]], object], inputs: Sequence[object], batch: int,
               min_seconds: float) -> float:
    """Items per second of ``run`` over consecutive batches, for at least ``min_seconds``."""
    batches = [inputs[i : i + batch] for i in range(0, len(inputs) - batch + 1, batch)] or [inputs[:batch]]
    run(batches[0])
    done, start, i = 0, time.perf_counter(), 0
    while True:
        b = batches[i % len(batches)]
        run(b)
        done += len(b)
        i += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed
