"""Every engine uses the threads it is given and no more: one unless asked (``num_threads``),
none spinning while idle, and never more than the process's CPUs."""

import os
import subprocess
import sys

import numpy as np
import pytest

import runtime
from conftest import ROOT

# Scores a few thousand reviews and prints the CPU ticks of every thread the engine started
# (Linux: /proc/self/task/*/stat, fields utime and stime) and of the calling thread.
THREADS_SCRIPT = r"""
import os, sys, threading
import runtime
import runtime.classifier  # numpy and its own threads start here, before the measure (runtime loads lazily)

def ticks():
    out = {}
    for task in os.listdir("/proc/self/task"):
        fields = open(f"/proc/self/task/{task}/stat").read().rsplit(")", 1)[1].split()
        out[int(task)] = int(fields[11]) + int(fields[12])
    return out

before = ticks()
clf = runtime.load(backend=sys.argv[1])
texts = [f"A {a} film: the acting was {b} and the plot {c}." for a in ("great", "dull", "fine", "awful")
         for b in ("superb", "poor", "fair") for c in ("worked", "dragged", "surprised")] * 100
for _ in range(6):
    clf.predict_proba(texts)
after = ticks()
print(after[threading.get_native_id()], sum(t for task, t in after.items() if task not in before))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads per-thread CPU times from /proc")
@pytest.mark.parametrize("engine", ["onnxruntime", "litert"])
def test_scoring_uses_the_calling_thread_only(engine):
    """No thread the engine started spends CPU: onnxruntime's default pool spun a second
    thread, which took a core from the other scoring processes of a --jobs or Ray run."""
    proc = subprocess.run([sys.executable, "-c", THREADS_SCRIPT, engine], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    caller, others = map(int, proc.stdout.split())
    assert caller >= 5  # the measure saw the work (ticks of 10 ms)
    assert others <= max(1, caller // 20), (engine, caller, others)


def test_onnx_session_runs_on_one_thread_without_spinning():
    from runtime.engines.base import usable_cpus

    options = runtime.load(backend="onnxruntime").backend._session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    asked = runtime.load(backend="onnxruntime", num_threads=2).backend._session.get_session_options()
    assert asked.intra_op_num_threads == min(2, usable_cpus())


@pytest.mark.parametrize("bad", [True, False, 1.0, "2", 2.5, [1]])
def test_num_threads_must_be_an_int(bad):
    with pytest.raises(TypeError, match="num_threads must be a positive int"):
        runtime.load(num_threads=bad)


@pytest.mark.parametrize("bad", [0, -1, -(10**30)])
def test_num_threads_must_be_positive(bad):
    with pytest.raises(ValueError, match="num_threads must be a positive int"):
        runtime.load(num_threads=bad)


def test_num_threads_is_capped_at_the_cpus():
    from runtime.engines.base import engine_threads, usable_cpus

    assert engine_threads(None) == 1 and engine_threads(np.int64(1)) == 1
    assert engine_threads(10**30) == usable_cpus()
    assert runtime.load(backend="onnxruntime", num_threads=100000).backend._session.get_session_options() \
        .intra_op_num_threads == usable_cpus()


@pytest.mark.parametrize("engine", ["litert", "onnxruntime"])
def test_a_huge_num_threads_answers_and_exits_cleanly(engine):
    """It made 100,000 engine threads: litert answered, then hung or crashed at exit."""
    script = (f"import runtime; clf = runtime.load(backend={engine!r}, num_threads=100000); "
              f"print(clf.predict('A wonderful, moving film.').probability)")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert 0.0 < float(proc.stdout) < 1.0
