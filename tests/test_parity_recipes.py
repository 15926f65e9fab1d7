"""Parity is green on freshly exported bundles of every recipe, and an explanation does not
saturate: every float artifact ends at its logit (export.convert.output_of), so leaving one
word out of a very confident review still moves it."""

import json
import subprocess
import sys

import numpy as np
import pytest

import runtime
from conftest import ROOT


@pytest.mark.parametrize("fixture", ["small_bundle", "small_lstm_bundle", "small_ngram_bundle"])
def test_parity_passes_on_a_fresh_bundle_of_every_recipe(fixture, request):
    bundle = request.getfixturevalue(fixture)
    proc = subprocess.run([sys.executable, "-m", "runtime.parity", str(bundle)], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " 0 failed" in proc.stdout.splitlines()[-1]
    m = json.loads((bundle / "manifest.json").read_text())
    for name, a in m["artifacts"].items():  # the manifest says what each artifact outputs
        assert a["output"] == ("probability" if a["precision"] == "int8" else "logit"), name
    assert "explanation" in proc.stdout


def _saturated_review(clf, texts: list[str]) -> tuple[str, float]:
    """The most negative reviews joined, as many as make the model surest: a logit below -14
    (p < 1e-6), where an engine's float32 sigmoid moves in steps of a few percent."""
    order = np.argsort(clf.predict_proba(texts), kind="stable")
    joined = [" ".join(texts[i] for i in order[:n]) for n in range(2, 16)]
    surest = min(joined, key=lambda t: clf.explain(t, 1).logit)
    return surest, clf.explain(surest, 1).logit


def test_occlusion_on_a_saturated_review_keeps_the_ranking(small_bundle, small_model, corpus):
    """Every float artifact's explanation of a review the model is sure of is the float Keras
    model's (its logit, its top terms), not a ranking of a saturated probability's steps."""
    from export.golden import add_explanations
    from runtime.probability import logits as logit
    from train.model_dir import ModelDir

    reference = runtime.load(small_bundle, artifact="tflite-float32")
    text, surest = _saturated_review(reference, corpus.splits["test"].sample(2000, 11).texts)
    assert surest < -14
    md = ModelDir(small_model)
    gold = [{"text": text, "float_probability": 0.0}]
    add_explanations(md.inference_model(), md.encoder, gold)
    want = [t for t, _ in gold[0]["explanation"]["top"]]
    for name, entry in reference.bundle.artifacts.items():
        clf = runtime.load(small_bundle, artifact=name)
        e = clf.explain(text, 5)
        assert clf.predict(text).probability == e.probability
        if entry.precision == "int8":  # an 8-bit probability: its logit can only be recovered from it
            assert e.logit == pytest.approx(float(logit(clf.backend.run(clf.encoder.model_inputs([text]))[0])))
            continue
        assert e.logit == pytest.approx(gold[0]["explanation"]["logit"], abs=0.05), name
        contributions = [t.contribution for t in e.positive + e.negative]
        assert len(set(np.round(contributions, 4))) >= 5, (name, contributions)
        got = [t.text for t in e.top(5)]
        assert len(set(got) & set(want)) >= 4, (name, got, want)
