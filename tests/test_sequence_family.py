"""The sequence (Embedding + LSTM) family from training to every engine, as the runtime sees it."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT, assert_single_batch_and_stream_agree_with_golden
from export.convert import FAMILY_ARTIFACTS
from runtime.checks import parity


def test_every_sequence_artifact_is_exported_and_validated(small_lstm_bundle):
    m = json.loads((small_lstm_bundle / "manifest.json").read_text())
    assert list(m["artifacts"]) == FAMILY_ARTIFACTS["sequence"]
    assert m["input"]["dtype"] == "int32" and m["input"]["features"]["family"] == "sequence"
    assert m["input"]["features"]["length"] == 64 and m["input"]["features"]["padding"] == "pre"
    assert m["validation_criteria"]["float32_max_abs_diff"] == 1e-4
    for name, a in m["artifacts"].items():
        v = a["validation"]
        if a["precision"] == "float32":
            assert v["max_abs_diff"] <= 1e-4, name
            assert a["golden_tolerance"] == 1e-4, name
        else:
            assert v["label_agreement"] >= 0.99, name
        if a["format"] == "tflite":
            assert a["batch_invariant"] is False  # fixed batch of 1: run row by row
            assert b"Flex" not in (small_lstm_bundle / a["file"]).read_bytes(), f"{name} needs TF select ops"


@pytest.mark.parametrize("artifact", FAMILY_ARTIFACTS["sequence"])
def test_single_batch_and_stream_agree_with_golden(small_lstm_bundle, artifact):
    assert_single_batch_and_stream_agree_with_golden(small_lstm_bundle, artifact)


def test_parity_passes_with_corpus_checks(small_lstm_bundle, corpus, tmp_path):
    folder = tmp_path / "reviews" / "pos"
    folder.mkdir(parents=True)
    (tmp_path / "reviews" / "neg").mkdir()
    test = corpus.splits["test"]
    for i in range(0, 12000, 40):
        (tmp_path / "reviews" / ("pos" if test.labels[i] else "neg") / f"{i}.txt").write_text(test.texts[i])
    checks = parity.run(small_lstm_bundle, data=tmp_path / "reviews")
    assert not [c for c in checks if c.passed is False], [c.message for c in checks if c.passed is False]
    assert sum(c.kind == "corpus" for c in checks) == len(FAMILY_ARTIFACTS["sequence"]) - 1


def test_cli_classifies_with_a_sequence_bundle(small_lstm_bundle, tmp_path):
    review = tmp_path / "r.txt"
    review.write_text("A wonderful, moving film. I loved it.")
    out = subprocess.run([sys.executable, "-m", "runtime.classify", "--json", "--model", str(small_lstm_bundle),
                          str(review)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)
    assert row["artifact"] == "tflite-float32" and 0 <= row["probability"] <= 1 and row["known_words"] > 3


def test_benchmark_quick_mode_on_a_sequence_bundle(small_lstm_bundle, small_lstm_model, tmp_path):
    from conftest import corpus_path

    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--bundle", str(small_lstm_bundle), "--model-dir",
                           str(small_lstm_model), "--data", str(corpus_path()), "--out", str(out), "--quick"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads((out / "benchmark.json").read_text())
    for name in FAMILY_ARTIFACTS["sequence"]:
        assert any(k.startswith(f"runtime {name} @") for k in r["latency_e2e"]), name
        assert 0.5 < r["accuracy"][next(k for k in r["accuracy"] if k.startswith(name + " @"))]["accuracy"] <= 1
    assert "tutorial pipeline" not in r["floors"]  # a multi-hot peer has no meaning for sequences
    assert r["cold_start"]["runtime.classify"]["output"].split("\t")[0] in ("positive", "negative")
