"""The n-gram family's Keras model: a linear model over a review's distinct n-gram ids.

``NgramBag`` is a trainable gather and sum (an embedding bag with one output): the logit is
the sum of ``ratio[id] * weight[id]`` over the review's ids, plus a bias. ``ratio`` is the
Naive-Bayes log-count ratio of each id on the training reviews (Wang & Manning 2012), fixed
during training; ``weight`` is learned with L2 and dropout on the review's features. Export
folds the two into one table (``table``), so the exported model is a gather, a sum and a
sigmoid.

For N > 2 labels every id has one ratio and one weight per label (one-vs-rest Naive-Bayes
ratios): the bag outputs N logits (``LOGITS_LAYER``, shape ``(batch, N)``) and a softmax
(``OUTPUT_LAYER``) makes the N probabilities. For 2 labels the model is the one-column model
above, unchanged.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from runtime.encoding.vocab import RESERVED

LOGITS_LAYER = "ngram_bag"  # the layer whose output is the logit (2 labels) or the N logits
OUTPUT_LAYER = "probability"


def log_count_ratios(ids: np.ndarray, labels: np.ndarray, rows: int, alpha: float = 1.0) -> np.ndarray:
    """``log((p / |p|) / (q / |q|))`` with ``p``, ``q`` = alpha + each id's count of positive and
    negative reviews (``ids``: one row of distinct ids per review, padded with 0). Reserved ids
    (padding, start, unknown word) get 0, so they never contribute."""
    labels = np.asarray(labels).astype(bool)
    pos = alpha + np.bincount(ids[labels].ravel(), minlength=rows).astype(np.float64)
    neg = alpha + np.bincount(ids[~labels].ravel(), minlength=rows).astype(np.float64)
    ratios = np.log((pos / pos.sum()) / (neg / neg.sum()))
    ratios[: len(RESERVED)] = 0.0
    return ratios.astype(np.float32)


def one_vs_rest_ratios(ids: np.ndarray, labels: np.ndarray, rows: int, classes: int,
                       alpha: float = 1.0) -> np.ndarray:
    """``(rows, classes)`` float32: column ``c`` is ``log_count_ratios`` of label ``c`` against the rest.

    Args:
        ids: one row of distinct ids per text, padded with 0.
        labels: the label index of each text.
        rows: the table's rows.
        classes: the number of labels.
        alpha: the smoothing count.

    Returns:
        The ratios; reserved ids get 0 in every column.
    """
    labels = np.asarray(labels).astype(np.int64)
    counts = np.stack([np.bincount(ids[labels == c].ravel(), minlength=rows) for c in range(classes)], axis=1)
    counts = counts.astype(np.float64)
    p = alpha + counts
    q = alpha + (counts.sum(axis=1, keepdims=True) - counts)
    ratios = np.log((p / p.sum(axis=0)) / (q / q.sum(axis=0)))
    ratios[: len(RESERVED)] = 0.0
    return ratios.astype(np.float32)


@keras.saving.register_keras_serializable(package="imdb_edge")
class NgramBag(keras.layers.Layer):
    """logit = bias + sum over the review's ids of ratio[id] * weight[id] (ids padded with 0).

    With ``classes`` > 1 (N > 2 labels) ratio, weight and bias have one column per label and
    the output is the ``(batch, classes)`` logits; with 1 (two labels) the ``(batch, 1)`` logit.
    """

    def __init__(self, rows: int, dropout: float = 0.0, l2: float = 0.0, classes: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.rows, self.dropout, self.l2, self.classes = rows, dropout, l2, classes
        self._drop = keras.layers.Dropout(dropout) if dropout else None

    def build(self, input_shape):
        shape = (self.rows,) if self.classes == 1 else (self.rows, self.classes)
        self.ratios = self.add_weight(shape=shape, initializer="zeros", trainable=False, name="ratios")
        self.kernel = self.add_weight(shape=shape, initializer="zeros", name="kernel",
                                      regularizer=keras.regularizers.L2(self.l2) if self.l2 else None)
        self.bias = self.add_weight(shape=(self.classes,), initializer="zeros", name="bias")

    def call(self, ids, training=None):
        if self.classes == 1:
            contributions = ops.take(self.ratios, ids) * ops.take(self.kernel, ids)
        else:
            contributions = ops.take(self.ratios, ids, axis=0) * ops.take(self.kernel, ids, axis=0)
        if self._drop is not None:
            contributions = self._drop(contributions, training=training)
        if self.classes == 1:
            return ops.sum(contributions, axis=1, keepdims=True) + self.bias
        return ops.sum(contributions, axis=1) + self.bias

    def get_config(self) -> dict:
        config = {**super().get_config(), "rows": self.rows, "dropout": self.dropout, "l2": self.l2}
        if self.classes != 1:  # a two-label model's config stays as it always was
            config["classes"] = self.classes
        return config

    def table(self) -> tuple[np.ndarray, float | np.ndarray]:
        """The folded float32 table ``ratio * weight`` and the bias: ``(rows,)`` and a float for
        two labels, ``(rows, N)`` and an ``(N,)`` float32 array for N > 2."""
        table = (np.asarray(self.ratios.numpy(), np.float64) * np.asarray(self.kernel.numpy(), np.float64))
        if self.classes == 1:
            return table.astype(np.float32), float(self.bias.numpy()[0])
        return table.astype(np.float32), np.asarray(self.bias.numpy(), np.float32)


def build(rows: int, dropout: float, l2: float, name: str, labels: int = 2):
    """An uncompiled model: int32 ids ``(batch, n)`` -> P(second label) ``(batch, 1)`` for two
    labels, or the softmax ``(batch, labels)`` over the logits of ``LOGITS_LAYER`` for more."""
    inputs = keras.Input(shape=(None,), dtype="int32", name="features")
    classes = 1 if labels == 2 else labels
    logit = NgramBag(rows, dropout=dropout, l2=l2, classes=classes, name=LOGITS_LAYER)(inputs)
    outputs = keras.layers.Activation("sigmoid" if classes == 1 else "softmax", name=OUTPUT_LAYER)(logit)
    return keras.Model(inputs, outputs, name=name)


def bag_of(model) -> NgramBag:
    """The model's ``NgramBag`` layer."""
    for layer in model.layers:
        if isinstance(layer, NgramBag):
            return layer
    raise ValueError(f"{model.name} has no NgramBag layer: not an n-gram model")
