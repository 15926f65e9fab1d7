"""The library inside someone else's program (issue 31, section 4): bounded memory on a huge
string, batch functions that never fail a batch on a null row, pickles that keep every option
and work from any directory, arguments checked alike everywhere, one base for the library's
errors, and streamed text tokenized exactly as whole text."""

import importlib
import io
import json
import math
import os
import pickle
import pkgutil
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import runtime
from runtime.encoding import features, text
from runtime.encoding.features import MultiHotEncoder, NgramEncoder, SequenceEncoder
from runtime.encoding.text import EMPTY_REVIEW, tokenize, whole_chunks
from runtime.encoding.vocab import Vocabulary

ROOT = Path(__file__).resolve().parents[1]
REVIEW = "A truly great film, <br /><br />with a wonderful cast and an awful ending. "


@pytest.fixture(scope="module")
def clf():
    return runtime.load()


# --- a huge string through the API: memory bounded, answers equal -------------------------

def test_the_api_on_a_100_mb_string_holds_memory_bounded_by_its_pieces():
    """``ru_maxrss`` in a fresh process: scoring a 100 MB string (alone, and in a batch) may add
    at most 64 MiB to what the process held once the string was built (whole, it took 1.4 GB)."""
    script = textwrap.dedent(f"""
        import json, resource, runtime
        def peak():
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        clf = runtime.load()
        small = clf.predict({REVIEW * 3!r})
        review = {REVIEW!r} * (100_000_000 // {len(REVIEW)})
        built = peak()
        one = clf.predict(review)
        many = clf.predict_proba([review, "a fine film", "dull", "bad acting"]).tolist()
        print(json.dumps({{"added": peak() - built, "one": [one.probability, one.known_words],
                           "many": many[0], "small": [small.probability, small.known_words]}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["added"] < 64 << 20, f"scoring a 100 MB string added {got['added'] >> 20} MiB"
    # Three copies hold every word and word pair the 100 MB of copies hold: the same answer.
    assert got["one"] == got["small"] and got["many"] == pytest.approx(got["small"][0], abs=0)


@pytest.fixture(scope="module")
def encoders(corpus):
    vocab = Vocabulary.build(corpus.splits["train"].texts[:2000], 3000)
    return [MultiHotEncoder(vocab), SequenceEncoder(vocab, 200), NgramEncoder(vocab, 4093)]


def test_a_long_text_is_encoded_in_pieces_to_exactly_the_whole_texts_ids(corpus, encoders, monkeypatch):
    """With the streaming length and the piece size made tiny, every review of the corpus is
    encoded in pieces by every road (one review, a batch), to the same ids as whole."""
    texts = corpus.splits["test"].texts[:150] + [" ".join(corpus.splits["test"].texts[150:180])]
    want = [[enc.model_input(t) for t in texts] for enc in encoders]
    monkeypatch.setattr(features, "STREAM_OVER", 40)
    monkeypatch.setattr(text, "PIECE", 37)
    for enc, whole in zip(encoders, want):
        for t, w in zip(texts, whole):
            np.testing.assert_array_equal(enc.model_input(t), w)
        for got, w in zip(enc.model_input_rows(texts), whole):
            np.testing.assert_array_equal(got, w)


def test_one_long_piece_is_cut_into_bounded_segments():
    """A text given as one 3 MB piece (a file's single line, or a whole string) is segmented
    no coarser than pieces of ``PIECE`` characters would be (a segment is a piece and the
    end of the one before it, here under a hundred characters)."""
    big = REVIEW * (3_000_000 // len(REVIEW))
    segments = list(whole_chunks([big]))
    assert "".join(segments) == big
    assert len(segments) > 10 and max(map(len, segments)) <= text.PIECE + 100


# --- a review of line breaks: streamed and whole tokens are the same ----------------------

def test_a_run_of_line_breaks_longer_than_a_chunk_is_cut_only_between_breaks(monkeypatch):
    """Texts without whitespace but inside their line breaks, longer than ``MAX_CHUNK``: cut
    just after whole breaks, never inside one or inside a word, whatever the pieces."""
    monkeypatch.setattr(text, "MAX_CHUNK", 64)
    monkeypatch.setattr(text, "PIECE", 23)
    rng = random.Random(31)
    parts = ["<br />", "<BR />", "<br/>", "<br>", "<Br>", "good", "film", "!", "<", "br", "/>"]
    for _ in range(300):
        s = "".join(rng.choice(parts) for _ in range(rng.randint(20, 120)))
        cuts = sorted(rng.sample(range(len(s) + 1), rng.randint(1, 8)))
        pieces = [s[a:b] for a, b in zip([0] + cuts, cuts + [len(s)])]
        assert [t for seg in whole_chunks(pieces) for t in tokenize(seg)] == tokenize(s), (s, cuts)


def test_a_review_of_4_mib_of_line_breaks_streamed_is_the_prior_as_whole(clf, tmp_path, monkeypatch):
    """The issue's case: 5.4 MB of ``<br />`` has no token, whether the command streams it,
    ``predict_stream`` gets it in pieces, or ``predict`` gets it whole."""
    breaks = "<br />" * 900_000
    assert not [t for seg in whole_chunks(breaks[i : i + 1_000_003] for i in range(0, len(breaks), 1_000_003))
                for t in tokenize(seg)]
    prior = clf.predict("<br />")
    assert prior.known_words == 0
    streamed = clf.predict_stream(breaks[i : i + 65_537] for i in range(0, len(breaks), 65_537))
    monkeypatch.setattr(features, "STREAM_OVER", len(breaks))  # whole, as a short review goes
    assert streamed == clf.predict(breaks) == prior
    (tmp_path / "breaks.txt").write_text(breaks, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "runtime.classify", "--json", str(tmp_path / "breaks.txt")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert (got["probability"], got["known_words"]) == (round(prior.probability, 6), 0)


# --- ReviewScorer: a null row gets a null answer, never garbage, never a failed batch -----

def _hostile_column():
    pandas = pytest.importorskip("pandas")
    values = ["A wonderful film", None, float("nan"), np.float32("nan"), pandas.NA, pandas.NaT,
              b"An awful waste of time", b"\xff\xfe bad bytes", "", "   \n", 3, "dull", np.str_("great cast")]
    errors = [None, "null text", "null text", "null text", "null text", "null text", None,
              "bytes that are not UTF-8 text", EMPTY_REVIEW, EMPTY_REVIEW, "not text: int", None, None]
    reviews = {0: "A wonderful film", 6: "An awful waste of time", 11: "dull", 12: "great cast"}
    return values, errors, reviews


def test_the_scorer_gives_rows_without_a_review_nan_none_and_the_reason():
    scorer = runtime.ReviewScorer()
    values, errors, reviews = _hostile_column()
    out = scorer({"id": np.arange(len(values)), "text": np.array(values, dtype=object)})
    want = dict(zip(reviews, scorer.classifier.predict_proba(list(reviews.values())).tolist()))
    assert out["error"].tolist() == errors
    for i, (p, label) in enumerate(zip(out["probability"].tolist(), out["label"].tolist())):
        if i in reviews:
            assert p == want[i] and label == ("positive" if p >= scorer.classifier.threshold else "negative")
        else:
            assert math.isnan(p) and label is None
    assert out["id"].tolist() == list(range(len(values)))
    plain = scorer(np.array(values, dtype=object))  # Spark's predict_batch_udf form
    np.testing.assert_array_equal(plain, out["probability"])
    assert plain.dtype == np.float32


def test_the_scorer_reads_masked_entries_as_null_and_refuses_a_str_as_a_batch():
    scorer = runtime.ReviewScorer()
    masked = np.ma.array(np.array(["A wonderful film", "hidden"], dtype=object), mask=[False, True])
    out = scorer({"text": masked})
    assert out["error"].tolist() == [None, "null text"] and math.isnan(out["probability"][1])
    assert out["probability"][0] == scorer.classifier.predict("A wonderful film").probability
    for batch in ("a great film", b"a great film"):
        with pytest.raises(TypeError, match="a batch must be an array or list of texts"):
            scorer(batch)


def test_null_rows_in_ray_data_get_null_results_and_the_others_their_probability():
    ray = pytest.importorskip("ray")
    values = ["A wonderful film", None, "", "An awful waste of time"] * 8 + ["fine"] * 8  # one batch without errors
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        ds = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(values)])
        rows = ds.map_batches(runtime.ReviewScorer, batch_format="numpy", batch_size=8, concurrency=1).take_all()
    finally:
        ray.shutdown()
    clf = runtime.load()
    by_id = {int(r["id"]): r for r in rows}
    assert len(by_id) == len(values)
    for i, t in enumerate(values):
        r = by_id[i]
        if t:
            assert (float(r["probability"]), r["label"], r["error"]) == (clf.predict(t).probability, clf.predict(t).label, None)
        else:
            assert math.isnan(r["probability"]) and r["label"] is None
            assert r["error"] == ("null text" if t is None else EMPTY_REVIEW)


# --- pickling: every option kept, from any working directory ------------------------------

def test_a_classifier_and_a_scorer_from_a_relative_bundle_unpickle_elsewhere_with_every_option(tmp_path, monkeypatch):
    shutil.copytree(runtime.DEFAULT_BUNDLE, tmp_path / "bundle")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    options = dict(artifact="onnx-int8", backend="onnxruntime", threshold=0.3, num_threads=1, uncertain=(0.4, 0.6))
    clf = runtime.load("bundle", **options)
    scorer = runtime.ReviewScorer("bundle", column="review", **options)
    data = pickle.dumps(clf), pickle.dumps(scorer)
    monkeypatch.chdir(tmp_path / "elsewhere")
    again, scorer_again = map(pickle.loads, data)
    for c in (again, scorer_again.classifier):
        assert (c.artifact, c.engine, c.threshold, c.num_threads, c.uncertain) == (
            "onnx-int8", "onnxruntime", 0.3, 1, (0.4, 0.6))
        assert Path(c.bundle.root).resolve() == (tmp_path / "bundle").resolve()
        assert c.predict("A wonderful film") == clf.predict("A wonderful film")
    assert scorer_again.column == "review"
    assert scorer_again.classifier.encoder._memo._limit == features.BULK_MEMO_SIZE


def test_the_shipped_bundle_pickles_as_the_shipped_bundle(clf):
    """Named None, so a worker elsewhere (another install path) loads its own copy."""
    assert clf.__reduce__()[1][0].bundle is None and clf.options.bundle is None
    assert pickle.loads(pickle.dumps(clf)).bundle.root == clf.bundle.root


# --- argument checks: alike everywhere ----------------------------------------------------

@pytest.mark.parametrize("call, error, message", [
    (lambda c: runtime.load(threshold=True), ValueError, "threshold must be a number between 0 and 1, got True"),
    (lambda c: c.predict("good", threshold=True), ValueError, "threshold must be a number between 0 and 1"),
    (lambda c: c.predict_batch(["good"], threshold=False), ValueError, "threshold must be a number between 0 and 1"),
    (lambda c: c.predict_batch(["good"], threshold=2), ValueError, "threshold must be a number between 0 and 1"),
    (lambda c: c.predict("good", threshold=float("nan")), ValueError, "threshold must be a number between 0 and 1, got nan"),
    (lambda c: c.predict("good", threshold=np.float32("nan")), ValueError, "threshold must be a number between 0 and 1"),
    (lambda c: c.predict("good", uncertain=(0.6, 0.4)), ValueError, "uncertain must be a (low, high) pair"),
    (lambda c: c.predict_batch(["good"], uncertain=(0.5, True)), ValueError, "uncertain must be a (low, high) pair"),
    (lambda c: c.predict("good", 0.5), TypeError, "positional argument"),
    (lambda c: runtime.load(options={"threshold": 0.5}), TypeError, "options must be a runtime.ClassifierOptions"),
    (lambda c: runtime.load(threshold=0.5, options=runtime.ClassifierOptions()), TypeError, "not both"),
    (lambda c: runtime.ClassifierOptions(artifact=5), TypeError, "artifact must be a str or None, got int 5"),
    (lambda c: runtime.ClassifierOptions(engine=None), TypeError, "engine must be a str, got NoneType"),
    (lambda c: runtime.ClassifierOptions(bundle=5), TypeError, "bundle must be a path"),
    (lambda c: runtime.ClassifierOptions(threshold=-0.1), ValueError, "threshold must be a number between 0 and 1"),
    (lambda c: runtime.load(uncertain=(True, 1)), ValueError, "uncertain must be a (low, high) pair"),
    (lambda c: c.explain("good", k=True), ValueError, "k must be a positive integer, got True"),
    (lambda c: c.explain("good", k=2.0), ValueError, "k must be a positive integer, got 2.0"),
    (lambda c: c.explain("good", k=np.int64(0)), ValueError, "k must be a positive integer"),
    (lambda c: runtime.load(num_threads=0), ValueError, "num_threads must be a positive int, got 0"),
    (lambda c: runtime.load(num_threads=True), TypeError, "num_threads must be a positive int"),
    (lambda c: runtime.load(num_threads=1.5), TypeError, "num_threads must be a positive int"),
    (lambda c: runtime.ReviewScorer(num_threads=-1), ValueError, "num_threads must be a positive int"),
    (lambda c: c.predict_stream(None), TypeError, "predict_stream takes an iterable of str pieces"),
    (lambda c: c.predict_stream(b"great film"), TypeError, "predict_stream takes an iterable of str pieces"),
    (lambda c: c.predict_stream(5), TypeError, "predict_stream takes an iterable of str pieces (a list, a generator"),
    (lambda c: c.predict_stream("great film"), TypeError, "got str (for one text use predict)"),
    (lambda c: c.predict_stream(["great", b" film"]), TypeError, "piece 1 is bytes, not str (open the file in text mode"),
    (lambda c: c.predict_stream([None]), TypeError, "piece 0 is NoneType, not str"),
    (lambda c: c.predict_stream(io.BytesIO(b"great film")), TypeError, "piece 0 is bytes, not str"),
    (lambda c: c.predict_stream([]), ValueError, EMPTY_REVIEW),
    (lambda c: c.predict_stream(iter([" ", "\n\t", ""])), ValueError, EMPTY_REVIEW),
])
def test_api_arguments_are_checked_alike(clf, call, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(clf)


def test_numpy_numbers_are_numbers(clf):
    """numpy scalars are accepted wherever a Python number is (bool is not a number here)."""
    assert runtime.load(threshold=np.float32(0.25)).threshold == 0.25
    assert clf.predict("An awful film", threshold=np.float64(0.0)).label == "positive"
    assert clf.predict_batch(["An awful film"], threshold=np.float32(0.0))[0].label == "positive"
    assert clf.predict("A wonderful film", threshold=np.float64(1.0)).label == "negative"
    assert clf.predict("A fine film", uncertain=(np.float32(0.0), np.float32(1.0))).label == runtime.UNCERTAIN
    banded = runtime.load(uncertain=[np.float64(0.4), 0.6])
    assert banded.uncertain == (0.4, 0.6) and type(banded.uncertain[0]) is float
    assert clf.explain("a great film, a dull plot", k=np.int64(1)) == clf.explain("a great film, a dull plot", k=1)


def test_every_empty_review_is_refused_with_one_message(clf, tmp_path):
    """The API (one review, a batch, a stream), the command and the record readers."""
    for call in (lambda: clf.predict(" \n"), lambda: clf.predict("").probability, lambda: clf.explain("\t"),
                 lambda: clf.predict_stream(["  "])):
        with pytest.raises(ValueError) as e:
            call()
        assert str(e.value) == EMPTY_REVIEW
    with pytest.raises(ValueError, match=f"^review 1: {EMPTY_REVIEW}$"):
        clf.predict_proba(["good", "  "])
    (tmp_path / "blank.txt").write_text(" \n\n", encoding="utf-8")
    (tmp_path / "lines.txt").write_text("good\n  \n", encoding="utf-8")
    for args, line in (([str(tmp_path / "blank.txt")], f"error: {tmp_path / 'blank.txt'}: {EMPTY_REVIEW}"),
                       (["--lines", str(tmp_path / "lines.txt")], f"error: {tmp_path / 'lines.txt'}:2: {EMPTY_REVIEW}")):
        proc = subprocess.run([sys.executable, "-m", "runtime.classify", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 2 and line in proc.stderr.splitlines(), proc.stderr


def test_a_blank_file_long_enough_to_be_streamed_is_refused_in_one_line(tmp_path):
    """Over ``reading.WHOLE_UP_TO`` characters of whitespace: streamed, and refused as a short one is."""
    from runtime.cli.reading import WHOLE_UP_TO

    path = tmp_path / "spaces.txt"
    path.write_text(" " * (WHOLE_UP_TO + 10), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "runtime.classify", str(path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.splitlines() == [f"error: {path}: {EMPTY_REVIEW}"], proc.stderr


def test_explain_refuses_a_text_longer_than_the_command_explains(clf):
    from runtime.cli.reading import WHOLE_UP_TO

    with pytest.raises(ValueError, match="too long to explain"):
        clf.explain("good " * (WHOLE_UP_TO // 5 + 1))


# --- one base for the library's own errors --------------------------------------------------

def test_every_error_class_of_the_runtime_derives_from_runtime_error():
    found = []
    for info in pkgutil.walk_packages(runtime.__path__, "runtime."):  # every room: encoding, engines, cli...
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, BaseException)
                    and not issubclass(value, KeyboardInterrupt)  # a signal stopping a command
                    and value.__module__ == module.__name__ and value is not runtime.Error):
                found.append(value)
    names = {c.__name__ for c in found}
    assert {"BundleError", "EngineError", "InputError", "WorkerError", "VocabularyError", "CorpusError",
            "OnnxFormatError", "UnsafeOutput"} <= names
    assert [c.__name__ for c in found if not issubclass(c, runtime.Error)] == []
    from runtime.engines.base import EngineError
    from runtime.encoding.vocab import VocabularyError

    assert issubclass(EngineError, RuntimeError) and issubclass(VocabularyError, ValueError)  # still caught as before


def test_a_bad_bundle_is_caught_as_runtime_error(tmp_path):
    with pytest.raises(runtime.Error):
        runtime.load(tmp_path)
    assert os.path.isdir(tmp_path)


def test_review_scorer_names_its_column_problems():
    with pytest.raises(TypeError, match="column must be a non-empty str, got int 5"):
        runtime.ReviewScorer(column=5)
    scorer = runtime.ReviewScorer()
    with pytest.raises(KeyError, match="the batch has no column 'text' \\(its columns: 'body'\\)"):
        scorer({"body": ["a fine film"]})
