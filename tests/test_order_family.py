"""The order-aware family (ngram-sequence): its encoder, word vectors, Keras model, export and
runtime, on small synthetic sets (the TREC and SST-2 figures come from the benchmark)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime.encoding.features import NGRAM_SEQUENCE, NgramSequenceEncoder, encoder_from_spec, pad_word_ids
from runtime.encoding.vocab import UNK_ID, Vocabulary

ROOT = Path(__file__).resolve().parents[1]
WORDS = "the a film movie plot actor great good bad awful not very really quite it was is and but".split()


def _texts(rng, n: int) -> list[str]:
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 30)))) + rng.choice([" .", " !", ""])
            for _ in range(n)]


@pytest.fixture(scope="module")
def encoder():
    rng = np.random.default_rng(3)
    vocab = Vocabulary.build(_texts(rng, 200), 1000)
    return NgramSequenceEncoder(vocab, 97, 12)


def test_every_road_gives_the_same_row(encoder):
    rng = np.random.default_rng(4)
    texts = _texts(rng, 50) + ["unknownword great", "x", "not good at all"]
    one = [encoder.model_input(t) for t in texts]
    many = encoder.model_input_rows(texts)  # the block road
    assert all(np.array_equal(a, b) for a, b in zip(one, many))
    for text, row in zip(texts, one):
        ids = encoder.ids_of(text)
        assert np.array_equal(encoder.input_of_ids(ids), row)
        tokens, grams = encoder.parts(row)
        kept = ids[: encoder.length]
        assert tokens.tolist() == kept.tolist() + [0] * (encoder.length - len(kept))
        assert np.array_equal(grams, np.unique(grams)) and grams.dtype == np.int32
    long = " ".join(texts) * 3
    pieces = [long[i : i + 37] for i in range(0, len(long), 37)]
    assert np.array_equal(encoder.model_input_stream(pieces), encoder.model_input(long))


def test_spec_round_trips_and_a_bad_length_is_refused(encoder):
    spec = encoder.spec()
    assert spec["family"] == NGRAM_SEQUENCE and spec["length"] == 12
    again = encoder_from_spec(spec, encoder.vocab)
    assert again.spec() == spec
    for bad in (0, -3, "12", True, None):
        with pytest.raises(ValueError, match="length"):
            encoder_from_spec({**spec, "length": bad}, encoder.vocab)


def test_known_words_count_the_ngram_columns_only(encoder):
    rows = pad_word_ids([encoder.model_input("great film"), encoder.model_input("zzz qqq")])
    assert encoder.known_words(rows).tolist() == [2, 0]


def test_word_vectors_place_words_of_the_same_contexts_together():
    from train.word_vectors import learn

    rng = np.random.default_rng(5)
    texts = []
    for _ in range(600):
        texts.append(f"the {rng.choice(['good', 'great'])} film was seen by many people")
        texts.append(f"a {rng.choice(['table', 'chair'])} stood in the corner of a room")
    vocab = Vocabulary.build(texts, 100)
    enc = NgramSequenceEncoder(vocab, 7, 8)
    vectors = learn((enc.ids_of(t) for t in texts), len(vocab), dim=16, seed=0)
    assert vectors.shape == (len(vocab), 16) and vectors.dtype == np.float32
    assert not vectors[: UNK_ID + 1].any()
    v = {w: vectors[vocab.index[w]] for w in ("good", "great", "table", "chair")}
    assert v["good"] @ v["great"] > 0.9 and v["table"] @ v["chair"] > 0.9
    assert v["good"] @ v["table"] < 0.5
    # a vocabulary smaller than the dimension fills what it can and pads with zeros
    small = learn((enc.ids_of(t) for t in texts[:10]), len(vocab), dim=64, seed=0)
    assert small.shape == (len(vocab), 64) and not small[:, len(vocab) - 1 :].any()


def test_window_pool_leaves_out_windows_that_start_on_padding():
    from train.order_model import WindowPool

    ids = np.array([[5, 6, 0, 0], [0, 0, 0, 0]], np.int32)
    a = np.array([[[1.0], [3.0], [9.0], [7.0]], [[4.0], [4.0], [4.0], [4.0]]], np.float32)
    out = np.asarray(WindowPool()([a, ids]))
    assert out.tolist() == [[3.0, 2.0], [0.0, 0.0]]


def test_combined_model_is_the_ngram_logit_plus_the_weighted_branch():
    import keras

    from train import ngram_model, order_model

    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(6)
    vocab = Vocabulary.build(_texts(rng, 100), 1000)
    enc = NgramSequenceEncoder(vocab, 31, 10)
    x = pad_word_ids(enc.model_input_rows(_texts(rng, 40)))
    tokens, grams = enc.parts(x)
    for labels in (2, 4):
        classes = 1 if labels == 2 else labels
        ngram = ngram_model.build(enc.table_rows, 0.0, 0.0, "n", labels)
        bag = ngram_model.bag_of(ngram)
        bag.ratios.assign(rng.normal(size=bag.ratios.shape).astype(np.float32))
        bag.kernel.assign(rng.normal(size=bag.kernel.shape).astype(np.float32))
        branches = [order_model.branch(10, len(vocab), rng.normal(size=(len(vocab), 8)).astype(np.float32), 5,
                                       (2, 3), classes, 0.5) for _ in range(2)]
        cleaned = [order_model.clean_branch(b, 10, (2, 3), 0.75 / 2, name=f"{order_model.BRANCH_LAYER}_{i}")
                   for i, b in enumerate(branches)]
        model = order_model.combine(ngram, cleaned, 10, "m")
        assert len(order_model.parts_of(model)[1]) == 2
        z_ngram = np.asarray(keras.Model(ngram.input, bag.output)(grams))
        z_branch = np.mean([np.asarray(b(tokens, training=False)) for b in branches], axis=0)
        expected = z_ngram + 0.75 * z_branch
        got = np.asarray(model(x))
        if classes == 1:
            assert np.allclose(got, 1 / (1 + np.exp(-expected)), atol=1e-6)
        else:
            e = np.exp(expected - expected.max(axis=1, keepdims=True))
            assert np.allclose(got, e / e.sum(axis=1, keepdims=True), atol=1e-6)


def test_best_weight_is_chosen_on_what_it_is_given():
    from train.order_model import best_weight

    rng = np.random.default_rng(8)
    y = rng.integers(0, 2, 400)
    signal = np.where(y == 1, 1.0, -1.0)
    z_ngram = signal * 0.2 + rng.normal(size=400)  # weak
    assert best_weight(z_ngram, signal * 3, y)[0] > 0  # an informative branch gets weight
    assert best_weight(z_ngram, rng.normal(size=400) * 1e-3, y, grid=(0.0, 1.0))[1] == pytest.approx(
        float(np.mean((z_ngram > 0) == (y == 1))), abs=0.01)
    # a useless branch that costs accuracy loses to w = 0 by more than one standard error
    assert best_weight(signal * 2 + rng.normal(size=400), rng.normal(size=400) * 5, y)[0] == 0.0
    # weights a validation set cannot tell apart: the one closest to 1 (the logits added as they are)
    a, b = signal * 2 + rng.normal(size=400), signal * 2 + rng.normal(size=400)
    assert best_weight(a, b, y) == (1.0, float(np.mean(((a + b) > 0) == (y == 1))))


def _write(path: Path, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)


def _rows(rng, n: int):
    """Three labels told apart by word order: "not X but Y" takes Y's side, "X but not Y" X's."""
    good, bad = ["great", "good", "fine"], ["awful", "bad", "poor"]
    rows = []
    for _ in range(n):
        kind = int(rng.integers(0, 3))
        if kind == 2:
            text = " ".join(rng.choice(["the", "film", "plot", "was", "seen", "it"], size=int(rng.integers(3, 9))))
            rows.append((text + " today", "neutral"))
            continue
        first, second = (rng.choice(good), rng.choice(bad)) if kind == 0 else (rng.choice(bad), rng.choice(good))
        filler = " ".join(rng.choice(["the", "film", "plot", "was"], size=int(rng.integers(0, 4))))
        rows.append((f"{filler} {first} but not {second} {filler}".strip(), "positive" if kind == 0 else "negative"))
    return rows


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """``python -m train`` (the default recipe for own data) and ``python -m export`` on a CSV,
    without the aclImdb archive: word vectors learn from the training texts alone."""
    root = tmp_path_factory.mktemp("order")
    rng = np.random.default_rng(12)
    _write(root / "train.csv", _rows(rng, 1500))
    _write(root / "test.csv", _rows(rng, 300))
    env = {k: v for k, v in os.environ.items() if k != "IMDB_DATA"}
    env["IMDB_CACHE"] = str(root / "no-cache")
    model, out = root / "model", root / "bundle"
    done = subprocess.run([sys.executable, "-m", "train", "--data", str(root / "train.csv"), "--test",
                           str(root / "test.csv"), "--out", str(model), "--quiet"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "word vectors learn from the training texts alone" in done.stderr
    done = subprocess.run([sys.executable, "-m", "export", str(model), "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return root, model, out


def test_own_data_trains_the_order_aware_model_by_default(bundle):
    _, model, _ = bundle
    config = json.loads((model / "config.json").read_text())
    metrics = json.loads((model / "metrics.json").read_text())
    assert config["recipe"]["name"] == "ngram-cnn" and config["features"]["family"] == NGRAM_SEQUENCE
    order = metrics["order_aware"]
    assert order["word_vectors"]["archive"] is None and order["word_vectors"]["texts"] > 0
    assert 1 <= order["branches"] <= 3 and len(order["branch_epochs"]) == order["branches"]
    accuracy = order["validation_accuracy"]
    # w = 0 and 1 are on the grid; the rule may keep 1 over a weight better by under a standard error
    assert accuracy["combined"] >= max(accuracy["ngram"], accuracy["branch"]) - 0.03
    assert metrics["best_val_accuracy"] == accuracy["combined"]
    assert metrics["test_accuracy"] > 0.9
    # refitted on every training example (validation included) for the epochs early stopping kept
    assert metrics["refit"] is True and metrics["final_model_reviews"] == 1500 and order["seconds"]["refit"] > 0
    kept = order["kept_epochs"]
    assert 1 <= kept["ngram"] <= order["ngram_epochs"]
    assert all(1 <= k <= n for k, n in zip(kept["branch"], order["branch_epochs"], strict=True))


def test_every_form_is_gated_and_the_runtime_gives_its_golden_answers(bundle):
    import runtime

    root, model, out = bundle
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format_version"] == 7 and manifest["input"]["features"]["family"] == NGRAM_SEQUENCE
    assert len(manifest["artifacts"]) == 7
    for name, a in manifest["artifacts"].items():
        assert a["validation"]["label_agreement"] >= 0.99, name
    golden = json.loads((out / "golden.json").read_text())["reviews"]
    texts = [g["text"] for g in golden]
    for name in manifest["artifacts"]:
        clf = runtime.load(out, artifact=name)
        tolerance = manifest["artifacts"][name]["golden_tolerance"]
        batch = clf.predict_proba(texts)
        one = np.stack([clf.predict_proba([t])[0] for t in texts])
        assert np.array_equal(batch, one), name  # an answer does not depend on its batch
        expected = np.array([g["probabilities"][name] for g in golden])
        assert np.abs(batch - expected).max() <= tolerance, name
    clf = runtime.load(out, artifact="tflite-float32")
    e = clf.explain("great but not awful", k=3, label="positive")
    assert e.method == "occlusion" and e.label == "positive"
    assert {t.text for t in e.positive + e.negative} <= {"great", "not", "awful", "but"}


def test_parity_passes_on_the_bundle(bundle):
    _, _, out = bundle
    done = subprocess.run([sys.executable, "-m", "runtime.parity", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert " 0 failed" in done.stdout


def test_a_format_6_manifest_cannot_claim_the_order_aware_family(bundle, tmp_path):
    import shutil

    import runtime

    _, _, out = bundle
    copy = tmp_path / "b"
    shutil.copytree(out, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["format_version"] = 6
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(runtime.Error, match="ngram-sequence in a format version 6"):
        runtime.load(copy)


def test_an_unreadable_archive_costs_the_vectors_its_reviews_not_the_run(tmp_path):
    rng = np.random.default_rng(13)
    _write(tmp_path / "train.csv", _rows(rng, 300))
    broken = tmp_path / "aclImdb_v1.tar.gz"
    broken.write_text("not an archive\n")
    env = {**os.environ, "IMDB_DATA": str(broken)}
    done = subprocess.run([sys.executable, "-m", "train", "--data", str(tmp_path / "train.csv"), "--out",
                           str(tmp_path / "m"), "--max-epochs", "2", "--quiet"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{broken}: not a .tar.gz archive: word vectors learn from the training texts alone" in done.stderr
    vectors = json.loads((tmp_path / "m" / "metrics.json").read_text())["order_aware"]["word_vectors"]
    assert vectors["archive"] is None and "not a .tar.gz" in vectors["archive_error"]


def test_the_runtime_refuses_a_spec_whose_length_the_artifact_does_not_read(bundle, tmp_path):
    import shutil

    import runtime

    _, _, out = bundle
    copy = tmp_path / "b"
    shutil.copytree(out, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["input"]["features"]["length"] += 1
    (copy / "manifest.json").write_text(json.dumps(manifest))
    for artifact in ("tflite-int8", "onnx-int8", "onnx-dynamic-int8"):
        with pytest.raises(runtime.Error, match="token columns"):
            runtime.load(copy, artifact=artifact)


def test_the_int8_onnx_forms_keep_the_mask_and_the_count_reciprocals_exact(bundle):
    import onnx

    _, _, out = bundle
    for name in ("model_dynamic_int8.onnx", "model_int8.onnx"):
        graph = onnx.load(str(out / name)).graph
        tables = {i.name: i for i in graph.initializer if "reciprocal_count" in i.name or "token_mask" in i.name}
        assert tables and all(t.data_type == onnx.TensorProto.FLOAT for t in tables.values()), name
        reciprocal = next(onnx.numpy_helper.to_array(t) for n, t in tables.items() if "reciprocal_count" in n)
        assert np.allclose(reciprocal.ravel()[1:], 1.0 / np.arange(1, len(reciprocal)), rtol=1e-7), name


def test_trained_on_the_imdb_archive_the_vectors_read_that_archive_once(tmp_path):
    """The aclImdb corpus as --data: its training and unlabelled reviews feed the word vectors
    (not $IMDB_DATA's file, and the labelled reviews not twice)."""
    from conftest import make_archive

    rng = np.random.default_rng(17)
    reviews = {}
    for split, n in (("train", 40), ("test", 10)):
        for i in range(n):
            good = i % 2 == 0
            words = list(rng.choice(WORDS, 12)) + (["great", "good"] if good else ["awful", "bad"])
            reviews[f"{split}/{'pos' if good else 'neg'}/{i}_{9 if good else 2}.txt"] = " ".join(words)
    for i in range(15):
        reviews[f"train/unsup/{i}_0.txt"] = " ".join(rng.choice(WORDS, 20))
    archive = make_archive(tmp_path / "small.tar.gz", reviews)
    broken = tmp_path / "elsewhere.tar.gz"
    broken.write_text("not an archive\n")
    env = {**os.environ, "IMDB_DATA": str(broken)}
    done = subprocess.run([sys.executable, "-m", "train", "--recipe", "ngram-cnn", "--data", str(archive), "--out",
                           str(tmp_path / "m"), "--max-epochs", "2", "--quiet"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    vectors = json.loads((tmp_path / "m" / "metrics.json").read_text())["order_aware"]["word_vectors"]
    assert vectors["archive"] == str(archive) and "archive_error" not in vectors
    assert vectors["texts"] == 0 and vectors["archive_reviews"] == 40 + 15
