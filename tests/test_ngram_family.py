"""The n-gram family: its encoder (fixed hash, exact streaming, refusals) and the path from
training to every engine, as the runtime sees it."""

import json
import subprocess
import sys

import numpy as np
import pytest

import runtime
from conftest import ROOT, assert_single_batch_and_stream_agree_with_golden
from export.convert import FAMILY_ARTIFACTS
from runtime.encoding import text
from runtime.encoding.features import NGRAM_HASH, NgramEncoder, bigram_ids, encoder_from_spec
from runtime.probability import tempered_all
from runtime.encoding.vocab import UNK_ID, Vocabulary

WORDS = ["<pad>", "<start>", "<unk>", "the", "film", "was", "not", "good", "at", "all", ".", ","]


@pytest.fixture
def encoder() -> NgramEncoder:
    return NgramEncoder(Vocabulary(WORDS), buckets=1000)


def reference_ids(enc: NgramEncoder, review: str) -> np.ndarray:
    """The definition, one token at a time in plain Python: unigrams and hashed bigrams."""
    ids = [enc.vocab.index.get(t, UNK_ID) for t in text.tokenize(review)]
    found = set(ids)
    for a, b in zip(ids, ids[1:]):
        h = ((a * enc.vocab_size + b) * 0x9E3779B97F4A7C15) % (1 << 64)
        found.add(enc.vocab_size + (h >> 32) % enc.buckets)
    return np.array(sorted(found), dtype=np.int32)


def test_bigram_hash_is_fixed():
    # Changing these values changes every n-gram bundle's features: it needs a new NGRAM_HASH.
    left = np.array([3, 7, 29_999], dtype=np.uint64)
    right = np.array([4, 3, 29_998], dtype=np.uint64)
    got = bigram_ids(left, right, 30_000, 1_000_000)
    want = [30_000 + ((((a * 30_000 + b) * 0x9E3779B97F4A7C15) % (1 << 64)) >> 32) % 1_000_000
            for a, b in zip(left.tolist(), right.tolist())]
    assert got.tolist() == want == [187_828, 518_478, 815_679]
    # the encoder's token ids are uint32: the arithmetic stays 64-bit (numpy 1 would pick 32)
    narrow = bigram_ids(left.astype(np.uint32), right.astype(np.uint32), 30_000, 1_000_000)
    assert narrow.dtype == np.uint32 and narrow.tolist() == want
    assert NGRAM_HASH == "fibonacci64-v1"


@pytest.mark.parametrize("review", [
    "The film was not good at all.",
    "NOT good, not good at all!!! the film<br />was good",
    "unknown words break nothing: zyx the film",
    "", "   ", "film",
])
def test_model_input_matches_the_definition(encoder, review):
    np.testing.assert_array_equal(encoder.model_input(review), reference_ids(encoder, review))
    np.testing.assert_array_equal(encoder.model_input(review), reference_ids(encoder, review))  # memoized


def test_features_of_any_token_ids_match_the_definition():
    # Ids across a large vocabulary and bucket count, so every bit of the 64-bit product counts.
    class Words:  # a vocabulary only its size is read of
        index: dict = {}

        def __len__(self) -> int:
            return 3_000_000

    enc = NgramEncoder(Words(), buckets=1_000_003)
    rng = np.random.default_rng(7)
    for n in (0, 1, 2, 3, 50, 700):
        ids = rng.integers(0, enc.vocab_size, size=n).astype(np.uint32)
        want = set(ids.tolist())
        for a, b in zip(ids.tolist(), ids.tolist()[1:]):
            want.add(enc.vocab_size + ((((a * enc.vocab_size + b) * 0x9E3779B97F4A7C15) % (1 << 64)) >> 32) % enc.buckets)
        got = enc._features(ids)
        assert got.dtype == np.int32 and got.tolist() == sorted(want)


def test_more_rows_than_int32_ids_is_refused():
    with pytest.raises(ValueError, match="more rows than int32 ids"):
        NgramEncoder(Vocabulary(WORDS), buckets=1 << 31)


def test_negation_is_a_feature(encoder):
    good, not_good = encoder.model_input("good"), encoder.model_input("not good")
    assert len(np.setdiff1d(not_good, good)) == 2  # "not" and the bigram "not good"
    assert encoder.known_words(not_good[None, :]).tolist() == [2]


def test_stream_equals_whole_for_any_cut(encoder):
    review = "the film was not good at all. " * 50 + "not<br />good, the film."
    whole = encoder.model_input(review)
    for size in (1, 3, 7, 64, 1000):
        pieces = [review[i : i + size] for i in range(0, len(review), size)]
        np.testing.assert_array_equal(encoder.model_input_stream(pieces), whole)


def test_full_memo_changes_nothing():
    vocab = Vocabulary(WORDS)
    small = NgramEncoder(vocab, buckets=1000, memo_size=2)
    full = NgramEncoder(vocab, buckets=1000)
    review = "the film was not good at all, not at all."
    for _ in range(2):
        np.testing.assert_array_equal(small.model_input(review), full.model_input(review))
    assert len(small._memo) == 2


@pytest.mark.parametrize("field,value,message", [
    ("order", 3, "'order' is 3"),
    ("hash", "crc32", "'hash' is 'crc32'"),
    ("buckets", 0, "'buckets' must be a positive integer"),
    ("buckets", "1000", "'buckets' must be a positive integer"),
    ("rows", 999, "'rows' is 999"),
])
def test_a_spec_this_encoder_does_not_make_is_refused_naming_the_field(encoder, field, value, message):
    spec = {**encoder.spec(), field: value}
    with pytest.raises(ValueError, match=message):
        encoder_from_spec(spec, encoder.vocab)
    assert encoder_from_spec(encoder.spec(), encoder.vocab).spec() == encoder.spec()


def test_every_ngram_artifact_is_exported_validated_and_small(small_ngram_bundle):
    m = json.loads((small_ngram_bundle / "manifest.json").read_text())
    assert list(m["artifacts"]) == FAMILY_ARTIFACTS["ngram"]
    features = m["input"]["features"]
    assert features["family"] == "ngram" and features["buckets"] == 1 << 16 and features["hash"] == NGRAM_HASH
    rows = features["rows"]
    assert rows == 3000 + (1 << 16)
    assert m["model"]["int8_calibration"] == {"training_reviews": 500, "max_abs_float_logit": 12.0}
    for name, a in m["artifacts"].items():
        v = a["validation"]
        if a["precision"] == "float32":
            assert v["max_abs_diff"] <= 1e-5, name
        else:
            assert v["label_agreement"] >= 0.99, name
        if a["precision"] in ("int8", "dynamic-int8"):
            assert a["size_bytes"] < rows * 1.1, name  # one byte a table row, and little else


def test_float_tflite_forms_add_in_one_order_and_end_at_the_logit(small_ngram_bundle):
    """What makes them bit-identical on x86_64 and arm64 (see export.convert.portable_float):
    a cumulative sum, no LOGISTIC, and the manifest saying the runtime applies the sigmoid."""
    from ai_edge_litert.interpreter import Interpreter

    m = json.loads((small_ngram_bundle / "manifest.json").read_text())
    for name, a in m["artifacts"].items():
        if a["format"] != "tflite":  # every float output is a logit (export.convert.output_of)
            assert a["output"] == ("probability" if a["precision"] == "int8" else "logit"), name
            continue
        ops = [o["op_name"] for o in Interpreter(model_path=str(small_ngram_bundle / a["file"]))._get_ops_details()]
        if a["precision"] == "int8":
            assert a.get("output", "probability") == "probability" and "LOGISTIC" in ops and "SUM" in ops, (name, ops)
        else:
            assert a["output"] == "logit" and "CUMSUM" in ops, (name, ops)
            assert "LOGISTIC" not in ops and "SUM" not in ops, (name, ops)


@pytest.mark.parametrize("artifact", FAMILY_ARTIFACTS["ngram"])
def test_single_batch_and_stream_agree_with_golden(small_ngram_bundle, artifact):
    assert_single_batch_and_stream_agree_with_golden(small_ngram_bundle, artifact)


def test_the_runtime_sees_what_keras_saw(small_ngram_model, small_ngram_bundle, corpus):
    from train.model_dir import ModelDir

    md = ModelDir(small_ngram_model)
    texts = corpus.splits["test"].texts[:300]
    keras_probs = md.load_model()(md.encoder.keras_inputs(texts), training=False).numpy().reshape(-1)
    clf = runtime.load(small_ngram_bundle, artifact="tflite-float32")
    np.testing.assert_allclose(clf.predict_proba(texts), tempered_all(keras_probs.tolist(), clf.temperature), atol=1e-5)
    assert [clf.predict(t).probability for t in texts[:20]] == clf.predict_proba(texts[:20]).tolist()


def test_cli_classifies_with_an_ngram_bundle(small_ngram_bundle, tmp_path):
    review = tmp_path / "r.txt"
    review.write_text("Not good at all. A dull, boring film.")
    out = subprocess.run([sys.executable, "-m", "runtime.classify", "--json", "--model", str(small_ngram_bundle),
                          str(review)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)
    assert row["label"] == "negative" and row["known_words"] >= 6


def test_a_bundle_with_other_buckets_fails_to_load_naming_the_field(small_ngram_bundle, tmp_path):
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(small_ngram_bundle, copy)
    m = json.loads((copy / "manifest.json").read_text())
    m["input"]["features"]["buckets"] += 1
    (copy / "manifest.json").write_text(json.dumps(m))
    out = subprocess.run([sys.executable, "-m", "runtime.classify", "--model", str(copy), str(copy / "vocab.txt")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 4 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "features field 'rows'" in out.stderr and "65537 buckets" in out.stderr


def test_the_report_says_the_final_model_was_refitted_on_every_training_review(small_ngram_model):
    metrics = json.loads((small_ngram_model / "metrics.json").read_text())
    assert metrics["refit"] is True and metrics["final_model_reviews"] == 4000
    assert "| final model trained on | 4,000 reviews (refitted on every training review" in \
        (small_ngram_model / "report.md").read_text()
