"""Export: every artifact, its manifest entry, the golden set and the validation gate."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, default_signals
from export.convert import ARTIFACTS, FAMILY_ARTIFACTS
from runtime.engines.load import load_backend
from runtime.bundle.directory import open_bundle
from runtime.bundle.files import BundleError, sha256_file
from runtime.probability import tempered_all


def test_bundle_has_every_artifact_matching_its_manifest(small_bundle):
    b = open_bundle(small_bundle)
    assert list(b.artifacts) == FAMILY_ARTIFACTS["multi_hot"] == [n for n in ARTIFACTS if not n.endswith("-compat")]
    assert b.verify_all() == []
    m = json.loads((small_bundle / "manifest.json").read_text())
    assert m["input"]["features"] == {"family": "multi_hot", "vocab_size": 2000}
    assert m["input"]["name"] == "ids" and m["input"]["dtype"] == "int32"
    assert m["labels"] == ["negative", "positive"] and m["threshold"] == 0.5
    for dist in ("tensorflow-cpu", "tf2onnx", "onnx", "onnxruntime"):
        assert dist in m["producer"]
    for name, a in m["artifacts"].items():
        assert a["min_versions"] == {e["engine"]: e["version"] for e in a["engines"]}
        assert a["size_bytes"] == (small_bundle / a["file"]).stat().st_size
        assert a["sha256"] == sha256_file(small_bundle / a["file"])
        v = a["validation"]
        assert v["validation_reviews"] == 2000 and v["test_reviews"] == 2000
        if a["precision"] == "float32":
            assert v["max_abs_diff"] <= 1e-5
        else:
            assert v["label_agreement"] >= 0.99 and v["test_accuracy_delta"] >= -0.005
    sizes = {n: a["size_bytes"] for n, a in m["artifacts"].items()}
    assert sizes["tflite-int8"] < sizes["tflite-float16"] < sizes["tflite-float32"]


def test_every_artifact_reproduces_its_golden_probabilities(small_bundle):
    b = open_bundle(small_bundle)
    golden = b.golden()
    assert 25 <= len(golden) <= 40
    kinds = {g["kind"] for g in golden}
    assert {"short", "long", "clear", "borderline"} <= kinds
    x = b.encoder().model_inputs([g["text"] for g in golden])
    for name, a in b.artifacts.items():
        backend = load_backend(small_bundle / a.file, a.format, batch_invariant=a.batch_invariant, output=a.output)
        got = tempered_all(backend.run(x).tolist(), b.manifest.temperature)  # goldens carry the temperature
        want = np.array([g["probabilities"][name] for g in golden])
        assert np.abs(got - want).max() <= a.golden_tolerance / 10, name
        floats = np.array([g["float_probability"] for g in golden])
        if a.is_float32:
            assert np.abs(got - floats).max() <= 1e-5, name


def test_tampered_artifact_and_edited_vocabulary_are_detected(small_bundle, tmp_path):
    bad = tmp_path / "bundle"
    shutil.copytree(small_bundle, bad)
    art = open_bundle(bad).artifacts["tflite-int8"].file
    data = bytearray((bad / art).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / art).write_bytes(bytes(data))
    vocab = (bad / "vocab.txt").read_text(encoding="utf-8").replace("\ngood\n", "\ngreat-ish\n", 1)
    (bad / "vocab.txt").write_text(vocab, encoding="utf-8")
    problems = open_bundle(bad).verify_all()
    assert any(p.artifact == "tflite-int8" and art in p.message and "sha256" in p.message for p in problems)
    assert any(p.artifact is None and "vocab.txt" in p.message and "sha256" in p.message for p in problems)
    with pytest.raises(BundleError, match="vocab.txt"):
        open_bundle(bad).vocabulary()


def test_gate_rejects_disagreeing_artifacts_names_all_and_publishes_nothing(small_model, corpus, tmp_path,
                                                                          monkeypatch):
    """Inject float16 and int8 artifacts converted from a perturbed model: validation must fail
    and name both, after converting every artifact."""
    import keras

    from export import convert, exporter
    from export.validate import ValidationError

    real_to_tflite = convert.to_tflite

    def corrupted(frozen, precision, calibration, per_tensor=False):
        if precision not in ("float16", "int8"):
            return real_to_tflite(frozen, precision, calibration, per_tensor)
        model = keras.models.load_model(small_model / "model.keras")
        w = model.layers[-1].get_weights()
        model.layers[-1].set_weights([-w[0], w[1]])
        serve = convert.serving_function(model, "multi_hot", 2000)
        return real_to_tflite(convert.frozen_function(serve), precision, calibration)

    monkeypatch.setattr(convert, "to_tflite", corrupted)
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "previous.txt").write_text("the last good bundle")
    with pytest.raises(ValidationError, match=r"tflite-float16 failed validation: label agreement 0\.\d+ < 0\.99") as e:
        exporter.export_bundle(small_model, out, corpus, artifacts=["tflite-float32", "tflite-float16", "tflite-int8"],
                               validation_size=2000, test_limit=500)
    assert "tflite-int8 failed validation" in str(e.value) and "tflite-float32" not in str(e.value)
    assert [p.name for p in out.iterdir()] == ["previous.txt"]
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]


def test_a_check_before_publishing_that_raises_discards_the_bundle(small_model, tmp_path, corpus):
    """How a Ctrl-C swallowed on the way is honoured: export_bundle's last call before it publishes."""
    from export import exporter

    calls = []

    def interrupted():
        calls.append(sorted(p.name for p in tmp_path.iterdir()))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        exporter.export_bundle(small_model, tmp_path / "bundle", corpus, artifacts=["tflite-float32"],
                               validation_size=500, test_limit=200, before_publishing=interrupted)
    assert len(calls) == 1 and any(".staging-" in name for name in calls[0])  # called with the bundle staged
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_vocabulary_that_does_not_fit_the_model_is_refused(small_model, tmp_path, corpus):
    from export.exporter import export_bundle
    from runtime.encoding.vocab import Vocabulary
    from train.model_dir import ModelDirError

    bad = tmp_path / "model"
    shutil.copytree(small_model, bad)
    v = Vocabulary.load(bad / "vocab.txt")
    Vocabulary(v.tokens[:-10]).save(bad / "vocab.txt")
    with pytest.raises(ModelDirError, match=r"config.json: the features index 2000 words but the vocabulary has 1990"):
        export_bundle(bad, tmp_path / "out", corpus, artifacts=["tflite-float32"])
    assert not (tmp_path / "out").exists()


def test_export_cli_errors_are_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "export", str(tmp_path / "nomodel"), "--out", str(tmp_path / "b"),
                          "--data", str(tmp_path / "x.tar.gz")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 4 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("error: ")


def test_missing_model_directory(tmp_path, corpus):
    from export.exporter import export_bundle
    from train.model_dir import ModelDirError

    with pytest.raises(ModelDirError, match="not a model directory"):
        export_bundle(tmp_path / "none", tmp_path / "out", corpus)
    (tmp_path / "m").mkdir()
    with pytest.raises(ModelDirError, match="model.keras: missing"):
        export_bundle(tmp_path / "m", tmp_path / "out", corpus)


def test_golden_file_is_in_the_manifest(small_bundle):
    m = json.loads((small_bundle / "manifest.json").read_text())
    assert m["golden"]["sha256"] == sha256_file(small_bundle / "golden.json")


def test_float32_limit_is_per_feature_family():
    """An LSTM's recurrent rounding may reach 1e-5 on some CPUs; a one-layer-deep multi-hot
    product may not."""
    from export.validate import failures

    figures = {"max_abs_diff": 3e-6, "test_max_abs_diff": 2e-5}
    assert failures(True, figures, "sequence") == []
    assert failures(True, figures, "multi_hot") == ["max |p - p_float| 2e-05 > 1e-05"]
    assert failures(True, {"max_abs_diff": 2e-4, "test_max_abs_diff": 0.0}, "sequence") == [
        "max |p - p_float| 0.0002 > 0.0001"]


def test_ctrl_c_during_export_is_one_line_and_leaves_nothing(small_model, tmp_path):
    import signal
    import time

    from conftest import corpus_path

    out = tmp_path / "bundle"
    inherited = signal.getsignal(signal.SIGINT)
    # As from a shell: Ctrl-C's default action, whatever this test process was left with (a
    # child inherits an ignored SIGINT, and Python then never raises KeyboardInterrupt).
    proc = subprocess.Popen([sys.executable, "-m", "export", str(small_model), "--out", str(out), "--data",
                             str(corpus_path()), "--validation-size", "2000", "--test-limit", "500"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_signals)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(tmp_path.glob(".bundle.staging-*")) and proc.poll() is None:
        time.sleep(0.05)
    staged = bool(list(tmp_path.glob(".bundle.staging-*")))
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert staged, f"export ended before its staging directory was seen: {err[-500:]}"
    assert proc.returncode == 130 and "Traceback" not in err, (proc.returncode, inherited, err[-500:])
    assert err.strip().splitlines()[-1] == f"interrupted; nothing was published to {out}"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_ctrl_c_that_native_code_turns_into_another_error_is_still_an_interruption(monkeypatch, capsys, tmp_path,
                                                                                   stop_handlers):
    """TensorFlow's C++ code can turn the KeyboardInterrupt raised inside it into a bare
    TypeError (seen in CI): after a Ctrl-C, whatever ends the export is the interruption."""
    import signal

    import export.__main__ as cli

    def interrupted_inside_native_code(args, stops):
        try:
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)  # what Ctrl-C runs
        except KeyboardInterrupt:
            raise TypeError() from None

    monkeypatch.setattr(cli, "_export", interrupted_inside_native_code)
    assert cli.main([str(tmp_path / "model"), "--out", str(tmp_path / "bundle")]) == 130
    assert capsys.readouterr().err.strip() == f"interrupted; nothing was published to {tmp_path / 'bundle'}"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    def broken(args, stops):
        raise TypeError("a real bug")

    monkeypatch.setattr(cli, "_export", broken)
    with pytest.raises(TypeError, match="a real bug"):
        cli.main([str(tmp_path / "model"), "--out", str(tmp_path / "bundle")])



def test_ctrl_c_swallowed_by_a_finalizer_prints_no_traceback_and_publishes_nothing(monkeypatch, capsys, tmp_path,
                                                                                   stop_handlers):
    """A KeyboardInterrupt raised inside a finalizer is not raised: Python reports it as
    "Exception ignored" with a traceback (seen in CI) and goes on. After a Ctrl-C such reports
    are dropped, and the export checks for the Ctrl-C before it publishes."""
    import gc
    import signal

    import export.__main__ as cli

    class Finalized:
        def __del__(self):
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)  # Ctrl-C lands inside a finalizer

    published = []

    def export_that_goes_on(args, stops):
        Finalized()
        gc.collect()
        stops.check()  # what export_bundle's before_publishing does
        published.append(args.out)
        return 0

    monkeypatch.setattr(cli, "_export", export_that_goes_on)
    hook = sys.unraisablehook
    assert cli.main([str(tmp_path / "model"), "--out", str(tmp_path / "bundle")]) == 130
    assert capsys.readouterr().err.strip() == f"interrupted; nothing was published to {tmp_path / 'bundle'}"
    assert not published and sys.unraisablehook is hook

    def finalizer_error_without_ctrl_c(args, stops):  # a real error in a finalizer is still reported
        class Broken:
            def __del__(self):
                raise ValueError("a real finalizer bug")
        Broken()
        gc.collect()
        return 0

    monkeypatch.setattr(cli, "_export", finalizer_error_without_ctrl_c)
    assert cli.main([str(tmp_path / "model"), "--out", str(tmp_path / "bundle")]) == 0
    err = capsys.readouterr().err
    assert "Exception ignored" in err and "a real finalizer bug" in err
