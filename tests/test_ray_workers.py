"""Ray actors as the command's workers (runtime.cli.ray_workers): started by a thread while the
command scores, answers identical to the command's own, failures in one line. Each case runs
in its own Python, as the command would, with a local cluster."""

import os
import subprocess
import sys

import pytest

from conftest import ROOT

pytest.importorskip("ray")

_SETUP = """
import sys, time
import runtime
from runtime.cli import bulk
from runtime.cli.records import line_blocks
from runtime.cli.render import OutputOptions
from runtime.cli.ray_workers import RayPool
from runtime.cli.workers import WorkerError
clf = runtime.load()
job = bulk.Job(bulk.ScorerSpec.of(clf), "lines", "utf-8", "text", OutputOptions(True, True, "utf-8", "default"))
"""


def _run(script: str, lines_file=None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _SETUP + script, str(lines_file)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, **(env or {})})


def test_actors_score_once_their_starter_thread_is_done(lines_file):
    """Items go to actors only once they are ready, come back as the command renders them, and
    the actors keep working after the thread that started the local cluster has done so
    (its processes would die with that thread if it ended: PR_SET_PDEATHSIG)."""
    done = _run("""
import runtime.cli.records
runtime.cli.records.BLOCK = 64 * 1024  # reads, and so blocks, of 64 KiB: about 60 items
with open(sys.argv[1], "rb") as f:
    items = list(line_blocks(f, sys.argv[1], size=64 * 1024))
pool = RayPool(bulk.BlockScorer, (job,), 2)
assert not pool.room(), "an actor had room before it was started"
deadline = time.monotonic() + 300
while not pool.room():
    assert time.monotonic() < deadline, "no actor became ready"
    pool.collect()
    time.sleep(0.05)
time.sleep(2)  # the starter thread has long finished starting
here = bulk.BlockScorer(job, clf)
out = list(bulk._shared(items, lambda item: ("here", here.score(item)), pool))
pool.close()
tagged = [o for o in out if isinstance(o, tuple)]
remote = [o for o in out if not isinstance(o, tuple)]
# How many the actors take depends on the machine's load; that they take any after their
# starter thread ended is what is checked.
assert len(remote) >= 2, f"the actors scored {len(remote)} of {len(items)} items"
want = [here.score(item) for item in items]
assert [o[1] if isinstance(o, tuple) else o for o in out] == want
print("items", len(items), "actors", len(remote), "here", len(tagged))
""", lines_file)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("items "), done.stdout
    assert done.stderr.strip() == "", done.stderr[-2000:]


def test_an_unreachable_cluster_fails_in_one_line_within_the_deadline():
    done = _run("""
started = time.monotonic()
pool = RayPool(bulk.BlockScorer, (job,), 2, connect_seconds=3)
try:
    while True:
        pool.collect()
        time.sleep(0.05)
except WorkerError as e:
    pool.close(kill=True)
    print("error:", e)
    print("after", round(time.monotonic() - started))
""", env={"RAY_ADDRESS": "127.0.0.1:9"})
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("error: cannot reach the Ray cluster at 127.0.0.1:9"), done.stdout
    assert int(lines[1].split()[1]) <= 10


def test_an_actor_that_cannot_load_fails_the_run_in_one_line():
    done = _run("""
from dataclasses import replace
broken = replace(job, spec=replace(job.spec, options=replace(job.spec.options, bundle="/nonexistent/bundle")))
pool = RayPool(bulk.BlockScorer, (broken,), 1)
deadline = time.monotonic() + 300
try:
    while time.monotonic() < deadline:
        pool.collect()
        time.sleep(0.05)
    print("no error")
except WorkerError as e:
    pool.close(kill=True)
    print("error:", e)
""")
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(done.stdout.splitlines()) == 1 and done.stdout.startswith("error: a Ray worker died"), done.stdout


def test_a_local_cluster_that_fails_to_start_is_started_once_more(monkeypatch):
    """A local cluster's GCS may fail to come up on a loaded machine: the command's own cluster
    is shut down and started again, once; a second failure is one WorkerError line."""
    import ray

    from runtime.cli import ray_workers
    from runtime.cli.workers import WorkerError

    calls = []
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append("init") or (_ for _ in ()).throw(
        RuntimeError("Failed to start GCS.\nmore")))
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append("shutdown"))
    with pytest.raises(WorkerError, match="cannot start or reach a local Ray cluster \\(Failed to start GCS.\\)"):
        ray_workers.start_ray(1)
    assert calls == ["init", "shutdown", "init"]
    calls.clear()
    started = iter([RuntimeError("Failed to start GCS."), None])

    def init(**kw):
        calls.append("init")
        failure = next(started)
        if failure:
            raise failure

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 1.0})
    assert ray_workers.start_ray(1) == (1, True) and calls == ["init", "shutdown", "init"]
