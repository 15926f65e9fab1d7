"""Training on a user's own labelled text (issue #28): readers, splits, N labels, bad input.

The real sets are ../shared/data/textsets (TREC: 6 labels, CSV; SST-2: 2 labels, JSON Lines);
every bad input is a small synthetic file, checked for its exit status and its one line.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT

TEXTSETS = ROOT.parent / "shared" / "data" / "textsets"
TREC = TEXTSETS / "trec"
SST2 = TEXTSETS / "sst2"
UNUSABLE, USAGE = 4, 64


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is missing")
    return path


def _train(argv: list[str], capsys) -> tuple[int, str, str]:
    from train.__main__ import main

    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _errors(err: str) -> list[str]:
    """The lines of stderr that are not progress bars or TensorFlow's own logging."""
    return [line for line in err.splitlines() if line.startswith(("error:", "python -m train"))]


def _csv(path: Path, rows: list[tuple[str, str]], header: str = "text,label") -> Path:
    import csv

    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header.split(","))
        w.writerows(rows)
    return path


def _rows(n_per_label: int, labels=("alpha", "beta", "gamma")) -> list[tuple[str, str]]:
    words = {"alpha": "apple apricot avocado", "beta": "banana blueberry bean", "gamma": "grape guava gourd"}
    return [(f"{words.get(label, label)} number {i} {label}", label) for label in labels for i in range(n_per_label)]


# --- readers -------------------------------------------------------------------------------

def test_every_format_reads_the_same_examples(tmp_path):
    from train import userdata

    rows = [("a first, quoted text", "pos"), ("second\nline break", "neg"), ('"third" quoted', "pos")]
    _csv(tmp_path / "d.csv", rows)
    (tmp_path / "d.tsv").write_text("label\ttext\n" + "".join(f"{l}\t{t.replace(chr(10), ' ')}\n" for t, l in rows))
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"label": l, "text": t}) + "\n" for t, l in rows))
    (tmp_path / "d.txt").write_text("".join(f"__label__{l} {t.replace(chr(10), ' ')}\n" for t, l in rows))
    for i, (t, l) in enumerate(rows):
        (tmp_path / "folder" / l).mkdir(parents=True, exist_ok=True)
        (tmp_path / "folder" / l / f"{i}.txt").write_text(t)

    csv_records = userdata.read(tmp_path / "d.csv")
    assert csv_records.texts == [t for t, _ in rows] and csv_records.labels == ["pos", "neg", "pos"]
    assert csv_records.ids == ["line 2", "line 3", "line 5"]  # the quoted line break spans lines 3-4
    assert csv_records.sha256 == hashlib.sha256((tmp_path / "d.csv").read_bytes()).hexdigest()
    flat = [t.replace("\n", " ") for t, _ in rows]
    for name in ("d.tsv", "d.jsonl", "d.txt"):
        r = userdata.read(tmp_path / name)
        assert r.labels == ["pos", "neg", "pos"], name
        assert r.texts == (flat if name != "d.jsonl" else [t for t, _ in rows]), name
    folder = userdata.read(tmp_path / "folder")
    assert sorted(zip(folder.labels, folder.texts)) == sorted((l, t) for t, l in rows)
    assert userdata.read(tmp_path / "d.txt", fmt="fasttext").ids == ["line 1", "line 2", "line 3"]


def test_named_columns_and_fields(tmp_path):
    from train import userdata

    path = _csv(tmp_path / "d.csv", [("hello", "x"), ("there", "y")], header="body,topic")
    r = userdata.read(path, text_column="body", label_column="topic")
    assert r.texts == ["hello", "there"] and r.labels == ["x", "y"]
    (tmp_path / "d.jsonl").write_text('{"q": "what", "t": 3}\n{"q": "who", "t": true}\n')
    r = userdata.read(tmp_path / "d.jsonl", text_column="q", label_column="t")
    assert r.labels == ["3", "true"]


def test_stratified_split_holds_out_each_label_and_is_seeded():
    from train.dataset import stratified_split

    labels = np.array([0] * 50 + [1] * 30 + [2] * 2 + [3])
    kept, held = stratified_split(labels, 0.1, 7)
    assert not set(kept) & set(held) and len(kept) + len(held) == len(labels)
    assert np.bincount(labels[held], minlength=4).tolist() == [5, 3, 1, 0]  # a single example stays
    again, _ = stratified_split(labels, 0.1, 7)
    other, _ = stratified_split(labels, 0.1, 8)
    assert np.array_equal(again, kept) and not np.array_equal(other, kept)


# --- bad input: exit status and one line ---------------------------------------------------

def _refused(tmp_path, capsys, argv, status, *phrases):
    out = tmp_path / "model"
    code, _, err = _train([*argv, "--out", str(out), "--quiet"], capsys)
    lines = _errors(err)
    assert code == status, err
    assert len(lines) == 1, err
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    assert not out.exists()  # nothing half-written
    return lines[0]


def test_one_distinct_label_is_refused(tmp_path, capsys):
    path = _csv(tmp_path / "one.csv", _rows(5, ("alpha",)))
    _refused(tmp_path, capsys, ["--data", str(path)], UNUSABLE, "one.csv", "'alpha'", "2 or more labels")


def test_a_missing_text_column_names_the_columns_there_are(tmp_path, capsys):
    path = _csv(tmp_path / "cols.csv", _rows(3), header="sentence,label")
    _refused(tmp_path, capsys, ["--data", str(path)], UNUSABLE, "cols.csv", "no column 'text'", "'sentence', 'label'",
             "--text-column")
    jl = tmp_path / "cols.jsonl"
    jl.write_text('{"body": "x", "label": "a"}\n')
    _refused(tmp_path, capsys, ["--data", str(jl)], UNUSABLE, "cols.jsonl:1", "no field 'text'", "'body', 'label'")


def test_rows_without_a_label_are_skipped_with_a_count_naming_the_first(tmp_path, capsys):
    from train import dataset

    rows = _rows(6)
    rows[3] = (rows[3][0], "")
    rows[7] = (rows[7][0], "  ")
    path = _csv(tmp_path / "gaps.csv", rows)
    corpus = dataset.load(path, test_fraction=0.2, seed=1)
    err = capsys.readouterr().err
    assert "skipped 2 examples with no label (first: line 5)" in err
    assert sum(map(len, corpus.splits.values())) == len(rows) - 2
    all_empty = _csv(tmp_path / "empty.csv", [(t, "") for t, _ in rows])
    _refused(tmp_path, capsys, ["--data", str(all_empty)], UNUSABLE, "empty.csv", "no labelled examples",
             "first: line 2")


def test_too_few_examples_to_hold_out_are_refused(tmp_path, capsys):
    path = _csv(tmp_path / "tiny.csv", [("one", "a"), ("two", "b")])
    _refused(tmp_path, capsys, ["--data", str(path)], UNUSABLE, "tiny.csv", "too few examples", "--test")


def test_a_label_with_one_example_is_warned_and_kept_in_training(tmp_path, capsys):
    from train import dataset

    path = _csv(tmp_path / "rare.csv", _rows(10) + [("a lonely text", "zeta")])
    corpus = dataset.load(path, seed=3)
    err = capsys.readouterr().err
    assert "1 label has a single example ('zeta')" in err and "cannot be stratified" in err
    zeta = corpus.labels.index("zeta")
    assert corpus.splits["train"].labels.count(zeta) == 1 and zeta not in corpus.splits["test"].labels


def test_too_many_labels_are_refused(tmp_path, capsys):
    path = _csv(tmp_path / "many.csv", [(f"text {i}", f"label{i}") for i in range(10_000)])
    _refused(tmp_path, capsys, ["--data", str(path)], UNUSABLE, "many.csv", "more than 1,000 distinct labels")


def test_a_file_over_the_text_budget_is_sampled_in_bounded_memory(tmp_path, capsys):
    import tracemalloc

    from train import dataset, userdata

    rows = [(f"text number {i} " + "word " * (i % 50), "rare" if i in (7, 9000) else f"l{i % 3}") for i in range(20_000)]
    path = _csv(tmp_path / "big.csv", rows)
    size = path.stat().st_size
    budget = 64 << 10
    tracemalloc.start()
    r = userdata.read(path, max_bytes=budget, seed=5)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert size > 20 * budget and peak < 8 * budget  # the file is 30x the budget; memory follows the budget
    kept = sum(len(t.encode()) + userdata.EXAMPLE_OVERHEAD for t in r.texts)
    assert kept <= budget and len(r) < len(rows) // 10
    assert r.sample == {"examples_read": 20_000, "examples_kept": len(r), "text_bytes_read": r.sample["text_bytes_read"],
                        "bytes_read": r.sample["text_bytes_read"] + 20_000 * userdata.EXAMPLE_OVERHEAD,
                        "max_bytes": budget, "seed": 5}
    assert r.labels.count("rare") == 2  # a label's first examples stay, so it can be stratified
    numbers = [int(i.split()[1]) for i in r.ids]
    assert numbers == sorted(numbers) and numbers[-1] > 15_000  # file order, drawn from the whole file
    assert all(texts == rows[n - 2][0] for texts, n in zip(r.texts, numbers))
    assert userdata.read(path, max_bytes=budget, seed=5).ids == r.ids  # seeded: export reads the same sample
    assert userdata.read(path, max_bytes=budget, seed=6).ids != r.ids
    assert userdata.read(path).sample is None and len(userdata.read(path)) == 20_000
    assert "pass the 0.06 MiB a run holds (--max-text-mb): kept a seeded random sample of" in r.note()

    with pytest.raises(userdata.DataError, match="cannot hold 2 examples of each of the 4 labels"):
        userdata.read(path, max_bytes=1000)  # a budget that would leave labels out is refused in one line
    # a model directory from before sampling records no budget: it is read whole again, as it was
    assert dataset.recorded_max_bytes({}) == dataset.WHOLE and dataset.recorded_max_bytes({"max_bytes": 7}) == 7
    assert userdata.read(path, max_bytes=dataset.WHOLE).sample is None

    corpus = dataset.load(path, seed=5, max_bytes=budget)
    assert "note: " in capsys.readouterr().err
    record = corpus.split_record
    assert record["files"]["train"]["sampled"]["examples_kept"] == len(r) and record["reading"]["max_bytes"] == budget
    assert len(corpus.splits["train"]) + len(corpus.splits["test"]) == len(r)


def test_skipped_json_lines_do_not_grow_memory(tmp_path):
    import tracemalloc

    from train import userdata

    path = tmp_path / "empty.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"text": "one", "label": "a"}\n{"text": "two", "label": "b"}\n')
        for i in range(50_000):  # no text: skipped, and their labels are not remembered
            f.write(f'{{"text": " ", "label": "x{i}"}}\n')
    tracemalloc.start()
    r = userdata.read(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert r.labels == ["a", "b"] and r.skipped == {"no text": 50_000} and peak < 2 << 20


def test_a_huge_line_stops_early(tmp_path, capsys, monkeypatch):
    from train import userdata

    monkeypatch.setattr(userdata, "MAX_RECORD_BYTES", 1 << 20)
    long = tmp_path / "long.jsonl"
    long.write_text('{"text": "ok", "label": "a"}\n{"text": "' + "x" * (1 << 20) + '", "label": "b"}\n')
    _refused(tmp_path, capsys, ["--data", str(long)], UNUSABLE, "long.jsonl:2", "line longer than 1 MiB")
    path = _csv(tmp_path / "d.csv", _rows(10))
    from train.__main__ import main

    for bad in ("0", "-1", "nan", "inf"):
        with pytest.raises(SystemExit) as stop:
            main(["--data", str(path), "--max-text-mb", bad, "--out", str(tmp_path / "m")])
        err = capsys.readouterr().err
        assert stop.value.code == USAGE and f"--max-text-mb {float(bad)}: expected MiB above 0" in err
        assert not (tmp_path / "m").exists()


def test_a_byte_that_is_not_utf8_names_file_and_line(tmp_path, capsys):
    path = _csv(tmp_path / "mixed.csv", _rows(4))
    data = path.read_bytes().replace(b"apple apricot avocado number 2", "caf\u00e9 na\u00efve".encode("latin-1"))
    path.write_bytes(data)
    _refused(tmp_path, capsys, ["--data", str(path)], UNUSABLE, "mixed.csv:4", "not UTF-8", "0xe9")
    folder = tmp_path / "folder"
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        (folder / label / "1.txt").write_text("fine\n")
    (folder / "b" / "2.txt").write_bytes(b"line one\nbad \xff byte\n")
    _refused(tmp_path, capsys, ["--data", str(folder)], UNUSABLE, "2.txt:2", "not UTF-8")


def test_fasttext_lines_without_text_or_with_several_labels_are_refused(tmp_path, capsys):
    no_text = tmp_path / "notext.txt"
    no_text.write_text("__label__a some words\n__label__b\n")
    _refused(tmp_path, capsys, ["--data", str(no_text)], UNUSABLE, "notext.txt:2", "label 'b' but no text")
    multi = tmp_path / "multi.txt"
    multi.write_text("__label__a words\n__label__a __label__b more words\n")
    _refused(tmp_path, capsys, ["--data", str(multi)], UNUSABLE, "multi.txt:2", "multi-label")
    jl = tmp_path / "multi.jsonl"
    jl.write_text('{"text": "x", "label": ["a", "b"]}\n')
    _refused(tmp_path, capsys, ["--data", str(jl)], UNUSABLE, "multi.jsonl:1", "multi-label")


def test_json_labels_of_two_types_that_read_alike_are_refused(tmp_path, capsys):
    """1 and "1" would silently become one label; NaN is not JSON."""
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"text": "a b", "label": 1}\n{"text": "c d", "label": "1"}\n{"text": "e f", "label": 2}\n')
    _refused(tmp_path, capsys, ["--data", str(mixed)], UNUSABLE, "mixed.jsonl:2", "same label '1'")
    nan = tmp_path / "nan.jsonl"
    nan.write_text('{"text": "a b", "label": NaN}\n')
    _refused(tmp_path, capsys, ["--data", str(nan)], UNUSABLE, "nan.jsonl:1", "NaN")


def test_a_test_label_unknown_to_training_is_refused(tmp_path, capsys):
    train = _csv(tmp_path / "train.csv", _rows(5))
    test = _csv(tmp_path / "test.csv", [("delta text", "delta")])
    _refused(tmp_path, capsys, ["--data", str(train), "--test", str(test)], UNUSABLE, "test.csv", "'delta'",
             "not in the training data")


def test_usage_errors(tmp_path, capsys):
    odd = tmp_path / "data.xlsx"
    odd.write_text("x")
    _refused(tmp_path, capsys, ["--data", str(odd)], USAGE, "data.xlsx", "--format")
    archive = _need(ROOT.parent / "shared" / "data" / "aclImdb_v1.tar.gz")
    _refused(tmp_path, capsys, ["--data", str(archive), "--test", str(odd)], USAGE, "own data")


def test_texts_shared_between_train_and_test_are_counted(tmp_path, capsys):
    from train import dataset

    train = _csv(tmp_path / "train.csv", _rows(5))
    test = _csv(tmp_path / "test.csv", _rows(5)[:4] + [("something  else", "beta")])
    dataset.load(train, test)
    assert "warning: 4 of the 5 test texts are also training texts" in capsys.readouterr().err



def test_the_test_file_as_validation_is_refused_and_shared_texts_counted(tmp_path, capsys):
    """Validation chooses settings and the refit trains on it: the test file there would
    make the test figure one of seen text."""
    from train import dataset

    train = _csv(tmp_path / "train.csv", _rows(5))
    test = _csv(tmp_path / "test.csv", [(f"{w} held {i}", w) for w in ("alpha", "beta", "gamma") for i in range(2)])
    copy = tmp_path / "copy.csv"
    copy.write_bytes(test.read_bytes())
    _refused(tmp_path, capsys, ["--data", str(train), "--test", str(test), "--validation", str(copy)], UNUSABLE,
             "copy.csv", "the same data as --test")
    val = _csv(tmp_path / "val.csv", [("alpha held 0", "alpha"), ("fresh words", "beta")])
    dataset.load(train, test, val)
    assert "warning: 1 of the 6 test texts are also validation texts (the refit trains on them)" in \
        capsys.readouterr().err


def test_a_test_file_in_another_format_is_refused(tmp_path, capsys):
    train = _csv(tmp_path / "train.csv", _rows(5))
    test = tmp_path / "test.jsonl"
    test.write_text(json.dumps({"text": "alpha words", "label": "alpha"}) + "\n", encoding="utf-8")
    _refused(tmp_path, capsys, ["--data", str(train), "--test", str(test)], UNUSABLE, "test.jsonl",
             "a jsonl file, but --data", "same format")


@pytest.mark.parametrize("line, phrase", [
    ('{"text": "a \\ud800 b", "label": "x"}', "lone surrogate"),
    ('{"text": "a", "label": "\\ud800"}', "lone surrogate"),
    ('{"text": "a", "label": "x\\u2028y"}', "line separator"),
    ('{"text": "a", "label": "x\\u202ey"}', "bidirectional"),
    ('{"text": "a", "label": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
])
def test_json_that_is_not_text_is_refused_in_one_line(tmp_path, capsys, line, phrase):
    data = tmp_path / "data.jsonl"
    rows = [json.dumps({"text": t, "label": label}) for t, label in _rows(3)]
    data.write_text("\n".join(rows[:4] + [line] + rows[4:]) + "\n", encoding="utf-8")
    line = _refused(tmp_path, capsys, ["--data", str(data)], UNUSABLE, "data.jsonl", phrase)
    assert "data.jsonl:5:" in line or "line 5" in line, line


def test_a_column_named_twice_is_refused(tmp_path, capsys):
    data = _csv(tmp_path / "data.csv", [(t, label, label) for t, label in _rows(3)], header="text,label,label")
    _refused(tmp_path, capsys, ["--data", str(data)], UNUSABLE, "data.csv", "'label' 2 times")


def test_options_that_cannot_work_are_usage_errors(tmp_path, capsys):
    train = _csv(tmp_path / "train.csv", _rows(5))
    fasttext = tmp_path / "data.txt"
    fasttext.write_text("".join(f"__label__{label} {t}\n" for t, label in _rows(3)), encoding="utf-8")
    _refused(tmp_path, capsys, ["--data", str(fasttext), "--text-column", "body"], USAGE, "--text-column",
             "fasttext")
    for option, value in (("--seed", "-1"), ("--vocab-size", "3"), ("--max-epochs", "0"), ("--subset", "-5")):
        with pytest.raises(SystemExit) as stop:
            _train(["--data", str(train), "--out", str(tmp_path / "model"), option, value], capsys)
        assert stop.value.code == USAGE
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and option in err[0], err
    assert not (tmp_path / "model").exists()


# --- training on N labels ------------------------------------------------------------------

def _subset(src: Path, dest: Path, n: int, step: int = 1) -> Path:
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    header = lines[:1] if src.suffix == ".csv" else []
    body = lines[len(header)::step][:n]
    dest.write_text("".join(header + body), encoding="utf-8")
    return dest


def test_trec_trains_six_labels_with_a_hold_out_recorded_in_splits(tmp_path, capsys):
    """The full TREC train file, the test split held out of it (no --test): only the first
    setting (--time-budget 0) to stay quick."""
    import keras

    from train.model_dir import ModelDir
    from train.ngram_model import LOGITS_LAYER

    data = _need(TREC / "train.csv")
    out = tmp_path / "trec"
    code, stdout, err = _train(["--data", str(data), "--out", str(out), "--time-budget", "0", "--quiet"], capsys)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.8  # the largest label is 23% of TREC
    assert set(metrics["per_label"]) == {"ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"}
    assert 0 < metrics["macro_f1"] <= 1 and len(metrics["tuning"]["trials"]) == 1
    import csv
    from collections import Counter

    with open(data, encoding="utf-8", newline="") as f:
        per_label = Counter(row["label"] for row in csv.DictReader(f))
    held = {name: round(0.1 * n) for name, n in per_label.items()}  # stratified: 10% of each label
    assert {name: m["support"] for name, m in metrics["per_label"].items()} == held
    n_test = sum(held.values())
    assert sum(map(sum, metrics["confusion_matrix"]["rows_true_cols_predicted"])) == n_test
    assert metrics["calibration"]["kind"] == "top-label" and 0 <= metrics["calibration"]["test_ece"] < 0.2
    config = json.loads((out / "config.json").read_text())
    assert config["labels"] == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    assert config["data"]["reading"] == {"format": "csv", "text_column": "text", "label_column": "label",
                                         "max_bytes": 64 << 20}
    splits = json.loads((out / "splits.json").read_text())
    assert splits["files"]["train"]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert splits["test"] == {"source": "hold-out", "fraction": 0.1, "of": "train"}
    test, train, val = set(splits["test_ids"]), set(splits["train_ids"]), set(splits["validation_ids"])
    assert len(test) == n_test and len(train) + len(val) + len(test) == 5452
    assert not test & (train | val) and not train & val
    assert (out / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert "| test macro-F1 |" in (out / "report.md").read_text()

    model = ModelDir(out)
    keras_model = keras.models.load_model(model.model_file, custom_objects={"NgramBag": __import__(
        "train.ngram_model", fromlist=["NgramBag"]).NgramBag})
    assert tuple(keras_model.outputs[0].shape) == (None, 6)
    assert tuple(keras_model.get_layer(LOGITS_LAYER).output.shape) == (None, 6)
    probs = keras_model.predict(model.encoder.keras_inputs(["What is the capital of France ?"]), verbose=0)
    assert probs.shape == (1, 6) and abs(float(probs.sum()) - 1) < 1e-5


def test_sst2_two_labels_keep_the_binary_model(tmp_path, capsys):
    """Two labels: one sigmoid output as in the IMDB models; --validation is a file."""
    import keras

    from train.ngram_model import NgramBag

    train = _subset(_need(SST2 / "train.jsonl"), tmp_path / "train.jsonl", 2500, 2)
    dev = _subset(SST2 / "dev.jsonl", tmp_path / "dev.jsonl", 400, 2)
    test = _subset(SST2 / "test.jsonl", tmp_path / "test.jsonl", 400, 4)
    out = tmp_path / "sst2"
    code, _, err = _train(["--data", str(train), "--validation", str(dev), "--test", str(test), "--out", str(out),
                           "--time-budget", "0", "--quiet"], capsys)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.65 and "roc_auc" in metrics
    assert metrics["confusion_matrix"]["labels"] == ["negative", "positive"]
    splits = json.loads((out / "splits.json").read_text())
    assert len(splits["validation_ids"]) == 400 and all(i.startswith("validation:") for i in splits["validation_ids"])
    model = keras.models.load_model(out / "model.keras", custom_objects={"NgramBag": NgramBag})
    assert tuple(model.outputs[0].shape) == (None, 1) and model.layers[-1].get_config()["activation"] == "sigmoid"
    assert "classes" not in model.get_layer("ngram_bag").get_config()


@pytest.mark.parametrize("recipe", ["seed-mlp", "seed-lstm"])
def test_seed_models_end_in_a_softmax_over_n_labels(recipe, tmp_path, capsys):
    import keras

    data = _subset(_need(TREC / "train.csv"), tmp_path / "small.csv", 900, 6)
    out = tmp_path / recipe
    code, _, err = _train(["--data", str(data), "--recipe", recipe, "--max-epochs", "2", "--time-budget", "0",
                           "--out", str(out), "--quiet"], capsys)
    assert code == 0, err
    model = keras.models.load_model(out / "model.keras")
    assert tuple(model.outputs[0].shape) == (None, 6)
    assert model.get_layer("logits").units == 6 and model.layers[-1].name == "probability"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_trained"] <= 2 and len(metrics["per_label"]) == 6


def test_multiclass_temperature_cools_an_overconfident_model():
    from train.calibration import fit_multiclass_temperature, softmax_tempered, top_label_ece

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 4000)
    logits = rng.normal(0, 1, (4000, 4))
    logits[np.arange(4000), y] += 1.0
    true_p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(4, p=p) for p in true_p])  # labels drawn from the true probabilities
    sharp = softmax_tempered(true_p, 1 / 2.5)  # overconfident: logits times 2.5
    t = fit_multiclass_temperature(sharp, y)
    assert 2.0 < t < 3.0
    assert top_label_ece(softmax_tempered(sharp, t), y) < top_label_ece(sharp, y) / 2


def test_malformed_rows_name_their_line(tmp_path, capsys):
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("text,label\nfine,a\ntoo,many,fields\n", encoding="utf-8")
    _refused(tmp_path, capsys, ["--data", str(ragged)], UNUSABLE, "ragged.csv:3", "3 fields, the header has 2")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "x", "label": "a"}\n{"text": "y", "label": \n', encoding="utf-8")
    _refused(tmp_path, capsys, ["--data", str(broken)], UNUSABLE, "broken.jsonl:2", "not JSON")
    headless = tmp_path / "headless.csv"
    headless.write_bytes(b"")
    _refused(tmp_path, capsys, ["--data", str(headless)], UNUSABLE, "headless.csv", "header row")
