"""The runtime library: no TensorFlow, golden agreement, threads, engines and bundles."""

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import runtime
from conftest import ROOT
from export.convert import FAMILY_ARTIFACTS
from runtime.checks import parity
from runtime.engines.base import EngineError, choose_engine
from runtime.bundle.files import BundleError
from runtime.classifier import DEFAULT_BUNDLE


def test_importing_and_classifying_never_imports_tensorflow():
    code = (
        "import sys, runtime\n"
        "c = runtime.load()\n"
        "p = c.predict('A wonderful film, I loved it.')\n"
        "c.predict_proba(['bad', 'good'])\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras', 'tf2onnx'))\n"
        "assert not bad, bad\n"
        "print(p.label)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "positive"


def test_the_command_on_one_review_does_not_import_package_metadata(tmp_path):
    """importlib.metadata (and the email package it pulls in) took 17 ms of a 0.16 s cold
    start; the engines' versions come from their packages once imported."""
    review = tmp_path / "r.txt"
    review.write_text("A wonderful film, I loved it.")
    code = ("import sys\nfrom runtime import classify\n"
            f"status = classify.main([{str(review)!r}])\n"
            "slow = sorted(m for m in sys.modules if m.split('.')[0] == 'email' or m == 'importlib.metadata')\n"
            "assert not slow, slow\nprint('status', status)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "status 0" in out.stdout, out.stderr


def test_engine_versions_match_their_distributions():
    import importlib.metadata

    from runtime.engines.base import ENGINES, engine_version, installed_engines

    for engine in installed_engines():
        assert engine_version(engine) == importlib.metadata.version(ENGINES[engine][2])


@pytest.mark.parametrize("artifact", FAMILY_ARTIFACTS["multi_hot"])
def test_single_batch_and_stream_agree_with_golden(small_bundle, artifact):
    clf = runtime.load(small_bundle, artifact=artifact)
    run = parity.golden_run(clf, clf.bundle.golden(), piece=50)
    tol = clf.bundle.artifacts[artifact].golden_tolerance
    assert np.abs(run.single - run.want).max() <= tol / 10
    np.testing.assert_array_equal(run.single, run.batch)  # batching never changes an answer
    np.testing.assert_array_equal(run.single, run.stream)


def test_predict_returns_label_and_probability(small_bundle):
    clf = runtime.load(small_bundle, artifact="tflite-float32")
    p = clf.predict("An awful, boring, terrible film. Worst ever.")
    assert p.label == "negative" and 0 <= p.probability < 0.5
    assert clf.predict("An awful film", threshold=0.0).label == "positive"
    assert clf.predict_proba([]).shape == (0,)


def test_one_classifier_shared_by_threads_matches_serial(small_bundle, corpus):
    texts = corpus.splits["test"].texts[:400]
    for artifact in ("tflite-int8", "onnx-float32"):
        clf = runtime.load(small_bundle, artifact=artifact)
        serial = [clf.predict(t).probability for t in texts]
        with ThreadPoolExecutor(8) as pool:
            threaded = [p.probability for p in pool.map(clf.predict, texts * 3)]
        assert threaded == serial * 3
        with ThreadPoolExecutor(4) as pool:
            batches = list(pool.map(clf.predict_proba, [texts[i : i + 40] for i in range(0, 400, 40)]))
        np.testing.assert_array_equal(np.concatenate(batches), np.float32(serial))


def test_shipped_default_bundle_passes_its_golden_set():
    clf = runtime.load()
    assert clf.bundle.root == DEFAULT_BUNDLE and clf.bundle.verify_all() == []
    assert sum(p.stat().st_size for p in DEFAULT_BUNDLE.iterdir()) <= 2.5 * (1 << 20)
    golden = clf.bundle.golden()
    for name, info in clf.bundle.artifacts.items():
        c = runtime.load(artifact=name)
        got = c.predict_proba([g["text"] for g in golden])
        want = np.array([g["probabilities"][name] for g in golden])
        assert np.abs(got - want).max() <= info.golden_tolerance / 10, name
    assert clf.bundle.manifest.model["float_test_accuracy"] >= 0.88


def test_engine_choice_errors_say_what_to_install(monkeypatch):
    from runtime.engines import base

    assert choose_engine("tflite", "auto") in ("litert", "tflite-runtime")
    with pytest.raises(EngineError, match="cannot run onnx artifacts"):
        choose_engine("onnx", "litert")
    with pytest.raises(EngineError, match="unknown backend"):
        choose_engine("onnx", "tensorrt")
    monkeypatch.setattr(base, "installed_engines", lambda fmt=None: [])
    with pytest.raises(EngineError, match="pip install ai-edge-litert or pip install tflite-runtime"):
        choose_engine("tflite", "auto")
    with pytest.raises(EngineError, match="not installed: pip install onnxruntime"):
        choose_engine("onnx", "onnxruntime")


def test_default_artifact_falls_back_to_an_installed_engine(small_bundle, monkeypatch):
    from runtime import classifier
    from runtime.engines import base

    only_onnx = lambda fmt=None: ["onnxruntime"] if fmt in (None, "onnx") else []  # noqa: E731
    monkeypatch.setattr(classifier, "installed_engines", only_onnx)
    monkeypatch.setattr(base, "installed_engines", only_onnx)
    clf = runtime.load(small_bundle)
    assert clf.engine == "onnxruntime" and clf.artifact.startswith("onnx-")


@pytest.mark.parametrize("damage, message", [
    (lambda b: (b / "manifest.json").unlink(), "manifest.json: missing"),
    (lambda b: (b / "manifest.json").write_text("{not json"), "unreadable manifest"),
    (lambda b: (b / "model_int8.tflite").write_bytes(b"\0" * 100), "model_int8.tflite: sha256 does not match"),
    (lambda b: (b / "vocab.txt").unlink(), "vocab.txt: missing"),
    (lambda b: (b / "vocab.txt").write_text((b / "vocab.txt").read_text() + "extra\n"), "vocab.txt: sha256"),
])
def test_damaged_bundles_are_refused_naming_the_file(small_bundle, tmp_path, damage, message):
    bad = tmp_path / "b"
    shutil.copytree(small_bundle, bad)
    damage(bad)
    with pytest.raises(BundleError, match=message):
        runtime.load(bad, artifact="tflite-int8")


def test_other_tokenizer_version_is_refused(small_bundle, tmp_path):
    bad = tmp_path / "b"
    shutil.copytree(small_bundle, bad)
    m = json.loads((bad / "manifest.json").read_text())
    m["tokenizer"]["version"] = 99
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="tokenizer"):
        runtime.load(bad)


def test_artifact_swapped_from_another_model_is_refused(small_bundle, tmp_path):
    """A model of another input size, even with its sha256 patched in, cannot load."""
    from runtime.bundle.files import sha256_file

    bad = tmp_path / "b"
    shutil.copytree(small_bundle, bad)
    m = json.loads((bad / "manifest.json").read_text())
    for artifact, file in (("tflite-int8", "model_int8.tflite"), ("onnx-int8", "model_int8.onnx")):
        shutil.copyfile(DEFAULT_BUNDLE / file, bad / file)
        m["artifacts"][artifact].update(sha256=sha256_file(bad / file), size_bytes=(bad / file).stat().st_size)
    (bad / "manifest.json").write_text(json.dumps(m))
    for artifact in ("tflite-int8", "onnx-int8"):
        with pytest.raises(BundleError, match="takes 1030000 features but the multi_hot encoder makes 2000"):
            runtime.load(bad, artifact=artifact)


@pytest.mark.parametrize("artifact", ["tflite-float32", "onnx-float32"])
def test_a_review_is_not_changed_by_the_reviews_before_it(small_bundle, corpus, artifact):
    """The hot path reuses one input buffer per padded width: ids left by a longer review
    must never leak into a shorter one in the same width."""
    texts = corpus.splits["test"].texts[:300]
    fresh = [runtime.load(small_bundle, artifact=artifact).predict(t).probability for t in texts[:20]]
    clf = runtime.load(small_bundle, artifact=artifact)
    by_length = sorted(texts, key=len, reverse=True)
    for t in by_length:
        clf.predict(t).probability
    assert [clf.predict(t).probability for t in texts[:20]] == fresh
    widths = {len(clf.encoder.model_input(t)).bit_length() for t in texts}
    assert len(widths) >= 3  # the sample spans several padded widths
