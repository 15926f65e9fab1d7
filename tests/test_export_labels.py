"""Export of N-label models (N > 2) trained on a user's own data: every artifact form, the
gate's figures, the format-6 manifest and golden set, and reading the user's files again.

The conversions and the manifest checks need only this package and the engines; the
``python -m export`` test runs every artifact through the runtime's N-label ``Classifier``.
"""

import copy
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, ticket_rows, write_csv
from runtime.bundle.files import BundleError
from runtime.bundle.manifest import Manifest, _check_golden
from runtime.engines.base import LOGIT

LABELS = ["billing", "delivery", "login", "refund", "warranty"]


def _texts(rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
    return ticket_rows(rng, n, LABELS, 12)


def _write(path, rows) -> None:
    write_csv(path, rows)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A five-label n-gram model trained by ``python -m train`` from a CSV, with a test CSV."""
    root = tmp_path_factory.mktemp("labels")
    rng = np.random.default_rng(7)
    _write(root / "train.csv", _texts(rng, 1500))
    _write(root / "test.csv", _texts(rng, 400))
    out = root / "model"
    done = subprocess.run([sys.executable, "-m", "train", "--recipe", "ngram", "--data", str(root / "train.csv"),
                           "--test", str(root / "test.csv"), "--out", str(out), "--time-budget", "5", "--max-epochs", "8",
                           "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / "config.json").read_text())["labels"] == LABELS
    return out


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _run(path, fmt, x):
    """The artifact's raw output, one text at a time, dequantized."""
    if fmt == "onnx":
        import onnxruntime as ort

        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return np.concatenate([s.run(None, {s.get_inputs()[0].name: x[i:i + 1]})[0] for i in range(len(x))])
    from ai_edge_litert.interpreter import Interpreter

    it, rows = Interpreter(model_path=str(path)), []
    for i in range(len(x)):
        it.resize_tensor_input(it.get_input_details()[0]["index"], x[i:i + 1].shape)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x[i:i + 1])
        it.invoke()
        o = it.get_output_details()[0]
        v = it.get_tensor(o["index"])
        if o["dtype"] == np.int8:
            scale, zero = o["quantization"]
            v = (v.astype(np.float32) - zero) * scale
        rows.append(v)
    return np.concatenate(rows)


def test_every_form_gives_the_keras_models_n_probabilities(model_dir, tmp_path):
    """Each of the seven forms, run directly on its engine: (n, N) outputs whose softmax (float
    forms end at the logits) matches Keras's to 1e-5 (float32) or in top label (the others)."""
    from export import convert, exporter, validate
    from train.model_dir import ModelDir

    md = ModelDir(model_dir)
    corpus = exporter.load_corpus(model_dir)
    model, enc = md.inference_model(), md.encoder
    texts = corpus.splits["test"].texts
    want = validate.softmax(validate.keras_logits(model, enc, texts))
    x = enc.model_inputs(texts)
    calibration = enc.model_inputs(corpus.splits["train"].texts[:300])
    names = convert.FAMILY_ARTIFACTS[md.family]
    assert len(names) == 7
    for name in names:
        spec = convert.ARTIFACTS[name]
        logit = convert.output_of(spec) == LOGIT
        path = tmp_path / spec.file
        serve = convert.serving_function(model, md.family, enc.table_rows, None,
                                         convert.portable_float(md.family, spec), logit)
        if spec.format == "tflite":
            path.write_bytes(convert.to_tflite(convert.frozen_function(serve), spec.precision, calibration))
        elif spec.is_float32:
            convert.to_onnx(serve, path, enc.table_rows, convert.output_of(spec))
        else:
            convert.to_onnx(serve, tmp_path / "float.onnx", enc.table_rows, convert.output_of(spec))
            convert.quantize_onnx(tmp_path / "float.onnx", path, spec.precision, calibration, enc.table_rows)
        out = _run(path, spec.format, x).astype(np.float64)
        assert out.shape == (len(texts), len(LABELS)), name
        got = _softmax(out) if logit else out
        if spec.is_float32:
            assert np.abs(got - want).max() <= validate.FLOAT32_MAX_DIFF[md.family], name
        else:
            assert np.mean(got.argmax(1) == want.argmax(1)) >= validate.MIN_AGREEMENT, name


def test_the_user_files_must_be_the_ones_trained_on(model_dir, tmp_path):
    from export.exporter import load_corpus
    from train.model_dir import ModelDirError

    changed = tmp_path / "model"
    shutil.copytree(model_dir, changed)
    config = json.loads((changed / "config.json").read_text())
    config["data"]["files"]["train"]["sha256"] = "0" * 64
    (changed / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelDirError, match="changed since the model was trained"):
        load_corpus(changed)
    assert load_corpus(model_dir).labels == tuple(LABELS)


def _n_label_manifest() -> dict:
    """The shipped (binary) manifest made into a format-6, three-label one."""
    data = json.loads((ROOT / "runtime" / "default_bundle" / "manifest.json").read_text())
    data.update(format_version=6, labels=["a", "b", "c"],
                output={"name": "probabilities", "dtype": "float32", "shape": [None, 3]})
    del data["threshold"]
    return data


def test_manifest_labels_and_version():
    shipped = json.loads((ROOT / "runtime" / "default_bundle" / "manifest.json").read_text())
    binary = Manifest.from_dict(copy.deepcopy(shipped), "m")
    assert binary.to_dict()["format_version"] == 5 and binary.threshold == shipped["threshold"]
    many = Manifest.from_dict(_n_label_manifest(), "m")
    assert many.labels == ("a", "b", "c") and many.threshold is None
    assert many.to_dict()["format_version"] == 6 and "threshold" not in many.to_dict()
    for change, field in (({"format_version": 5}, "labels"), ({"labels": ["a", "b", "a"]}, "labels"),
                          ({"labels": ["a", "", "c"]}, "labels"), ({"labels": [f"l{i}" for i in range(1001)]}, "labels"),
                          ({"output": {"shape": [None, 4]}}, "output.shape")):
        with pytest.raises(BundleError, match=re.escape(f"field '{field}'")):
            Manifest.from_dict({**_n_label_manifest(), **change}, "m")
    shipped.pop("threshold")
    with pytest.raises(BundleError, match="field 'threshold' is missing"):
        Manifest.from_dict(shipped, "m")  # a binary manifest keeps its threshold


def test_n_label_golden_checked():
    review = {"id": "1", "kind": "clear", "label": "b", "text": "t", "float_probabilities": [0.1, 0.8, 0.1],
              "probabilities": {"x": [0.1, 0.8, 0.1]},
              "explanation": {"method": "exact", "label": "b", "logit": 2.0, "top": [["t", 1.0]]}}
    labels = ("a", "b", "c")
    assert _check_golden({"reviews": [review]}, "g", ["x"], 1, labels) == [review]
    for path, value, field in ((("probabilities", "x"), [0.5, 0.5], "reviews[0].probabilities.x"),
                               (("probabilities", "x"), 0.5, "reviews[0].probabilities.x"),
                               (("float_probabilities",), [0.1, 2.0, 0.1], "reviews[0].float_probabilities"),
                               (("label",), "z", "reviews[0].label"),
                               (("explanation", "label"), "z", "reviews[0].explanation.label")):
        bad = copy.deepcopy(review)
        target = bad
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        with pytest.raises(BundleError, match=re.escape(f"field '{field}'")):
            _check_golden({"reviews": [bad]}, "g", ["x"], 1, labels)


def test_python_m_export_publishes_seven_gated_forms(model_dir, tmp_path):
    """``python -m export MODEL --out BUNDLE`` on a model trained with ``--data``: the seven
    forms pass the gate on the user's test file, and parity holds on the golden set."""
    import runtime
    from runtime.checks import parity

    bundle = tmp_path / "bundle"
    done = subprocess.run([sys.executable, "-m", "export", str(model_dir), "--out", str(bundle)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["format_version"] == 6 and manifest["labels"] == LABELS and "threshold" not in manifest
    assert manifest["output"]["shape"] == [None, len(LABELS)] and len(manifest["artifacts"]) == 7
    criteria = manifest["validation_criteria"]
    for name, a in manifest["artifacts"].items():
        v = a["validation"]
        assert v["test_reviews"] == 400, name
        if a["precision"] == "float32":
            assert max(v["max_abs_diff"], v["test_max_abs_diff"]) <= criteria["float32_max_abs_diff"], name
        else:
            assert min(v["label_agreement"], v["test_label_agreement"]) >= criteria["min_label_agreement"], name
            assert v["test_accuracy_delta"] >= -criteria["max_test_accuracy_drop"], name
    golden = json.loads((bundle / "golden.json").read_text())["reviews"]
    assert {g["kind"] for g in golden} >= {"clear", "borderline"}
    for g in golden:
        assert len(g["float_probabilities"]) == len(LABELS) and abs(sum(g["float_probabilities"]) - 1) < 1e-6
        assert g["explanation"]["label"] == LABELS[int(np.argmax(g["float_probabilities"]))]
        assert set(g["probabilities"]) == set(manifest["artifacts"])
    # the runtime side: N columns in label order, and every parity check passing
    clf = runtime.load(bundle)
    assert clf.labels == tuple(LABELS)
    probs = clf.predict_proba([g["text"] for g in golden])
    assert probs.shape == (len(golden), len(LABELS))
    checks = parity.run(bundle)
    assert [c.message for c in checks if c.passed is False] == []
    for kind in ("golden", "explanation"):
        assert {c.artifact for c in checks if c.kind == kind and c.passed} == set(manifest["artifacts"])
    # explanations are of the recorded label: another label's top terms differ
    g = next(g for g in golden if g["kind"] == "clear")
    other = next(label for label in LABELS if label != g["explanation"]["label"])
    assert {t.text for t in clf.explain(g["text"], 5, label=other).top(5)} != {t for t, _ in g["explanation"]["top"]}


def test_logit_model_strips_a_final_softmax():
    import keras

    from export.convert import logit_model

    x = keras.Input((7,))
    h = keras.layers.Dense(4, activation="relu")(x)
    split = keras.Model(x, keras.layers.Activation("softmax")(keras.layers.Dense(3, name="logits")(h)))
    fused = keras.Model(x, keras.layers.Dense(3, activation="softmax")(h))
    rows = np.random.default_rng(0).normal(size=(16, 7)).astype(np.float32)
    for model in (split, fused):
        z = logit_model(model)(rows).numpy()
        assert z.shape == (16, 3)
        np.testing.assert_allclose(_softmax(z.astype(np.float64)), model(rows).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="sigmoid or softmax"):
        logit_model(keras.Model(x, keras.layers.Dense(3)(h)))


def test_goldens_are_chosen_by_top1_margin():
    from export.golden import PER_KIND, choose

    rng = np.random.default_rng(3)
    probs = _softmax(rng.normal(scale=3, size=(200, 4)))
    texts = ["word " * (50 + i % 7) for i in range(200)]  # lengths that leave clear and borderline to the margin
    gold = choose(texts, [f"t{i}" for i in range(200)], rng.integers(4, size=200), probs, None, names=tuple("abcd"))
    top2 = np.sort(probs, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    by_id = {g["id"]: g for g in gold}
    clear = [g for g in gold if g["kind"] == "clear"]
    borderline = [g for g in gold if g["kind"] == "borderline"]
    assert clear and borderline
    assert min(margin[int(g["id"][1:])] for g in clear) >= np.sort(margin)[-2 * PER_KIND]
    assert max(margin[int(g["id"][1:])] for g in borderline) <= np.sort(margin)[2 * PER_KIND]
    for rid, g in by_id.items():
        assert g["float_probabilities"] == pytest.approx(probs[int(rid[1:])].tolist()) and g["label"] in "abcd"


def test_runtime_and_command_line_on_an_n_label_bundle(model_dir, tmp_path):
    """What an app and a user see of a five-label bundle: the top label and every label's
    probability, per-label exact explanations, --top, --json, --threshold refused, --uncertain
    on the top probability, worker processes and pickling giving the same answers."""
    import pickle

    import runtime
    from runtime.scorer import ReviewScorer

    bundle = tmp_path / "bundle"
    done = subprocess.run([sys.executable, "-m", "export", str(model_dir), "--out", str(bundle), "--artifacts",
                           "tflite-int8,onnx-float32"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    texts = [t for t, _ in _texts(np.random.default_rng(11), 40)]
    for artifact in ("tflite-int8", "onnx-float32"):
        clf = runtime.load(bundle, artifact=artifact)
        probs = clf.predict_proba(texts)
        assert probs.shape == (40, 5) and np.allclose(probs.sum(axis=1), 1.0, atol=0.02)
        for text, row in zip(texts[:10], probs):
            p = clf.predict(text)
            assert p.label == LABELS[int(np.argmax(row))] and p.probability == pytest.approx(float(row.max()))
            assert list(p.probabilities) == LABELS and p.top(2)[0] == (p.label, p.probability)
            assert p.top(2)[1][1] <= p.probability
        assert [q.label for q in clf.predict_batch(texts)] == [LABELS[i] for i in np.argmax(probs, axis=1)]
        with pytest.raises(ValueError, match="two labels"):
            clf.predict(texts[0], threshold=0.5)
        assert pickle.loads(pickle.dumps(clf)).predict(texts[1]) == clf.predict(texts[1])
    with pytest.raises(ValueError, match="two labels"):
        runtime.load(bundle, threshold=0.5)
    clf = runtime.load(bundle, artifact="onnx-float32")
    for label in LABELS:  # exact: the label's logit is its bias plus every contribution
        e = clf.explain(texts[2], 3, label=label)
        assert e.label == label and e.logit == pytest.approx(e.bias + e.total, abs=1e-5)
        assert e.probability == pytest.approx(clf.predict(texts[2]).probabilities[label], abs=1e-6)
    assert clf.explain(texts[2]).label == clf.predict(texts[2]).label
    band = runtime.load(bundle, artifact="onnx-float32", uncertain=(0.0, 0.999))
    assert all(p.label == "uncertain" for p in band.predict_batch(texts) if p.probability <= 0.999)
    scored = ReviewScorer(bundle, artifact="onnx-float32")({"text": np.array(texts[:5] + [None], dtype=object)})
    assert scored["probabilities"].shape == (6, 5) and scored["label"][5] is None
    assert list(scored["label"][:5]) == [clf.predict(t).label for t in texts[:5]]
    scored = ReviewScorer(bundle, artifact="onnx-float32", uncertain=(0.0, 0.999))({"text": np.array(texts[:5])})
    assert list(scored["label"]) == [band.predict(t).label for t in texts[:5]]

    lines = tmp_path / "texts.txt"
    lines.write_text("\n".join(texts) + "\n", encoding="utf-8")

    def command(*args):
        return subprocess.run([sys.executable, "-m", "runtime.classify", "--model", str(bundle), *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)

    top = command("--lines", "--top", "2", str(lines))
    assert top.returncode == 0, top.stderr
    first = top.stdout.splitlines()[0].split("\t")
    assert len(first) == 5 and first[0] in LABELS and float(first[1]) >= float(first[3])
    js = command("--lines", "--json", str(lines))
    record = json.loads(js.stdout.splitlines()[0])
    assert list(record["probabilities"]) == LABELS and record["label"] == max(record["probabilities"],
                                                                                key=record["probabilities"].get)
    refused = command("--threshold", "0.5", str(lines))
    assert refused.returncode == 64 and len(refused.stderr.strip().splitlines()) == 1
    assert "two labels" in refused.stderr and "Traceback" not in refused.stderr
    assert command("--lines", "--jobs", "2", str(lines)).stdout == command("--lines", str(lines)).stdout


def test_outputs_never_replace_inputs_or_other_directories(model_dir, tmp_path):
    """train and export replace --out whole: an --out that is an input, holds one, or is a
    directory of another kind is refused in one line (64), and nothing is touched."""
    data = tmp_path / "data.csv"
    _write(data, _texts(np.random.default_rng(3), 60))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    cases = [
        (["-m", "train", "--data", str(data), "--out", str(data)], data),
        (["-m", "train", "--data", str(data), "--out", str(tmp_path)], data),
        (["-m", "train", "--data", str(data), "--out", str(mine)], mine / "notes.txt"),
        (["-m", "export", str(model_dir), "--out", str(model_dir)], model_dir / "config.json"),
        (["-m", "export", str(model_dir), "--out", str(model_dir.parent)], model_dir / "config.json"),
        (["-m", "export", str(model_dir), "--out", str(mine)], mine / "notes.txt"),
    ]
    for args, kept in cases:
        before = kept.read_bytes()
        done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 64, (args, done.stderr[-500:])
        assert len(done.stderr.strip().splitlines()) == 1 and "--out" in done.stderr, done.stderr
        assert kept.read_bytes() == before


def test_label_names_that_would_break_the_output_are_refused(tmp_path):
    """A label with a tab or line break, or named as the command's own words, is refused
    when read (4), and in a manifest (BundleError naming the field)."""
    from runtime.bundle.manifest import label_problem

    assert label_problem(" padded") and label_problem("") and label_problem("a\x85b")
    assert label_problem("NUM") is None and label_problem("négatif") is None
    for bad in ("a\tb", "uncertain", "error", "z" * 201):  # (a CSV field may hold a line break too)
        assert label_problem(bad), bad
        rows = [(f"text {i} words", bad if i % 2 else "fine") for i in range(40)]
        data = tmp_path / "bad.csv"
        _write(data, rows)
        done = subprocess.run([sys.executable, "-m", "train", "--data", str(data), "--out", str(tmp_path / "m")],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 4 and len(done.stderr.strip().splitlines()) == 1, (bad, done.stderr[-500:])
        assert not (tmp_path / "m").exists()
    manifest = _n_label_manifest()
    manifest["labels"][2] = "uncertain"
    with pytest.raises(BundleError, match="labels"):
        Manifest.from_dict(manifest, "manifest.json")
    manifest = _n_label_manifest()
    manifest["threshold"] = 0.5
    with pytest.raises(BundleError, match="threshold"):
        Manifest.from_dict(manifest, "manifest.json")
