"""Training the order-aware model (the ``ngram-sequence`` family, ``train.order_model``).

Three steps, each chosen on the validation split only:

1. the n-gram part: the n-gram family's model on the rows' n-gram columns, early-stopped;
2. word vectors learned from raw text (``train.word_vectors``): the training texts and, when
   the aclImdb archive is at hand (``train.data.local_archive``), its 75,000 training and
   unlabelled reviews (never its test split) - a few thousand sentences alone give poor
   vectors; then the convolution branch on the rows' sequence columns, its embedding
   starting from those vectors, early-stopped;
3. up to ``recipe.branch_seeds`` branches from different seeds, while the time budget allows
   (their logits are averaged), then the weight ``w`` in ``z = z_ngram + w * mean(z_branch)``
   on validation over a grid, by the one-standard-error rule toward 1
   (``order_model.best_weight``; 0 gives the n-gram model alone).

With ``recipe.refit``, ``refit`` then trains both parts again on every example (validation
included) for the epochs early stopping kept, and combines them with the same ``w``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.checks.reviews import CorpusError
from runtime.encoding.features import NgramSequenceEncoder
from train import order_model, word_vectors
from train.recipes import Recipe, build_model

MAX_VECTOR_REVIEWS = 75_000  # the archive's training + unlabelled reviews
EMBEDDING_ROWS_PER_EXAMPLE = 1_000  # the branch's batch is at least the vocabulary size / this


def vector_token_ids(encoder: NgramSequenceEncoder, texts: list[str], archive, record: dict) -> Iterator[np.ndarray]:
    """Each text's token ids, then each archive review's (training and unlabelled only)."""
    from train.corpus import all_review_texts

    for text in texts:
        yield encoder.ids_of(text)
    record["texts"] = len(texts)
    if archive is None:
        return
    n = 0
    for n, text in enumerate(all_review_texts(archive, training_only=True), 1):
        yield encoder.ids_of(text)
        if n >= MAX_VECTOR_REVIEWS:
            break
    record["archive_reviews"] = n


@dataclass
class Parts:
    """What ``refit`` needs to train the model again on every example: the word vectors, the
    epochs early stopping kept for each part, the branch's batch size and weight."""

    vectors: np.ndarray
    ngram_epochs: int
    branch_epochs: list[int]
    branch_batch_size: int
    weight: float


def _stop(recipe: Recipe):
    import keras

    return keras.callbacks.EarlyStopping(monitor=recipe.monitor, patience=recipe.patience, restore_best_weights=True)


def _ngram_part(recipe: Recipe, encoder: NgramSequenceEncoder, grams: np.ndarray, y: np.ndarray, labels: int):
    """A compiled n-gram model whose Naive-Bayes ratios come from ``(grams, y)``."""
    from train.ngram_model import bag_of, log_count_ratios, one_vs_rest_ratios

    ngram = build_model(recipe, encoder.table_rows, len(encoder.vocab), labels=labels)
    ratios = (log_count_ratios(grams, y, encoder.table_rows) if labels == 2
              else one_vs_rest_ratios(grams, y, encoder.table_rows, labels))
    bag_of(ngram).ratios.assign(ratios)
    return ngram


def _branch_part(recipe: Recipe, encoder: NgramSequenceEncoder, vectors: np.ndarray, labels: int, seed: int):
    """``(branch, trainable)``: the convolution branch (logits) and it with the squash, compiled."""
    import keras

    keras.utils.set_random_seed(seed)
    classes = 1 if labels == 2 else labels
    branch = order_model.branch(encoder.length, len(encoder.vocab), vectors, recipe.hidden[0], recipe.widths, classes,
                                recipe.branch_dropout)
    trainable = keras.Model(branch.input, keras.layers.Activation("sigmoid" if classes == 1 else "softmax")(branch.output))
    trainable.compile(optimizer=keras.optimizers.Adam(learning_rate=recipe.branch_learning_rate),
                      loss="binary_crossentropy" if labels == 2 else "sparse_categorical_crossentropy",
                      metrics=_accuracy(labels))
    return branch, trainable


def _accuracy(labels: int) -> list:
    import keras

    return ["accuracy"] if labels == 2 else [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]


def _combined(recipe: Recipe, ngram, branches: list, parts: Parts, length: int, labels: int):
    """The one Keras model ``z_ngram + w * mean(z_branch)``, compiled for ``evaluate``."""
    share = parts.weight / len(branches)
    cleaned = [order_model.clean_branch(b, length, recipe.widths, share, name=f"{order_model.BRANCH_LAYER}_{i}")
               for i, b in enumerate(branches)]
    model = order_model.combine(ngram, cleaned, length, recipe.name.replace("-", "_"))
    model.compile(loss="binary_crossentropy" if labels == 2 else "sparse_categorical_crossentropy",
                  metrics=_accuracy(labels))  # for evaluate(); never fitted
    return model


def fit(x: np.ndarray, y: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray, texts: list[str],
        encoder: NgramSequenceEncoder, recipe: Recipe, labels: int, seed: int, verbose: int = 0,
        budget: float = 60.0, corpus_archive: Path | None = None):
    """Train both parts and choose the branch's weight.

    Args:
        x: every training example's ``NgramSequenceEncoder`` row, padded with 0.
        y: the labels (float 0/1 for two labels, label indexes otherwise).
        train_idx: the examples trained on.
        val_idx: the validation examples.
        texts: every training example's text (for the word vectors: validation's included,
            as its labels play no part in them).
        encoder: the encoder.
        recipe: an ngram-sequence recipe.
        labels: the number of labels.
        seed: the seed (branch ``i`` starts from ``seed + i``).
        verbose: Keras' verbosity.
        budget: seconds for the branches: one always, up to ``recipe.branch_seeds`` while
            the time spent plus the slowest so far fits.
        corpus_archive: the aclImdb corpus when it is what is trained on: the vectors learn
            from its training and unlabelled reviews (``texts`` are its training reviews, so
            they are not read twice), whatever ``IMDB_DATA`` says.

    Returns:
        ``(model, history, val_probs, record, parts)``: the combined Keras model, the first
        branch's per-epoch history, the combined model's validation probabilities, what was
        chosen, and what ``refit`` needs.
    """
    import keras

    from train.data import local_archive
    from train.ngram_model import bag_of
    from train.tuning import best_epoch_of

    started = time.monotonic()
    length = encoder.length
    tokens, grams = encoder.parts(x)
    ngram = _ngram_part(recipe, encoder, grams[train_idx], y[train_idx], labels)
    ngram_history = ngram.fit(grams[train_idx], y[train_idx], validation_data=(grams[val_idx], y[val_idx]),
                              epochs=recipe.max_epochs, batch_size=recipe.batch_size, callbacks=[_stop(recipe)],
                              shuffle=True, verbose=verbose)
    ngram_seconds = time.monotonic() - started

    t0 = time.monotonic()
    archive = corpus_archive or local_archive()
    # the archive trained on brings its own training reviews: they are not read twice
    vector_texts = [] if corpus_archive is not None else texts
    vectors_record: dict = {"archive": str(archive) if archive else None, "dim": recipe.embedding_dim, "window": 5,
                            "method": "PPMI + SVD"}
    if archive is None:
        print("note: no aclImdb archive at hand ($IMDB_DATA or the download cache): word vectors learn from "
              "the training texts alone", file=sys.stderr)
    try:
        vectors = word_vectors.learn(vector_token_ids(encoder, vector_texts, archive, vectors_record), len(encoder.vocab),
                                     recipe.embedding_dim, seed=seed)
    except CorpusError as e:  # an archive that cannot be read costs the vectors its reviews, not the run
        print(f"note: {e}: word vectors learn from the training texts alone", file=sys.stderr)
        vectors_record.update(archive=None, archive_error=str(e))
        vectors = word_vectors.learn(vector_token_ids(encoder, texts, None, vectors_record), len(encoder.vocab),
                                     recipe.embedding_dim, seed=seed)
    vectors_record["seconds"] = round(time.monotonic() - t0, 1)

    t0 = time.monotonic()
    # Adam updates the whole embedding table every step: a large vocabulary gets larger batches
    # (fewer steps), so the table's update stays a bounded share of a step's time
    batch = max(recipe.branch_batch_size, len(train_idx) // 500, len(encoder.vocab) // EMBEDDING_ROWS_PER_EXAMPLE)
    branches, histories, slowest = [], [], 0.0
    for i in range(max(1, recipe.branch_seeds)):
        if branches and time.monotonic() - t0 + slowest > budget:
            break  # a further seed would pass the time budget
        started_seed = time.monotonic()
        branch, trainable = _branch_part(recipe, encoder, vectors, labels, seed + i)
        history = trainable.fit(tokens[train_idx], y[train_idx], validation_data=(tokens[val_idx], y[val_idx]),
                                epochs=recipe.branch_max_epochs, batch_size=batch, callbacks=[_stop(recipe)],
                                shuffle=True, verbose=verbose)
        branches.append(branch)
        histories.append(history)
        slowest = max(slowest, time.monotonic() - started_seed)
    branch_seconds = time.monotonic() - t0

    ngram_logits = keras.Model(ngram.input, bag_of(ngram).output)
    z_ngram = ngram_logits.predict(grams[val_idx], batch_size=1024, verbose=0)
    each = [b.predict(tokens[val_idx], batch_size=1024, verbose=0) for b in branches]
    z_branch = np.mean(each, axis=0)
    if labels == 2:
        z_ngram, z_branch = z_ngram.reshape(-1), z_branch.reshape(-1)
    y_val = np.asarray(y[val_idx]).astype(np.int64)
    weight, accuracy = order_model.best_weight(z_ngram, z_branch, y_val)
    alone = {"ngram": order_model.scores(z_ngram, y_val)[0], "branch": order_model.scores(z_branch, y_val)[0]}
    parts = Parts(vectors, best_epoch_of(ngram_history.history, recipe.monitor),
                  [best_epoch_of(h.history, recipe.monitor) for h in histories], batch, weight)
    model = _combined(recipe, ngram, branches, parts, length, labels)
    val_probs = model.predict(x[val_idx], batch_size=1024, verbose=0)
    val_probs = val_probs.reshape(-1) if labels == 2 else val_probs
    record = {
        "branch_weight": weight,
        "branches": len(branches),
        "validation_accuracy": {"combined": accuracy, "ngram": alone["ngram"], "branch": alone["branch"]},
        "ngram_epochs": len(ngram_history.history["loss"]),
        "branch_epochs": [len(h.history["loss"]) for h in histories],
        "kept_epochs": {"ngram": parts.ngram_epochs, "branch": parts.branch_epochs},
        "branch_batch_size": batch,
        "time_budget_seconds": budget,
        "word_vectors": vectors_record,
        "seconds": {"ngram": round(ngram_seconds, 1), "word_vectors": vectors_record["seconds"],
                    "branch": round(branch_seconds, 1)},
    }
    hist = {k: [float(v) for v in vals] for k, vals in histories[0].history.items()}
    return model, hist, val_probs, record, parts


def refit(x: np.ndarray, y: np.ndarray, encoder: NgramSequenceEncoder, recipe: Recipe, labels: int, parts: Parts,
          seed: int, verbose: int = 0):
    """Both parts trained again on every example (validation included) for the epochs early
    stopping kept, from the same word vectors and seeds, combined with the weight chosen on
    validation: the choices were made on validation; the final model learns from every example.

    Returns:
        ``(model, seconds)``: the combined Keras model and the time it took.
    """
    started = time.monotonic()
    tokens, grams = encoder.parts(x)
    ngram = _ngram_part(recipe, encoder, grams, y, labels)
    ngram.fit(grams, y, epochs=parts.ngram_epochs, batch_size=recipe.batch_size, shuffle=True, verbose=verbose)
    branches = []
    for i, epochs in enumerate(parts.branch_epochs):
        branch, trainable = _branch_part(recipe, encoder, parts.vectors, labels, seed + i)
        trainable.fit(tokens, y, epochs=epochs, batch_size=parts.branch_batch_size, shuffle=True, verbose=verbose)
        branches.append(branch)
    model = _combined(recipe, ngram, branches, parts, encoder.length, labels)
    return model, round(time.monotonic() - started, 1)
