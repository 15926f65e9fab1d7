"""Explanations, the uncertainty band and empty reviews, through the API, the CLI and parity.

Exact explanations (the n-gram family) are checked against the Keras model's own logit and
table; occlusion against classifying the review with the word removed, by the runtime.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

import runtime
from conftest import ROOT
from runtime.checks import parity
from runtime.encoding import text
from runtime.explain import EXACT, OCCLUSION, marked
from runtime.probability import logits as logit
from runtime.engines.onnx_tensors import OnnxFormatError, initializers
from runtime.probability import tempered

NEGATIVE = "The plot was dull and the acting was the worst I have seen. A waste of two hours, not good at all."
NGRAM_ARTIFACTS = ["tflite-float32", "tflite-float16", "tflite-dynamic-int8", "tflite-int8",
                   "onnx-float32", "onnx-dynamic-int8", "onnx-int8"]


def keras_logits(model_dir, texts: list[str]) -> np.ndarray:
    """The float Keras n-gram model's logit (before the sigmoid) for each review."""
    from train.model_dir import ModelDir
    from train.ngram_model import bag_of

    md = ModelDir(model_dir)
    bag = bag_of(md.inference_model())
    return np.concatenate([bag(md.encoder.model_inputs([t]), training=False).numpy().reshape(-1) for t in texts])


def without(review: str, word: str) -> str:
    """The review's tokens with every occurrence of ``word`` removed, joined by spaces."""
    return " ".join(t for t in text.tokenize(review) if t != word)


@pytest.mark.parametrize("artifact", ["tflite-float32", "onnx-float32"])
def test_exact_contributions_add_up_to_the_keras_logit(small_ngram_model, small_ngram_bundle, artifact):
    clf = runtime.load(small_ngram_bundle, artifact=artifact)
    texts = [g["text"] for g in clf.bundle.golden()]
    want = keras_logits(small_ngram_model, texts)
    got = np.array([clf.explain(t).logit for t in texts])
    assert np.abs(got - want).max() <= 1e-5
    for t, e in zip(texts[:5], map(clf.explain, texts[:5])):
        assert e.method == EXACT
        assert e.logit == pytest.approx(e.bias + e.total, abs=1e-9)
        assert e.probability == pytest.approx(tempered(1 / (1 + np.exp(-e.logit)), clf.temperature), abs=1e-6)


@pytest.mark.parametrize("artifact", NGRAM_ARTIFACTS)
def test_every_artifact_reads_its_own_weights(small_ngram_model, small_ngram_bundle, artifact):
    """The table an explanation reads is the float table, as the artifact quantized it."""
    from train.model_dir import ModelDir
    from train.ngram_model import bag_of

    table, bias = bag_of(ModelDir(small_ngram_model).inference_model()).table()
    clf = runtime.load(small_ngram_bundle, artifact=artifact)
    weights = clf.backend.linear_weights()
    ids = np.unique(clf.encoder.model_input(NEGATIVE))
    ids = ids[ids > 2]
    got = weights.rows_of(ids)
    step = np.abs(table).max() / 100 if "int8" in artifact else (1e-3 if "16" in artifact else 0.0)
    assert np.abs(got - table[ids]).max() <= step
    assert abs(weights.bias - bias) <= max(step, 1e-7)
    assert weights.rows == clf.encoder.table_rows


def test_negation_shows_as_a_bigram(small_ngram_bundle):
    clf = runtime.load(small_ngram_bundle, artifact="tflite-float32")
    e = clf.explain(NEGATIVE, k=50)
    names = {t.text for t in e.positive + e.negative}
    assert any(" " in n for n in names)  # some bigrams are among the strongest
    for t in e.positive + e.negative:
        tokens = text.tokenize(NEGATIVE)
        for p in t.positions:
            assert t.text.split() == [w if w in clf.encoder.vocab.index else "<unk>" for w in tokens[p : p + t.length]]
    assert all(a.contribution >= b.contribution for a, b in zip(e.positive, e.positive[1:]))
    assert all(a.contribution <= b.contribution for a, b in zip(e.negative, e.negative[1:]))
    assert len(e.positive) <= 50 and len(e.negative) <= 50


@pytest.mark.parametrize("bundle, artifact", [("small_bundle", "tflite-float32"), ("small_bundle", "onnx-float32"),
                                              ("small_lstm_bundle", "tflite-float32")])
def test_occlusion_is_the_logit_without_the_word(request, bundle, artifact):
    clf = runtime.load(request.getfixturevalue(bundle), artifact=artifact)
    e = clf.explain(NEGATIVE, k=3)
    assert e.method == OCCLUSION and e.bias is None
    assert e.probability == pytest.approx(clf.predict(NEGATIVE).probability, abs=1e-6)
    for t in e.top(4):  # contributions are on the model's logit: a temperature divides the answer's
        removed = clf.predict(without(NEGATIVE, t.text)).probability
        answered = float(logit(e.probability) - logit(removed)) * clf.temperature
        assert t.contribution == pytest.approx(answered, abs=1e-3)


def test_golden_explanations_agree_on_every_artifact(small_ngram_bundle, small_bundle):
    """Exact explanations agree on every n-gram artifact. Occlusion agrees on every MLP artifact
    but the full-int8 ones, whose 1/256 output steps hide single words: reported, not judged."""
    checks = [c for c in parity.run(small_ngram_bundle) if c.kind == "explanation"]
    assert len(checks) == len(NGRAM_ARTIFACTS) and all(c.passed for c in checks), [c.message for c in checks]
    assert all(c.figures["min_shared"] >= parity.EXPLANATION_AGREE for c in checks)
    checks = {c.artifact: c for c in parity.run(small_bundle) if c.kind == "explanation"}
    for name, c in checks.items():
        if name.endswith("-int8") and "dynamic" not in name:
            assert c.passed is None and "not judged" in c.message and "min_shared" in c.figures
        else:
            assert c.passed and c.figures["min_shared"] >= parity.EXPLANATION_AGREE, c.message


def test_a_changed_golden_explanation_fails_parity(small_ngram_bundle, tmp_path):
    import shutil

    from runtime.bundle.directory import open_bundle

    copy = tmp_path / "bundle"
    shutil.copytree(small_ngram_bundle, copy)
    clf = runtime.load(copy, artifact="tflite-float32")
    golden = clf.bundle.golden()
    golden[3]["explanation"]["top"] = [["zzz", 1.0], ["yyy", 1.0], ["xxx", 1.0], ["www", 1.0], ["vvv", 1.0]]
    check = parity.check_explanations(clf, golden)
    assert check.passed is False and golden[3]["id"] in check.message
    assert open_bundle(copy).golden()[3]["explanation"]["top"][0][0] != "zzz"


def test_empty_reviews_are_refused(small_ngram_bundle):
    clf = runtime.load(small_ngram_bundle)
    for call in (clf.predict, lambda t: clf.predict_stream([t]), clf.explain):
        for empty in ("", "  \n\t "):
            with pytest.raises(ValueError, match="empty"):
                call(empty)
    with pytest.raises(ValueError, match="review 1: empty or whitespace-only review"):
        clf.predict_batch(["good", " "])
    with pytest.raises(ValueError, match="k must be"):
        clf.explain("good", k=0)


def test_uncertainty_band(small_ngram_bundle):
    clf = runtime.load(small_ngram_bundle)
    p = clf.predict(NEGATIVE).probability
    assert clf.predict(NEGATIVE, uncertain=(max(p - 0.01, 0.0), min(p + 0.01, 1.0))).label == runtime.UNCERTAIN
    assert clf.predict(NEGATIVE, uncertain=(min(p + 0.01, 1.0), 1.0)).label in clf.labels
    banded = runtime.load(small_ngram_bundle, uncertain=(0.0, 1.0))
    assert {x.label for x in banded.predict_batch([NEGATIVE, "a wonderful film"])} == {runtime.UNCERTAIN}
    with pytest.raises(ValueError, match="uncertain"):
        runtime.load(small_ngram_bundle, uncertain=(0.7, 0.3))


def classify(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtime.classify", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_cli_explains_in_text_and_json(small_ngram_bundle, tmp_path):
    review = tmp_path / "review.txt"
    review.write_text(NEGATIVE, encoding="utf-8")
    proc = classify("--model", str(small_ngram_bundle), "--explain", "3", str(review))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("negative\t") and lines[1].startswith("  why: exact n-gram weights")
    assert lines[2].startswith("  towards positive:") and lines[3].startswith("  towards negative:")
    assert lines[4].startswith("  review: the plot was") and "]-" in lines[4]

    proc = classify("--model", str(small_ngram_bundle), "--explain", "--json", "--uncertain", "0.4:0.6", str(review))
    out = json.loads(proc.stdout)
    assert out["explanation"]["method"] == "exact" and len(out["explanation"]["towards_negative"]) == 10
    assert out["uncertain_band"] == [0.4, 0.6]
    clf = runtime.load(small_ngram_bundle)
    want = clf.explain(NEGATIVE)
    assert out["explanation"]["logit"] == pytest.approx(want.logit, abs=1e-6)
    assert [t["term"] for t in out["explanation"]["towards_negative"]] == [t.text for t in want.negative]


def test_cli_uncertain_lines_and_refusals(small_ngram_bundle, tmp_path):
    lines = tmp_path / "reviews.txt"
    lines.write_text(f"{NEGATIVE}\nA wonderful, moving film.\n", encoding="utf-8")
    proc = classify("--model", str(small_ngram_bundle), "--lines", "--uncertain", "0:1", str(lines))
    assert proc.returncode == 0 and [l.split("\t")[0] for l in proc.stdout.splitlines()] == ["uncertain"] * 2
    for bad in (["--uncertain", "0.6:0.4"], ["--uncertain", "half"], ["--explain", "0"],
                ["--lines", "--jobs", "2", "--explain"]):
        proc = classify("--model", str(small_ngram_bundle), *bad, str(lines))
        assert proc.returncode == 64 and "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_marked_review_marks_every_occurrence(small_ngram_bundle):
    clf = runtime.load(small_ngram_bundle)
    review = "Worst film. The worst acting, the worst plot."
    e = clf.explain(review, k=1)
    shown = marked(review, e)
    strongest = e.top(1)[0]
    assert shown.count(f"[{strongest.text}]") == len(strongest.positions) >= 1


def test_onnx_initializers_match_the_onnx_package(small_ngram_bundle, tmp_path):
    import onnx
    from onnx import numpy_helper

    for name in ("model_float32.onnx", "model_int8.onnx"):
        path = small_ngram_bundle / name
        want = {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
        got = initializers(path, set(want))
        assert set(got) == set(want)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
    broken = tmp_path / "broken.onnx"
    broken.write_bytes((small_ngram_bundle / "model_float32.onnx").read_bytes()[:5000])
    with pytest.raises(OnnxFormatError):
        initializers(broken, {"word_table:0"})


def test_old_engines_explain_every_ngram_artifact(small_ngram_bundle, tmp_path):
    """tflite-runtime 2.14 and onnxruntime 1.17 read every n-gram artifact's weights and agree
    with the float model's explanations, recorded in the compatibility matrix."""
    import shutil

    from export import compat
    from runtime.bundle.directory import open_bundle

    bundle = tmp_path / "bundle"
    shutil.copytree(small_ngram_bundle, bundle)
    compat.run(bundle, ["tflite-runtime==2.14.0", "onnxruntime==1.17.0"])
    manifest = json.loads((bundle / "manifest.json").read_text())
    for name, artifact in manifest["artifacts"].items():
        old = [e for e in artifact["engines"] if e["checked_by"] == "compat"]
        assert len(old) == 1 and old[0]["version"] in ("2.14.0", "1.17.0"), name
        assert old[0]["loads"] and old[0]["matches_golden"] and old[0]["explanations"] is True, (name, old[0])
        import platform

        for e in artifact["engines"]:  # where each result was seen: export's engine and the old one
            assert e["platform"]["machine"] == platform.machine() and e["platform"]["python"].count(".") == 2
    assert f"| {platform.machine()}, " in compat.matrix(open_bundle(bundle))


def test_a_sequence_model_weighs_only_the_words_it_sees(small_lstm_bundle):
    """The LSTM reads the last `length` tokens: a word only before them contributes nothing and is
    not run, so a long review costs no more than one window's words."""
    clf = runtime.load(small_lstm_bundle, artifact="tflite-float32")
    early = "Great, excellent, wonderful. " + "The plot was dull and the acting was bad. " * 400
    assert {"great", "excellent", "wonderful"} <= set(clf.encoder.vocab.index)
    e = clf.explain(early, k=50)
    assert e.terms <= clf.encoder.length
    assert not {"great", "excellent", "wonderful"} & {t.text for t in e.positive + e.negative}
    assert e.probability == pytest.approx(clf.predict(early).probability, abs=1e-6)
