"""Training end to end on a subset, and the single-tokenizer rule."""

import json
import re

import numpy as np

from conftest import ROOT


def test_small_training_writes_every_artifact(small_model):
    names = {p.name for p in small_model.iterdir()}
    assert {"model.keras", "vocab.txt", "config.json", "splits.json", "history.json", "metrics.json",
            "history.png", "confusion_matrix.png", "probabilities.png", "mistakes.txt", "report.md"} <= names
    metrics = json.loads((small_model / "metrics.json").read_text())
    for key in ("test_accuracy", "test_loss", "precision", "recall", "f1", "roc_auc", "confusion_matrix",
                "epochs_trained", "best_epoch"):
        assert key in metrics
    assert metrics["test_accuracy"] > 0.75  # chance is 0.5
    assert sum(map(sum, metrics["confusion_matrix"]["rows_true_cols_predicted"])) == 2000
    config = json.loads((small_model / "config.json").read_text())
    assert config["tokenizer"] == {"name": "imdb-words", "version": 1}
    assert config["vocabulary"]["size"] == 2000 and len(config["data"]["content_sha256"]) == 64
    history = json.loads((small_model / "history.json").read_text())
    assert len(history["val_loss"]) == metrics["epochs_trained"]
    for png in ("history.png", "confusion_matrix.png", "probabilities.png"):
        assert (small_model / png).read_bytes()[:4] == b"\x89PNG"
    mistakes = (small_model / "mistakes.txt").read_text()
    assert re.search(r"test/(pos|neg)/\d+_\d+  true=", mistakes)


def test_validation_split_is_disjoint_and_seeded(small_model):
    splits = json.loads((small_model / "splits.json").read_text())
    assert len(splits["validation_ids"]) == 2000 and len(splits["train_ids"]) == 3000
    assert not set(splits["validation_ids"]) & set(splits["train_ids"])
    assert all(i.startswith("train/") for i in splits["validation_ids"] + splits["train_ids"])


def test_validation_by_movie_holds_out_whole_movies(corpus):
    from train.trainer import validation_split

    movies = corpus.splits["train"].movies
    train_idx, val_idx = validation_split(len(movies), 5000, 1337, movies)
    assert 5000 <= len(val_idx) < 5040 and len(train_idx) + len(val_idx) == len(movies)
    assert not {movies[i] for i in train_idx} & {movies[i] for i in val_idx}
    again, _ = validation_split(len(movies), 5000, 1337, movies)
    other, _ = validation_split(len(movies), 5000, 7, movies)
    assert (again == train_idx).all() and not np.array_equal(other, train_idx)


def test_a_small_corpus_keeps_most_of_its_reviews_to_train_on():
    from train.trainer import MAX_VALIDATION_SHARE, validation_split

    train_idx, val_idx = validation_split(40, 5000, 1337)
    assert len(val_idx) == int(40 * MAX_VALIDATION_SHARE) == 16 and len(train_idx) == 24
    movies = [f"tt{i // 2}" for i in range(40)]  # whole movies: at least the capped size
    train_idx, val_idx = validation_split(40, 5000, 1337, movies)
    assert 16 <= len(val_idx) <= 17 and len(train_idx) + len(val_idx) == 40


def test_seed_lstm_validates_on_held_out_movies(small_lstm_model, small_model, corpus):
    config = json.loads((small_lstm_model / "config.json").read_text())
    assert config["data"]["validation_holds_out"] == "movies"
    splits = json.loads((small_lstm_model / "splits.json").read_text())
    movie = dict(zip(corpus.splits["train"].ids, corpus.splits["train"].movies))
    assert not {movie[i] for i in splits["validation_ids"]} & {movie[i] for i in splits["train_ids"]}
    assert "| validation holds out | whole movies |" in (small_lstm_model / "report.md").read_text()
    assert json.loads((small_model / "config.json").read_text())["data"]["validation_holds_out"] == "reviews"


def test_validation_by_movie_falls_back_to_reviews_without_titles(capsys):
    import dataclasses

    from train.corpus import Split
    from train.recipes import SEED_LSTM
    from train.trainer import movie_groups

    titled = Split(["a", "b"], [0, 1], ["train/neg/0_1", "train/pos/0_9"], ["tt1", "tt2"])
    untitled = Split(["a", "b"], [0, 1], ["train/neg/0_1", "train/pos/0_9"], ["", ""])
    assert movie_groups(titled, SEED_LSTM) == ["tt1", "tt2"]
    assert movie_groups(titled, dataclasses.replace(SEED_LSTM, validation_by="review")) is None
    assert movie_groups(untitled, SEED_LSTM) is None
    assert "holding out single reviews instead" in capsys.readouterr().err


def test_same_seed_same_vocabulary(corpus):
    from runtime.encoding.vocab import Vocabulary

    a = corpus.splits["train"].sample(1000, 3)
    b = corpus.splits["train"].sample(1000, 3)
    assert a.ids == b.ids
    assert Vocabulary.build(a.texts, 500).tokens == Vocabulary.build(b.texts, 500).tokens


def _imports(path):
    """(line, module) of every import in a file, relative ones resolved against its package."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = path.parent.name
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                module = f"{package}.{module}".rstrip(".")
            found += [(node.lineno, module, alias.name) for alias in node.names]
    return found


def _top(module):
    return module.split(".")[0]


def _violations(folder, rule):
    out = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for line, module, name in _imports(path):
            problem = rule(path, module, name)
            if problem:
                out.append(f"{path.relative_to(ROOT)}:{line}: {problem}")
    return out


def test_import_rules_keep_one_way_layers_and_one_tokenizer():
    """runtime imports nothing of train, export or benchmarks (nor TensorFlow); benchmarks
    import nothing of export; outside runtime/ no module reaches the tokenizer or normalizes
    text itself: features are made only through runtime.encoding.features' encoders.

    benchmarks/peers.py holds the deliberately naive pipelines that are measured against the
    runtime, and nothing imports it to make features; benchmarks/measure.py times the
    runtime's own ``tokenize`` as a floor.
    """
    allowed = {("peers.py", None), ("measure.py", "tokenize")}
    def runtime_rule(path, module, name):
        if _top(module) in ("train", "export", "benchmarks", "tensorflow", "keras", "tf2onnx"):
            return f"runtime imports {module}"

    # runtime/'s rooms, each importing only rooms before it: encoding/ (text to model inputs)
    # knows no engine, bundle, command or check; engines/ knows no text; nothing of the
    # library imports cli/ (the command line) or checks/ (the release checks).
    below = {"encoding": {"encoding"}, "engines": {"engines"}, "bundle": {"bundle", "encoding", "engines"},
             "face": {"encoding", "engines", "bundle"}, "checks": {"encoding", "engines", "bundle", "face", "checks"},
             "cli": {"encoding", "engines", "bundle", "face", "cli"}}
    rooms = ("encoding", "engines", "bundle", "cli", "checks")
    leaves = ("errors", "probability", "atomic", "exitcodes")
    leaves_full = {f"runtime.{m}" for m in leaves}

    def room(module):
        parts = module.split(".")
        return parts[1] if len(parts) > 1 and parts[1] in rooms else "face"

    def folder_rule(path, module, name):
        if _top(module) != "runtime" or path.name in ("classify.py", "parity.py") and path.parent.name == "runtime":
            return None  # the two ``python -m`` entry points
        here = path.parent.name if path.parent.name in rooms else "face"
        full = module if module != "runtime" or name is None else f"runtime.{name}"
        if path.parent.name == "runtime" and path.stem in leaves:
            return f"{path.name} is a leaf of runtime/ and imports {full}" if full not in leaves_full else None
        if full in leaves_full:
            return None  # the error base, the logit/sigmoid pair, atomic writes and exit statuses serve every room
        if here == "face" and room(full) == "face" or room(full) in below[here]:
            return None
        return f"runtime/{here} imports {full}"

    def cli_rule(path, module, name):
        # benchmarks/volume.py runs the command line as a user does and reads its Ray switch
        if module.startswith("runtime.cli") and not (path.name == "volume.py" and name == "LOCAL_ONLY"):
            return f"{path.parent.name} imports {module}: only the entry points use runtime.cli"

    def benchmarks_rule(path, module, name):
        if _top(module) == "export":
            return f"benchmarks import {module}"

    def tokenizer_rule(path, module, name):
        if path.parent.name == "benchmarks" and ((path.name, None) in allowed or (path.name, name) in allowed):
            return None
        if module == "runtime.encoding.text" and name != "settings":
            return f"imports runtime.encoding.text.{name}: only runtime.encoding.features may tokenize"
        if module == "runtime.encoding" and name == "text":
            return "imports runtime.encoding.text: only runtime.encoding.features may tokenize"
        if module in ("unicodedata", "string"):
            return f"imports {module}: text normalization belongs to runtime.encoding.text"

    offenders = _violations("runtime", runtime_rule) + _violations("benchmarks", benchmarks_rule)
    offenders += _violations("runtime", folder_rule)
    for folder in ("train", "export", "benchmarks"):
        offenders += _violations(folder, cli_rule)
    for folder in ("train", "export", "benchmarks"):
        offenders += _violations(folder, tokenizer_rule)
    assert not offenders, "\n".join(offenders)


def test_the_import_rules_see_what_they_must(tmp_path):
    pkg = tmp_path / "runtime"
    pkg.mkdir()
    (pkg / "m.py").write_text("import numpy\nfrom .text import chunks\nfrom train import data\n")
    assert [(m, n) for _, m, n in _imports(pkg / "m.py")] == [("numpy", None), ("runtime.text", "chunks"),
                                                               ("train", "data")]


def test_training_features_are_the_runtime_features(small_model, corpus):
    """The features train/ fed the model are byte-identical to what the runtime computes."""
    from runtime.encoding.features import MultiHotEncoder, known_words
    from runtime.encoding.vocab import Vocabulary
    from train.recipes import SEED_MLP
    from train.trainer import encoder_for_recipe, keras_inputs

    vocab = Vocabulary.load(small_model / "vocab.txt")
    texts = corpus.splits["test"].texts[:500]
    trained = keras_inputs(encoder_for_recipe(SEED_MLP, vocab), texts, "test")
    runtime_side = MultiHotEncoder(Vocabulary.load(small_model / "vocab.txt")).keras_inputs(texts)
    np.testing.assert_array_equal(trained, runtime_side)
    # What the exported models are fed is exactly the ones of those rows.
    exported = MultiHotEncoder(vocab).model_inputs(texts)
    np.testing.assert_array_equal(known_words(exported), np.count_nonzero(trained, axis=1))


def test_sequence_recipe_trains_on_the_runtime_encoder(corpus, tmp_path):
    """seed-lstm's path on a subset: int32 id sequences from runtime's SequenceEncoder."""
    import dataclasses

    from runtime.encoding.features import SequenceEncoder
    from runtime.encoding.vocab import Vocabulary
    from train import trainer
    from train.corpus import Corpus
    from train.recipes import SEED_LSTM

    sub = Corpus(corpus.source, {"train": corpus.splits["train"].sample(1500, 1),
                                 "test": corpus.splits["test"].sample(500, 2)}, None, "")
    recipe = dataclasses.replace(SEED_LSTM, vocab_size=1500, sequence_length=48, embedding_dim=8,
                                 hidden=(8,), validation_size=500, max_epochs=2, batch_size=64)
    metrics = trainer.run(sub, recipe, seed=3, out=tmp_path / "lstm", verbose=0)
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["epochs_trained"] >= 1
    config = json.loads((tmp_path / "lstm" / "config.json").read_text())
    assert config["features"]["family"] == "sequence" and config["features"]["length"] == 48
    vocab = Vocabulary.load(tmp_path / "lstm" / "vocab.txt")
    assert config["features"]["vocab_size"] == len(vocab)
    texts = sub.splits["test"].texts[:50]
    np.testing.assert_array_equal(trainer.keras_inputs(SequenceEncoder(vocab, 48), texts, "t"),
                                  SequenceEncoder(Vocabulary.load(tmp_path / "lstm" / "vocab.txt"), 48).model_inputs(texts))


def test_weight_average_is_what_validation_scored_and_what_is_kept(corpus):
    """With ``ema_momentum`` the kept model is the moving average at the best epoch: scoring it
    again on the validation reviews gives exactly the history's best figures."""
    import dataclasses

    from train import trainer
    from train.recipes import SEED_MLP

    train = corpus.splits["train"].sample(2500, 1)
    recipe = dataclasses.replace(SEED_MLP, vocab_size=2000, validation_size=1000, max_epochs=4, patience=4,
                                 monitor="val_accuracy", ema_momentum=0.9)
    fit = trainer.fit(train, recipe, seed=4, verbose=0)
    raw = trainer.fit(train, dataclasses.replace(recipe, ema_momentum=None), seed=4, verbose=0)
    # The same seed takes the same raw steps, so different figures mean the average was scored.
    assert all(abs(a - b) > 1e-4 for a, b in zip(fit.history["val_loss"][1:], raw.history["val_loss"][1:]))
    best = trainer.best_epoch_of(fit.history, recipe.monitor)
    x = fit.encoder.keras_inputs([train.texts[i] for i in fit.val_idx])
    y = np.asarray([train.labels[i] for i in fit.val_idx], dtype=np.float32)
    loss, accuracy = fit.model.evaluate(x, y, batch_size=512, verbose=0)
    assert abs(loss - fit.history["val_loss"][best - 1]) < 1e-5
    assert abs(accuracy - fit.history["val_accuracy"][best - 1]) < 1e-6
    assert fit.model.optimizer.use_ema
