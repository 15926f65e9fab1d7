"""The n-gram family's Keras model: a linear model over a review's distinct n-gram ids.

``NgramBag`` is a trainable gather and sum (an embedding bag with one output): the logit is
the sum of ``ratio[id] * weight[id]`` over the review's ids, plus a bias. ``ratio`` is the
Naive-Bayes log-count ratio of each id on the training reviews (Wang & Manning 2012), fixed
during training; ``weight`` is learned with L2 and dropout on the review's features. Export
folds the two into one table (``table``), so the exported model is a gather, a sum and a
sigmoid.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from runtime.encoding.vocab import RESERVED


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


@keras.saving.register_keras_serializable(package="imdb_edge")
class NgramBag(keras.layers.Layer):
    """logit = bias + sum over the review's ids of ratio[id] * weight[id] (ids padded with 0)."""

    def __init__(self, rows: int, dropout: float = 0.0, l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.rows, self.dropout, self.l2 = rows, dropout, l2
        self._drop = keras.layers.Dropout(dropout) if dropout else None

    def build(self, input_shape):
        self.ratios = self.add_weight(shape=(self.rows,), initializer="zeros", trainable=False, name="ratios")
        self.kernel = self.add_weight(shape=(self.rows,), initializer="zeros", name="kernel",
                                      regularizer=keras.regularizers.L2(self.l2) if self.l2 else None)
        self.bias = self.add_weight(shape=(1,), initializer="zeros", name="bias")

    def call(self, ids, training=None):
        contributions = ops.take(self.ratios, ids) * ops.take(self.kernel, ids)
        if self._drop is not None:
            contributions = self._drop(contributions, training=training)
        return ops.sum(contributions, axis=1, keepdims=True) + self.bias

    def get_config(self) -> dict:
        return {**super().get_config(), "rows": self.rows, "dropout": self.dropout, "l2": self.l2}

    def table(self) -> tuple[np.ndarray, float]:
        """The folded ``(rows,)`` float32 table ``ratio * weight`` and the bias."""
        table = (np.asarray(self.ratios.numpy(), np.float64) * np.asarray(self.kernel.numpy(), np.float64))
        return table.astype(np.float32), float(self.bias.numpy()[0])


def build(rows: int, dropout: float, l2: float, name: str):
    """An uncompiled model: int32 ids ``(batch, n)`` -> P(positive) ``(batch, 1)``."""
    inputs = keras.Input(shape=(None,), dtype="int32", name="features")
    logit = NgramBag(rows, dropout=dropout, l2=l2, name="ngram_bag")(inputs)
    outputs = keras.layers.Activation("sigmoid", name="probability")(logit)
    return keras.Model(inputs, outputs, name=name)


def bag_of(model) -> NgramBag:
    """The model's ``NgramBag`` layer."""
    for layer in model.layers:
        if isinstance(layer, NgramBag):
            return layer
    raise ValueError(f"{model.name} has no NgramBag layer: not an n-gram model")
