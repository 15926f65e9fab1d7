"""``ClassifierOptions``: one value owns what a classifier is made of, and every way of
rebuilding a classifier elsewhere (pickling, ``ReviewScorer``, the command's worker processes,
Ray actors) gets every option back, applied, not only carried."""

import os
import pickle
import shutil
import subprocess
import sys
import time
from dataclasses import fields
from functools import partial
from pathlib import Path

import pytest

import runtime
from conftest import ROOT
from runtime import ClassifierOptions
from runtime.cli import bulk
from runtime.cli.render import OutputOptions
from runtime.cli.workers import WorkerPool

DEFAULTS = ClassifierOptions()


def _every_option_set(bundle: Path) -> ClassifierOptions:
    """Every field away from its default (and from what the shipped bundle would pick)."""
    options = ClassifierOptions(bundle=str(bundle), artifact="onnx-int8", engine="onnxruntime", num_threads=2,
                                threshold=0.3, uncertain=(0.4, 0.6))
    assert all(getattr(options, f.name) != getattr(DEFAULTS, f.name) for f in fields(ClassifierOptions))
    assert runtime.load().options.artifact != options.artifact  # the default artifact is another one
    return options


@pytest.fixture
def options(tmp_path) -> ClassifierOptions:
    shutil.copytree(runtime.DEFAULT_BUNDLE, tmp_path / "bundle")
    return _every_option_set(tmp_path / "bundle")


def _applied(clf: runtime.Classifier) -> tuple:
    """The options as a classifier holds them and what its engine was really given."""
    session = clf.backend._session.get_session_options()
    return clf.options, session.intra_op_num_threads, clf.predict("A fine film, quite dull").label


def _job(clf: runtime.Classifier) -> bulk.Job:
    return bulk.Job(bulk.ScorerSpec.of(clf), "lines", "utf-8", "text", OutputOptions(True, True, "utf-8", "default"))


def test_load_builds_the_options_it_is_given_as_keywords_or_whole(options):
    by_keywords = runtime.load(options.bundle, artifact="onnx-int8", backend="onnxruntime", num_threads=2,
                               threshold=0.3, uncertain=[0.4, 0.6])
    whole = runtime.load(options=options)
    assert by_keywords.options == whole.options == options
    assert (whole.artifact, whole.engine, whole.num_threads, whole.threshold, whole.uncertain) == (
        "onnx-int8", "onnxruntime", 2, 0.3, (0.4, 0.6))


def test_the_options_say_what_was_loaded(monkeypatch, tmp_path):
    """The bundle is absolute (None for the shipped one); the artifact, engine and threshold the
    ones picked."""
    shipped = runtime.load()
    manifest_threshold = shipped.threshold
    assert shipped.options.bundle is None and shipped.options.artifact is not None
    assert shipped.options.engine != "auto" and shipped.options.threshold == manifest_threshold
    assert runtime.load(str(runtime.DEFAULT_BUNDLE)).options.bundle is None
    shutil.copytree(runtime.DEFAULT_BUNDLE, tmp_path / "b")
    monkeypatch.chdir(tmp_path)
    assert runtime.load("b").options.bundle == str(tmp_path / "b")
    assert ClassifierOptions(bundle=Path("b")).bundle == str(tmp_path / "b")
    assert pickle.loads(pickle.dumps(ClassifierOptions(bundle="b"))) == ClassifierOptions(bundle=tmp_path / "b")


def test_every_option_survives_pickling(options, tmp_path, monkeypatch):
    clf = runtime.load(options=options)
    scorer = runtime.ReviewScorer(options=options, column="review")
    want = _applied(clf)
    assert want[1] == 2  # the engine was given the threads asked for
    data = pickle.dumps(clf), pickle.dumps(scorer), pickle.dumps(bulk.ScorerSpec.of(clf))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    again, scorer_again, spec = map(pickle.loads, data)
    assert _applied(again) == _applied(scorer_again.classifier) == _applied(spec.load()) == want
    assert again.options == scorer_again.options == spec.options == options
    assert scorer_again.column == "review"


def _options_in_worker(job: bulk.Job):
    """What a ``--jobs`` worker builds (``bulk._block_scorer``), answering its classifier's options."""
    score = bulk._block_scorer(job)
    return lambda item: _applied(score.__self__.clf)


def test_every_option_reaches_a_worker_process(options):
    clf = runtime.load(options=options)
    pool = WorkerPool(partial(_options_in_worker, _job(clf)), 1)
    try:
        deadline = time.monotonic() + 120
        while not pool.room():
            assert time.monotonic() < deadline, "the worker did not start"
            pool.collect()
            time.sleep(0.01)
        got = pool.wait(pool.submit("item"))
    finally:
        pool.close()
    assert got == _applied(clf)
    assert got[0] == options


_RAY = """
import pickle, sys, time
import runtime
from runtime.cli import bulk
from runtime.cli.ray_workers import RayPool
from runtime.cli.render import OutputOptions

class OptionsActor:
    '''A Ray actor built as the command's are (RayPool(BlockScorer, (job,))), answering its options.'''
    def __init__(self, job):
        self.clf = bulk.BlockScorer(job).clf
    def score(self, item):
        session = self.clf.backend._session.get_session_options()
        return self.clf.options, session.intra_op_num_threads, self.clf.predict("A fine film, quite dull").label

options = pickle.loads(bytes.fromhex(sys.argv[1]))
clf = runtime.load(options=options)
job = bulk.Job(bulk.ScorerSpec.of(clf), "lines", "utf-8", "text", OutputOptions(True, True, "utf-8", "default"))
pool = RayPool(OptionsActor, (job,), 1)
deadline = time.monotonic() + 300
while not pool.room():
    assert time.monotonic() < deadline, "no actor became ready"
    pool.collect()
    time.sleep(0.05)
got = pool.wait(pool.submit("item"))
pool.close()
sys.stdout.write(pickle.dumps(got).hex())
"""


def test_every_option_reaches_a_ray_actor(options):
    pytest.importorskip("ray")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local cluster of its own
    done = subprocess.run([sys.executable, "-c", _RAY, pickle.dumps(options).hex()], check=False, cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    got = pickle.loads(bytes.fromhex(done.stdout.strip()))
    assert got == _applied(runtime.load(options=options))
    assert got[0] == options and got[1] == 2


PUBLIC = {"predict", "predict_batch", "predict_proba", "predict_stream", "explain",  # methods
          "options", "labels", "engine", "artifact", "threshold", "uncertain", "num_threads", "temperature"}


def test_the_classifier_surface_is_small():
    assert {n for n in dir(runtime.Classifier) if not n.startswith("_")} == PUBLIC
    props = {n for n in PUBLIC if isinstance(getattr(runtime.Classifier, n), property)}
    assert props == PUBLIC - {"predict", "predict_batch", "predict_proba", "predict_stream", "explain"}
    with pytest.raises(AttributeError):
        runtime.load().threshold = 0.1  # read-only: the options say what it is


def _documented(obj, name: str) -> list[str]:
    """What the docstring of a public callable lacks of Google style (Args, Returns, Raises)."""
    import inspect

    doc = inspect.getdoc(obj) or ""
    missing = [] if doc else [f"{name}: no docstring"]
    if inspect.isfunction(obj):
        params = [p for p in inspect.signature(obj).parameters if p not in ("self", "cls")]
        if params and "Args:" not in doc:
            missing.append(f"{name}: no Args")
        if inspect.signature(obj).return_annotation not in (None, "None", inspect.Signature.empty) \
                and "Returns:" not in doc:
            missing.append(f"{name}: no Returns")
    return missing


def test_every_public_name_has_a_google_style_docstring():
    import inspect

    missing = []
    for name in runtime.__all__:
        obj = getattr(runtime, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue  # a constant
        missing += _documented(obj, name)
        if inspect.isclass(obj):
            for member, value in vars(obj).items():
                if not member.startswith("_") and inspect.isfunction(value):
                    missing += _documented(value, f"{name}.{member}")
    assert missing == []
    for raising in (runtime.load, runtime.ClassifierOptions, runtime.Classifier.predict,
                    runtime.Classifier.predict_batch, runtime.Classifier.predict_proba,
                    runtime.Classifier.predict_stream, runtime.Classifier.explain, runtime.ReviewScorer):
        assert "Raises:" in (raising.__doc__ or ""), raising
