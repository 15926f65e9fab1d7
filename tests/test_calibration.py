"""Calibration: ECE and reliability as measured, the temperature decision made on validation,
and a manifest's temperature applied identically on every path and engine."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import runtime
from runtime.checks import parity
from runtime.bundle.directory import open_bundle
from runtime.bundle.files import BundleError
from runtime.probability import tempered, tempered_all
from train.calibration import expected_calibration_error, fit_temperature, reliability, temperature_decision

REVIEWS = ["A wonderful, moving film.", "The worst film I have seen.", "Not good at all.", "It was fine, I guess."]


def test_ece_of_known_cases():
    labels = np.array([0, 1] * 500)
    assert expected_calibration_error(np.where(labels == 1, 1.0, 0.0), labels) == 0.0
    assert expected_calibration_error(np.full(1000, 0.5), labels) == pytest.approx(0.0)
    assert expected_calibration_error(np.full(1000, 0.9), labels) == pytest.approx(0.4)
    r = reliability(np.array([0.05, 0.15, 0.95, 0.95]), np.array([0, 0, 1, 0]))
    assert r["count"] == [1, 1, 2] and r["fraction_positive"] == [0.0, 0.0, 0.5]


def test_fitted_temperature_undoes_overconfidence():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 20000)
    labels = (rng.random(20000) < 1 / (1 + np.exp(-z))).astype(int)
    overconfident = 1 / (1 + np.exp(-2 * z))  # logits doubled: T = 2 undoes it
    assert fit_temperature(overconfident, labels) == pytest.approx(2.0, rel=0.05)
    decision = temperature_decision(overconfident, labels)
    assert decision["applied"] and decision["validation_ece_scaled"] < decision["validation_ece"] / 3
    calibrated = 1 / (1 + np.exp(-z))
    assert not temperature_decision(calibrated, labels)["applied"]


def test_training_reports_calibration(small_model):
    metrics = json.loads((small_model / "metrics.json").read_text())
    c = metrics["calibration"]
    assert 0 < c["test_ece"] < 0.2 and 0 < c["validation_ece"] < 0.2 and 0.25 <= c["fitted_temperature"] <= 4
    assert (small_model / "reliability.png").stat().st_size > 10_000
    assert "expected calibration error" in (small_model / "report.md").read_text()


def with_temperature(bundle, tmp_path, value) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    m = json.loads((copy / "manifest.json").read_text())
    m["calibration"] = {**m.get("calibration", {}), "temperature": value}
    (copy / "manifest.json").write_text(json.dumps(m))
    return copy


def test_manifest_temperature_is_applied_on_every_path(small_ngram_bundle, tmp_path):
    base = runtime.load(small_ngram_bundle, artifact="tflite-float32")
    assert base.bundle.manifest.calibration["temperature"] == base.temperature
    hot = runtime.load(with_temperature(small_ngram_bundle, tmp_path, 2.0), artifact="tflite-float32")
    raw = base.backend.run(base.encoder.model_inputs(REVIEWS))
    single = np.array([hot.predict(t).probability for t in REVIEWS], dtype=np.float32)
    np.testing.assert_array_equal(single, tempered_all(raw.tolist(), 2.0))
    assert np.all(np.abs(single - 0.5) < np.abs(raw - 0.5))  # T = 2 pulls every answer towards 0.5
    np.testing.assert_array_equal(single, hot.predict_proba(REVIEWS))
    np.testing.assert_array_equal(single, [hot.predict_stream([t[:5], t[5:]]).probability for t in REVIEWS])
    assert hot.explain(REVIEWS[2]).probability == single[2]
    assert any(c.kind == "golden" and c.passed is False for c in parity.run(hot.bundle.root))


def test_bad_temperature_is_refused_naming_the_field(small_ngram_bundle, tmp_path):
    for bad in (0, -1.0, 100, "2"):
        shutil.rmtree(tmp_path / "bundle", ignore_errors=True)
        with pytest.raises(BundleError, match="calibration.temperature"):
            open_bundle(with_temperature(small_ngram_bundle, tmp_path, bad))


def test_tempered_matches_its_definition():
    for p in (1e-9, 0.01, 0.3, 0.5, 0.99, 1.0):
        for t in (0.5, 1.0, 2.0):
            q = min(max(p, 1e-7), 1 - 1e-7)
            want = 1 / (1 + np.exp(-np.log(q / (1 - q)) / t))
            assert tempered(p, t) == pytest.approx(want, abs=1e-7)
