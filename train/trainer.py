"""Training a recipe on the corpus: vocabulary, features, validation split, early stopping."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from runtime.encoding.text import settings as tokenizer_settings
from runtime.encoding.features import (NGRAM, NGRAM_SEQUENCE, SEQUENCE, Encoder, MultiHotEncoder, NgramEncoder,
                                       NgramSequenceEncoder, SequenceEncoder, pad_word_ids)
from runtime.encoding.vocab import Vocabulary
from train import calibration, model_dir, report, tuning
from train.corpus import Corpus, Split
from train.environment import library_versions
from train.recipes import Recipe, build_model
from train.tuning import best_epoch_of


@dataclass
class Trained:
    model: object
    vocab: Vocabulary
    encoder: Encoder
    history: dict
    train_idx: np.ndarray
    val_idx: np.ndarray
    held_out: str  # what validation holds out: "movies" or "reviews"
    val_probs: np.ndarray  # the early-stopped model's P(positive) (N > 2: (n, N) probabilities) on validation
    x: np.ndarray | None = None  # the model inputs of every training example
    y: np.ndarray | None = None
    labels: int = 2
    refitted: bool = False
    order: dict | None = None  # the order-aware model's choices (train.order_training)
    order_parts: object = None  # what train.order_training.refit needs (its Parts)


MAX_VALIDATION_SHARE = 0.4  # of the training reviews, at most, held out for validation


def validation_split(n: int, size: int, seed: int, groups: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, validation) index arrays over ``n`` training reviews.

    With ``groups`` (the movie of each review), whole movies go to validation, in a seeded
    order, until it holds at least ``size`` reviews: no movie is on both sides, as in the
    official train/test split, so validation accuracy estimates test accuracy instead of
    rewarding a model that memorized the names of the training movies.

    ``size`` is capped at ``MAX_VALIDATION_SHARE`` of ``n``: a small corpus (a ``--subset``
    sample, a small folder in the aclImdb layout) keeps most of its reviews to train on.
    """
    size = min(size, int(n * MAX_VALIDATION_SHARE))
    rng = np.random.default_rng(seed)
    if groups is None:
        order = rng.permutation(n)
        return np.sort(order[size:]), np.sort(order[:size])
    titles, movie = np.unique(np.asarray(groups), return_inverse=True)
    rank = np.argsort(rng.permutation(len(titles)))[movie]
    per_rank = np.bincount(rank, minlength=len(titles))
    cut = int(np.searchsorted(np.cumsum(per_rank), size)) + 1
    held = rank < cut
    return np.flatnonzero(~held), np.flatnonzero(held)


def movie_groups(split: Split, recipe: Recipe) -> list[str] | None:
    """The movie of each review when the recipe validates on held-out movies, else None.

    A copy of the corpus without its ``urls_*.txt`` files has no movie titles: validation
    then holds out single reviews, and says so.
    """
    if recipe.validation_by != "movie":
        return None
    if split.movies and all(split.movies):
        return split.movies
    print(f"warning: {recipe.name} validates on held-out movies, but the corpus has no "
          f"train/urls_*.txt: holding out single reviews instead", file=sys.stderr)
    return None


def encoder_for_recipe(recipe: Recipe, vocab: Vocabulary) -> Encoder:
    """The runtime's encoder for the recipe's feature kind."""
    if recipe.family == SEQUENCE:
        return SequenceEncoder(vocab, recipe.sequence_length)
    if recipe.family == NGRAM:
        return NgramEncoder(vocab, recipe.buckets)
    if recipe.family == NGRAM_SEQUENCE:
        return NgramSequenceEncoder(vocab, recipe.buckets, recipe.sequence_length)
    return MultiHotEncoder(vocab)


def keras_inputs(encoder: Encoder, texts: list[str], desc: str, chunk: int = 1000) -> np.ndarray:
    """``encoder.keras_inputs`` over ``texts`` in chunks, with a progress bar.

    Id rows (n-gram family) are padded with 0 to the longest of all the chunks.
    """
    parts = [encoder.keras_inputs(texts[i : i + chunk])
             for i in tqdm(range(0, len(texts), chunk), desc=desc, unit="k reviews", mininterval=1.0)]
    if not parts:
        return encoder.keras_inputs([])
    if encoder.family in (NGRAM, NGRAM_SEQUENCE):
        return pad_word_ids([row for part in parts for row in part])
    return np.concatenate(parts)


def fit(train: Split, recipe: Recipe, seed: int, verbose: int = 2, labels: int = 2,
        val_idx: np.ndarray | None = None, refit: bool | None = None, time_budget: float | None = None,
        corpus_archive: Path | None = None) -> Trained:
    """Build the vocabulary on the training split and fit with early stopping.

    Args:
        train: the training examples (validation is held out of them).
        recipe: the recipe.
        seed: the seed of the split, the initial weights and the shuffling.
        verbose: Keras' verbosity.
        labels: the number of labels (2: one sigmoid output; more: a softmax over them).
        val_idx: the validation examples' indexes in ``train``; None to hold out
            ``recipe.validation_size`` reviews (or whole movies) as ``validation_split`` does.
        refit: whether to train again on every example for the kept epochs; None: the recipe's.
        time_budget: seconds the order-aware family may spend on its branches (None: the default).
        corpus_archive: the aclImdb corpus ``train`` comes from, if it does (the order-aware
            family's word vectors then learn from its unlabelled reviews too).

    Returns:
        The trained model with its vocabulary, encoder, history and validation figures.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()

    texts = tqdm(train.texts, desc="vocabulary", unit="review", mininterval=1.0)
    vocab = Vocabulary.build(texts, recipe.vocab_size)
    encoder = encoder_for_recipe(recipe, vocab)
    x = keras_inputs(encoder, train.texts, "encode train")
    y = np.asarray(train.labels, dtype=np.float32 if labels == 2 else np.int32)
    if val_idx is None:
        groups = movie_groups(train, recipe)
        train_idx, val_idx = validation_split(len(y), recipe.validation_size, seed, groups)
        held_out = "reviews" if groups is None else "movies"
    else:
        val_idx = np.asarray(val_idx, np.int64)
        train_idx = np.setdiff1d(np.arange(len(y)), val_idx)
        held_out = "examples"

    if encoder.family == NGRAM_SEQUENCE:
        from train import order_training

        budget = tuning.DEFAULT_TIME_BUDGET if time_budget is None else time_budget
        model, hist, val_probs, order, parts = order_training.fit(x, y, train_idx, val_idx, train.texts, encoder,
                                                                  recipe, labels, seed, verbose, budget,
                                                                  corpus_archive)
        trained = Trained(model, vocab, encoder, hist, train_idx, val_idx, held_out, val_probs, x, y, labels,
                          order=order, order_parts=parts)
        if recipe.refit if refit is None else refit:
            refit_all(trained, recipe, seed, verbose)
        return trained
    width = encoder.length if encoder.family == SEQUENCE else encoder.table_rows
    model = _compiled(recipe, encoder, width, x[train_idx], y[train_idx], labels)
    stop = keras.callbacks.EarlyStopping(
        monitor=recipe.monitor, patience=recipe.patience, restore_best_weights=True
    )
    history = model.fit(
        x[train_idx],
        y[train_idx],
        validation_data=(x[val_idx], y[val_idx]),
        epochs=recipe.max_epochs,
        batch_size=recipe.batch_size,
        callbacks=[*_averaging(recipe), stop],
        shuffle=True,
        verbose=verbose,
    )
    val_probs = model.predict(x[val_idx], batch_size=recipe.batch_size, verbose=0)
    val_probs = val_probs.reshape(-1) if labels == 2 else val_probs
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    trained = Trained(model, vocab, encoder, hist, train_idx, val_idx, held_out, val_probs, x, y, labels)
    if recipe.refit if refit is None else refit:
        refit_all(trained, recipe, seed, verbose)
    return trained


def _averaging(recipe: Recipe) -> list:
    """With a weight average, validation scores the averaged weights and early stopping keeps
    them: the swap must come before EarlyStopping so that it snapshots the average."""
    import keras

    return [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if recipe.ema_momentum else []


def refit_all(trained: Trained, recipe: Recipe, seed: int, verbose: int = 2) -> None:
    """Replace ``trained.model`` by a model trained on every example (validation included) for
    the epochs early stopping kept: they were chosen on validation; the final model learns
    from every training example."""
    import keras

    keras.utils.set_random_seed(seed)
    encoder = trained.encoder
    if trained.order_parts is not None:  # the order-aware family: both parts, same weight
        from train import order_training

        trained.model, seconds = order_training.refit(trained.x, trained.y, encoder, recipe, trained.labels,
                                                      trained.order_parts, seed, verbose)
        trained.order["seconds"]["refit"] = seconds
        trained.refitted = True
        return
    width = encoder.length if encoder.family == SEQUENCE else encoder.table_rows
    model = _compiled(recipe, encoder, width, trained.x, trained.y, trained.labels)
    model.fit(trained.x, trained.y, epochs=best_epoch_of(trained.history, recipe.monitor),
              batch_size=recipe.batch_size, callbacks=_averaging(recipe), shuffle=True, verbose=verbose)
    trained.model = model
    trained.refitted = True


def _compiled(recipe: Recipe, encoder: Encoder, width: int, x: np.ndarray, y: np.ndarray, labels: int = 2):
    """A new compiled model; an n-gram model gets its Naive-Bayes ratios from ``(x, y)``
    (one-vs-rest, one column per label, for N > 2)."""
    model = build_model(recipe, width, len(encoder.vocab), labels=labels)
    if encoder.family == NGRAM:
        from train.ngram_model import bag_of, log_count_ratios, one_vs_rest_ratios

        ratios = (log_count_ratios(x, y, encoder.table_rows) if labels == 2
                  else one_vs_rest_ratios(x, y, encoder.table_rows, labels))
        bag_of(model).ratios.assign(ratios)
    return model


def run(corpus: Corpus, recipe: Recipe, seed: int, out: Path, verbose: int = 2,
        time_budget: float | None = None, keep: frozenset[str] = frozenset()) -> dict:
    """Train, evaluate on the test split, and publish the model directory at ``out``.

    Args:
        corpus: the aclImdb corpus (``train.corpus``) or a user's data (``train.dataset``).
        recipe: the recipe; on a user's data its sizes are fitted to the data and its
            data-dependent settings chosen on validation (``train.tuning``).
        seed: the seed.
        out: the model directory to write (replaced in one rename at the end).
        verbose: Keras' verbosity.
        time_budget: seconds for the search on a user's data (``tuning.DEFAULT_TIME_BUDGET``).
        keep: the recipe's fields the user set: neither fitted to a user's data nor searched.

    Returns:
        The test figures (as in metrics.json).
    """
    if corpus.user_data:
        return _run_user_data(corpus, recipe, seed, out, verbose, time_budget, keep)
    train, test = corpus.splits["train"], corpus.splits["test"]
    trained = fit(train, recipe, seed, verbose, corpus_archive=Path(corpus.source))
    x_test = keras_inputs(trained.encoder, test.texts, "encode test")
    y_test = np.asarray(test.labels, dtype=np.int64)
    test_loss = float(trained.model.evaluate(x_test, y_test.astype(np.float32), batch_size=recipe.batch_size, verbose=0)[0])
    probs = trained.model.predict(x_test, batch_size=recipe.batch_size, verbose=0).reshape(-1)

    val_loss = trained.history["val_loss"]
    best_epoch = best_epoch_of(trained.history, recipe.monitor)
    metrics = report.classification_metrics(y_test, probs)
    metrics.update(test_loss=test_loss, epochs_trained=len(val_loss), best_epoch=best_epoch,
                   early_stopping_monitor=recipe.monitor, validation_holds_out=trained.held_out,
                   best_val_loss=float(val_loss[best_epoch - 1]),
                   best_val_accuracy=float(trained.history["val_accuracy"][best_epoch - 1]),
                   refit=recipe.refit, final_model_reviews=len(train) if recipe.refit else int(len(trained.train_idx)))
    _add_order_record(metrics, trained)
    y_val = np.asarray(train.labels)[trained.val_idx]
    metrics["calibration"] = {**calibration.temperature_decision(trained.val_probs, y_val),
                              "test_ece": calibration.expected_calibration_error(probs, y_test),
                              "bins": calibration.BINS}
    config = _config(recipe, seed, trained, corpus, len(test))
    splits = {"train_ids": [train.ids[i] for i in trained.train_idx],
              "validation_ids": [train.ids[i] for i in trained.val_idx]}
    with model_dir.publish(out) as writer:
        writer.model(trained.model)
        writer.vocabulary(trained.vocab)
        writer.json(config, splits, trained.history, metrics)
        report.write_all(writer.path, trained.history, metrics, y_test, probs, test)
        calibration.plot_reliability(
            {"validation (early-stopped model)": calibration.reliability(trained.val_probs, y_val),
             "test (final model)": calibration.reliability(probs, y_test)},
            writer.path / "reliability.png", f"Reliability of {recipe.name}")
    return metrics


def _config(recipe: Recipe, seed: int, trained: Trained, corpus: Corpus, test_size: int, **data) -> dict:
    """config.json: the recipe as trained, the tokenizer, features and vocabulary, the labels,
    where the data came from and how it was split (``data``: what a user's data adds)."""
    return {
        "recipe": recipe.to_dict(),
        "seed": seed,
        "tokenizer": tokenizer_settings(),
        "features": trained.encoder.spec(),
        "vocabulary": {"file": model_dir.VOCAB_FILE, "size": len(trained.vocab), "sha256": trained.vocab.sha256()},
        "labels": list(corpus.labels),
        "data": {
            "source": corpus.source,
            "archive_sha256": corpus.archive_sha256,
            "content_sha256": corpus.content_sha256,
            "counts": corpus.counts(),
            "train_reviews": int(len(trained.train_idx)),
            "validation_reviews": int(len(trained.val_idx)),
            "validation_holds_out": trained.held_out,
            "test_reviews": test_size,
            **data,
        },
        "versions": library_versions(),
    }


def _add_order_record(metrics: dict, trained: Trained) -> None:
    """The order-aware model's choices; its validation accuracy is the combined model's (the
    per-epoch history is the convolution branch's)."""
    if trained.order is not None:
        metrics["order_aware"] = trained.order
        metrics["best_val_accuracy"] = trained.order["validation_accuracy"]["combined"]


def _joined(a: Split, b: Split) -> Split:
    return Split(a.texts + b.texts, a.labels + b.labels, a.ids + b.ids, [])


def _run_user_data(corpus: Corpus, recipe: Recipe, seed: int, out: Path, verbose: int,
                   time_budget: float | None, keep: frozenset[str]) -> dict:
    """``run`` on a user's data: N labels, stratified validation, settings chosen on validation."""
    import time

    from train.dataset import VALIDATION_FRACTION, stratified_split

    started = time.monotonic()
    n_labels = len(corpus.labels)
    train, test = corpus.splits["train"], corpus.splits["test"]
    if corpus.validation is not None:
        train = _joined(train, corpus.validation)
        val_idx = np.arange(len(corpus.splits["train"]), len(train))
        validation_source = "file"
    else:
        _, val_idx = stratified_split(np.asarray(train.labels), VALIDATION_FRACTION, seed)
        validation_source = "hold-out"
    if len(val_idx) == 0:
        from train.errors import DataError

        raise DataError(f"{corpus.source}: too few examples to hold out a validation split")
    budget = tuning.DEFAULT_TIME_BUDGET if time_budget is None else time_budget
    base = tuning.adapt(recipe, train.texts, n_labels, keep)

    def log(line: str) -> None:
        if verbose:
            print(line, file=sys.stderr)

    best, trials = tuning.search(lambda r: fit(train, r, seed, 0 if verbose < 2 else verbose, n_labels, val_idx,
                                               refit=False, time_budget=budget),
                                 tuning.candidates(base, keep), budget, log)
    chosen, trained = trials[best]["recipe"], trials[best]["trained"]
    log(f"tuning: chose {tuning.record(trials, best, budget)['trials'][best]['setting']}")
    if chosen.refit:
        refit_all(trained, chosen, seed, 0 if verbose < 2 else verbose)
    seconds = time.monotonic() - started

    x_test = keras_inputs(trained.encoder, test.texts, "encode test")
    y_test = np.asarray(test.labels, dtype=np.int64)
    y_fit = y_test.astype(np.float32) if n_labels == 2 else y_test.astype(np.int32)
    test_loss = float(trained.model.evaluate(x_test, y_fit, batch_size=chosen.batch_size, verbose=0)[0])
    probs = trained.model.predict(x_test, batch_size=chosen.batch_size, verbose=0)
    y_val = np.asarray(train.labels)[trained.val_idx]
    val_loss = trained.history["val_loss"]
    best_epoch = best_epoch_of(trained.history, chosen.monitor)
    if n_labels == 2:
        probs = probs.reshape(-1)
        metrics = report.classification_metrics(y_test, probs, labels=corpus.labels)
        metrics.update(report.per_label_metrics(y_test, (probs >= 0.5).astype(np.int64), corpus.labels))
        metrics["calibration"] = {**calibration.temperature_decision(trained.val_probs, y_val),
                                  "test_ece": calibration.expected_calibration_error(probs, y_test),
                                  "bins": calibration.BINS}
        curves = {"validation (early-stopped model)": calibration.reliability(trained.val_probs, y_val),
                  "test (final model)": calibration.reliability(probs, y_test)}
    else:
        metrics = report.multiclass_metrics(y_test, probs, corpus.labels)
        metrics["calibration"] = {**calibration.multiclass_temperature_decision(trained.val_probs, y_val),
                                  "test_ece": calibration.top_label_ece(probs, y_test),
                                  "bins": calibration.BINS, "kind": "top-label"}
        curves = {"validation (early-stopped model)": calibration.top_label_reliability(trained.val_probs, y_val),
                  "test (final model)": calibration.top_label_reliability(probs, y_test)}
    metrics.update(test_loss=test_loss, epochs_trained=len(val_loss), best_epoch=best_epoch,
                   early_stopping_monitor=chosen.monitor, validation_holds_out=trained.held_out,
                   best_val_loss=float(val_loss[best_epoch - 1]),
                   best_val_accuracy=float(trained.history["val_accuracy"][best_epoch - 1]),
                   refit=trained.refitted, final_model_reviews=len(train) if trained.refitted else int(len(trained.train_idx)),
                   training_seconds=round(seconds, 1), tuning=tuning.record(trials, best, budget))
    _add_order_record(metrics, trained)
    config = _config(chosen, seed, trained, corpus, len(test), validation_source=validation_source,
                     files=corpus.split_record["files"], reading=corpus.split_record["reading"])
    splits = {**corpus.split_record,
              "validation": {"source": validation_source, "fraction": VALIDATION_FRACTION if validation_source == "hold-out" else None},
              "train_ids": [train.ids[i] for i in trained.train_idx],
              "validation_ids": [train.ids[i] for i in trained.val_idx]}
    with model_dir.publish(out) as writer:
        writer.model(trained.model)
        writer.vocabulary(trained.vocab)
        writer.json(config, splits, trained.history, metrics)
        report.write_all(writer.path, trained.history, metrics, y_test, probs, test, corpus.labels)
        calibration.plot_reliability(curves, writer.path / "reliability.png", f"Reliability of {chosen.name}",
                                     top_label=n_labels > 2)
    return metrics
