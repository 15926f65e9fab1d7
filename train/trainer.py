"""Training a recipe on the corpus: vocabulary, features, validation split, early stopping."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from runtime.encoding.text import settings as tokenizer_settings
from runtime.encoding.features import NGRAM, SEQUENCE, Encoder, MultiHotEncoder, NgramEncoder, SequenceEncoder, pad_word_ids
from runtime.encoding.vocab import Vocabulary
from train import calibration, model_dir, report
from train.corpus import Corpus, Split
from train.environment import library_versions
from train.recipes import Recipe, build_model


@dataclass
class Trained:
    model: object
    vocab: Vocabulary
    encoder: Encoder
    history: dict
    train_idx: np.ndarray
    val_idx: np.ndarray
    held_out: str  # what validation holds out: "movies" or "reviews"
    val_probs: np.ndarray  # the early-stopped model's P(positive) on validation, before any refit


def validation_split(n: int, size: int, seed: int, groups: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, validation) index arrays over ``n`` training reviews.

    With ``groups`` (the movie of each review), whole movies go to validation, in a seeded
    order, until it holds at least ``size`` reviews: no movie is on both sides, as in the
    official train/test split, so validation accuracy estimates test accuracy instead of
    rewarding a model that memorized the names of the training movies.
    """
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
    return MultiHotEncoder(vocab)


def keras_inputs(encoder: Encoder, texts: list[str], desc: str, chunk: int = 1000) -> np.ndarray:
    """``encoder.keras_inputs`` over ``texts`` in chunks, with a progress bar.

    Id rows (n-gram family) are padded with 0 to the longest of all the chunks.
    """
    parts = [encoder.keras_inputs(texts[i : i + chunk])
             for i in tqdm(range(0, len(texts), chunk), desc=desc, unit="k reviews", mininterval=1.0)]
    if not parts:
        return encoder.keras_inputs([])
    if encoder.family == NGRAM:
        return pad_word_ids([row for part in parts for row in part])
    return np.concatenate(parts)


def fit(train: Split, recipe: Recipe, seed: int, verbose: int = 2) -> Trained:
    """Build the vocabulary on the training split and fit with early stopping."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()

    texts = tqdm(train.texts, desc="vocabulary", unit="review", mininterval=1.0)
    vocab = Vocabulary.build(texts, recipe.vocab_size)
    encoder = encoder_for_recipe(recipe, vocab)
    x = keras_inputs(encoder, train.texts, "encode train")
    y = np.asarray(train.labels, dtype=np.float32)
    groups = movie_groups(train, recipe)
    train_idx, val_idx = validation_split(len(y), recipe.validation_size, seed, groups)

    width = encoder.length if encoder.family == SEQUENCE else encoder.table_rows
    model = _compiled(recipe, encoder, width, x[train_idx], y[train_idx])
    stop = keras.callbacks.EarlyStopping(
        monitor=recipe.monitor, patience=recipe.patience, restore_best_weights=True
    )
    # With a weight average, validation scores the averaged weights and early stopping keeps
    # them: the swap must come before EarlyStopping so that it snapshots the average.
    averaging = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if recipe.ema_momentum else []
    history = model.fit(
        x[train_idx],
        y[train_idx],
        validation_data=(x[val_idx], y[val_idx]),
        epochs=recipe.max_epochs,
        batch_size=recipe.batch_size,
        callbacks=[*averaging, stop],
        shuffle=True,
        verbose=verbose,
    )
    val_probs = model.predict(x[val_idx], batch_size=recipe.batch_size, verbose=0).reshape(-1)
    if recipe.refit:
        # The epochs were chosen on validation; the final model learns from every training review.
        keras.utils.set_random_seed(seed)
        model = _compiled(recipe, encoder, width, x, y)
        model.fit(x, y, epochs=best_epoch_of(history.history, recipe.monitor), batch_size=recipe.batch_size,
                  callbacks=averaging, shuffle=True, verbose=verbose)
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    return Trained(model, vocab, encoder, hist, train_idx, val_idx, "reviews" if groups is None else "movies",
                   val_probs)


def _compiled(recipe: Recipe, encoder: Encoder, width: int, x: np.ndarray, y: np.ndarray):
    """A new compiled model; an n-gram model gets its Naive-Bayes ratios from ``(x, y)``."""
    model = build_model(recipe, width, len(encoder.vocab))
    if encoder.family == NGRAM:
        from train.ngram_model import bag_of, log_count_ratios

        bag_of(model).ratios.assign(log_count_ratios(x, y, encoder.table_rows))
    return model


def best_epoch_of(history: dict, monitor: str) -> int:
    """The 1-based epoch early stopping kept: lowest loss, or highest accuracy."""
    values = history[monitor]
    return int(np.argmax(values) if "accuracy" in monitor else np.argmin(values)) + 1


def run(corpus: Corpus, recipe: Recipe, seed: int, out: Path, verbose: int = 2) -> dict:
    """Train, evaluate on the test split, and publish the model directory at ``out``."""
    train, test = corpus.splits["train"], corpus.splits["test"]
    trained = fit(train, recipe, seed, verbose)
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
    y_val = np.asarray(train.labels)[trained.val_idx]
    metrics["calibration"] = {**calibration.temperature_decision(trained.val_probs, y_val),
                              "test_ece": calibration.expected_calibration_error(probs, y_test),
                              "bins": calibration.BINS}
    config = {
        "recipe": recipe.to_dict(),
        "seed": seed,
        "tokenizer": tokenizer_settings(),
        "features": trained.encoder.spec(),
        "vocabulary": {"file": model_dir.VOCAB_FILE, "size": len(trained.vocab), "sha256": trained.vocab.sha256()},
        "data": {
            "source": corpus.source,
            "archive_sha256": corpus.archive_sha256,
            "content_sha256": corpus.content_sha256,
            "counts": corpus.counts(),
            "train_reviews": int(len(trained.train_idx)),
            "validation_reviews": int(len(trained.val_idx)),
            "validation_holds_out": trained.held_out,
            "test_reviews": len(test),
        },
        "versions": library_versions(),
    }
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
