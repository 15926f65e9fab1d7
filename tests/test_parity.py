"""Parity for release engineers: passes on a good bundle, names the culprit otherwise,
and the compatibility matrix across engine versions (own virtual environments)."""

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from conftest import ROOT, corpus_path
from export.convert import FAMILY_ARTIFACTS
from runtime.checks import parity
from runtime.bundle.files import sha256_file


def failures(checks):
    return [c for c in checks if c.passed is False]


def copy(bundle, tmp_path):
    out = tmp_path / "bundle"
    shutil.copytree(bundle, out)
    return out


def edit_manifest(bundle, change):
    m = json.loads((bundle / "manifest.json").read_text())
    change(m)
    (bundle / "manifest.json").write_text(json.dumps(m))


def test_good_bundle_passes_on_every_installed_engine(small_bundle):
    checks = parity.run(small_bundle)
    assert not failures(checks), [c.message for c in failures(checks)]
    golden = {(c.artifact, c.engine) for c in checks if c.kind == "golden" and c.passed}
    assert ("tflite-int8", "litert") in golden and ("onnx-int8", "onnxruntime") in golden
    assert len(golden) == len(FAMILY_ARTIFACTS["multi_hot"])


def test_corpus_agreement_and_accuracy(small_bundle, tmp_path, corpus):
    folder = tmp_path / "reviews"
    for label in ("pos", "neg"):
        (folder / label).mkdir(parents=True)
    test = corpus.splits["test"]
    for i in range(0, 600, 1):
        label = "pos" if test.labels[i * 40] else "neg"
        (folder / label / f"{i}.txt").write_text(test.texts[i * 40], encoding="utf-8")
    checks = parity.run(small_bundle, data=folder)
    corpus_checks = [c for c in checks if c.kind == "corpus"]
    assert len(corpus_checks) == len(FAMILY_ARTIFACTS["multi_hot"]) - 1  # all but the float reference
    assert not failures(checks)
    assert all(c.figures["reviews"] == 600 and "accuracy" in c.figures for c in corpus_checks)
    assert all(c.figures["reference"] == "tflite-float32" for c in corpus_checks)


def test_tampered_artifact_fails_naming_the_file(small_bundle, tmp_path):
    bad = copy(small_bundle, tmp_path)
    (bad / "model_int8.onnx").write_bytes((bad / "model_int8.onnx").read_bytes()[:-10])
    checks = parity.run(bad)
    failed = failures(checks)
    assert [c.artifact for c in failed] == ["onnx-int8"]
    assert "model_int8.onnx" in failed[0].message and "sha256" in failed[0].message
    assert "every other file matches the manifest" in [c.message for c in checks if c.artifact == "bundle"]


def test_changed_golden_value_fails_naming_artifact_engine_and_review(small_bundle, tmp_path):
    bad = copy(small_bundle, tmp_path)
    g = json.loads((bad / "golden.json").read_text())
    g["reviews"][3]["probabilities"]["tflite-float16"] += 0.05
    (bad / "golden.json").write_text(json.dumps(g))
    edit_manifest(bad, lambda m: m["golden"].update(sha256=sha256_file(bad / "golden.json")))
    failed = failures(parity.run(bad))
    assert [(c.artifact, c.engine, c.kind) for c in failed] == [("tflite-float16", "litert", "golden")]
    assert g["reviews"][3]["id"] in failed[0].message and "> tolerance" in failed[0].message


def test_artifact_swapped_for_another_models_fails(small_bundle, small_model, tmp_path):
    """A float32 TFLite of a different model of the same shape, with its sha256 recorded."""
    import keras

    from export import convert

    bad = copy(small_bundle, tmp_path)
    model = keras.models.load_model(small_model / "model.keras")
    w = model.layers[1].get_weights()
    model.layers[1].set_weights([w[0][::-1].copy(), w[1]])
    frozen = convert.frozen_function(convert.serving_function(model, "multi_hot", 2000))
    (bad / "model_float32.tflite").write_bytes(convert.to_tflite(frozen, "float32", None))
    edit_manifest(bad, lambda m: m["artifacts"]["tflite-float32"].update(
        sha256=sha256_file(bad / "model_float32.tflite"), size_bytes=(bad / "model_float32.tflite").stat().st_size))
    failed = failures(parity.run(bad))
    assert [(c.artifact, c.kind) for c in failed] == [("tflite-float32", "golden"), ("tflite-float32", "explanation")]


def test_cli_table_json_junit_and_exit_codes(small_bundle, tmp_path):
    bad = copy(small_bundle, tmp_path)
    (bad / "vocab.txt").write_text("<pad>\n<start>\n<unk>\nx\n")
    run = lambda *a: subprocess.run([sys.executable, "-m", "runtime.parity", *map(str, a)], cwd=ROOT,  # noqa: E731
                                    capture_output=True, text=True, timeout=300)
    good = run(small_bundle, "--json", tmp_path / "p.json", "--junit", tmp_path / "p.xml")
    assert good.returncode == 0, good.stderr
    assert "tflite-int8" in good.stdout and "pass" in good.stdout
    assert len(json.loads((tmp_path / "p.json").read_text())) >= len(FAMILY_ARTIFACTS["multi_hot"]) + 1
    suite = ET.parse(tmp_path / "p.xml").getroot()
    assert suite.get("failures") == "0" and len(suite.findall("testcase")) >= len(FAMILY_ARTIFACTS["multi_hot"]) + 1
    failed = run(bad, "--junit", tmp_path / "bad.xml")
    assert failed.returncode == 3 and "FAIL: " in failed.stderr and "vocab.txt" in failed.stderr
    assert ET.parse(tmp_path / "bad.xml").getroot().get("failures") != "0"
    missing = run(tmp_path / "nothing")
    assert missing.returncode == 4 and missing.stderr.count("\n") == 1 and "not a bundle directory" in missing.stderr
    assert run(small_bundle, "--json", tmp_path / "no" / "dir.json").returncode == 64
    assert run(small_bundle, "--bogus").returncode == 64


def test_missing_engines_are_skipped_or_fail_when_asked_for(small_bundle, monkeypatch):
    """An artifact whose engine is absent says so; an engine asked for but absent, or a run
    that checked nothing, fails."""
    only_onnx = lambda fmt=None: [] if fmt == "tflite" else ["onnxruntime"]  # noqa: E731
    monkeypatch.setattr(parity, "installed_engines", only_onnx)
    checks = parity.run(small_bundle)
    skipped = [c for c in checks if c.passed is None and c.kind == "load"]
    assert {c.artifact for c in skipped} == set(FAMILY_ARTIFACTS["multi_hot"][:4])
    assert all(c.message == "skipped (engine not installed)" for c in skipped) and not failures(checks)
    asked = failures(parity.run(small_bundle, engines=["litert"]))
    assert [c.kind for c in asked] == ["engine", "golden"]
    assert "litert was asked for but is not installed" in asked[0].message
    assert "nothing was checked" in asked[1].message


@pytest.mark.skipif(corpus_path() is None, reason="no corpus")
def test_compatibility_matrix_across_engine_versions(small_bundle, tmp_path):
    """tflite-runtime 2.14 and onnxruntime 1.17 (numpy<2), each in its own virtual environment.

    The word-id models gather and sum instead of a large FULLY_CONNECTED, so tflite-runtime
    2.14 runs every TFLite form of them, per-channel dynamic int8 included.
    """
    from export import compat

    bundle = copy(small_bundle, tmp_path)
    compat.run(bundle, ["tflite-runtime==2.14.0", "onnxruntime==1.17.0"])
    manifest = json.loads((bundle / "manifest.json").read_text())
    table = {name: {(e["engine"], e["version"]): e for e in a["engines"]} for name, a in manifest["artifacts"].items()}
    tfl = ("tflite-runtime", "2.14.0")
    for name in ("tflite-float32", "tflite-float16", "tflite-dynamic-int8", "tflite-int8"):
        assert table[name][tfl]["loads"] and table[name][tfl]["matches_golden"], name
        assert table[name][tfl].get("explanations") is not False, name
        assert manifest["artifacts"][name]["min_versions"]["tflite-runtime"] == "2.14.0"
    for name in ("onnx-float32", "onnx-dynamic-int8", "onnx-int8"):
        rec = table[name][("onnxruntime", "1.17.0")]
        assert rec["loads"] and rec["matches_golden"], name


@pytest.mark.skipif(corpus_path() is None, reason="no corpus")
def test_an_engine_that_cannot_load_the_default_falls_back(small_lstm_bundle, tmp_path):
    """The LSTM's per-channel dynamic int8 needs FULLY_CONNECTED version 12, which tflite-runtime
    2.14 lacks: the recorded matrix makes such a machine fall back from that default."""
    from export import compat

    bundle = copy(small_lstm_bundle, tmp_path)
    compat.run(bundle, ["tflite-runtime==2.14.0"])
    manifest = json.loads((bundle / "manifest.json").read_text())
    table = {name: {(e["engine"], e["version"]): e for e in a["engines"]} for name, a in manifest["artifacts"].items()}
    dyn = table["tflite-dynamic-int8"][("tflite-runtime", "2.14.0")]
    assert dyn["loads"] is False
    assert "FULLY_CONNECTED" in dyn["error"] and "pip install ai-edge-litert" in dyn["error"]
    assert table["tflite-dynamic-int8-compat"][("tflite-runtime", "2.14.0")]["matches_golden"]
    py = compat.env_dir("tflite-runtime==2.14.0") / "bin" / "python"
    edit = json.loads((bundle / "manifest.json").read_text())
    edit["default_artifact"] = "tflite-dynamic-int8"
    (bundle / "manifest.json").write_text(json.dumps(edit))
    out = subprocess.run([str(py), "-m", "runtime.classify", "--json", "--model", str(bundle), "-"], cwd=tmp_path,
                         input="a wonderful film", capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)
    assert row["engine"] == "tflite-runtime" and row["artifact"] != "tflite-dynamic-int8"
    explicit = subprocess.run([str(py), "-m", "runtime.classify", "--model", str(bundle), "--artifact",
                               "tflite-dynamic-int8", "-"], cwd=tmp_path, input="a film", capture_output=True,
                              text=True, timeout=120)
    assert explicit.returncode == 4 and "pip install ai-edge-litert" in explicit.stderr


def test_one_path_for_both_reports_is_a_usage_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "runtime.parity", str(ROOT / "runtime" / "default_bundle"), "--json",
                          str(tmp_path / "r"), "--junit", str(tmp_path / "." / "r")], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 64 and "one report would replace the other" in out.stderr
    assert not (tmp_path / "r").exists()
