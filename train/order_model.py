"""The order-aware model (the ``ngram-sequence`` family): the linear n-gram table beside a small
convolution over the tokens in order, added at the logit.

A bag of n-grams cannot see "not good at all, but" beyond two tokens; a convolution over word
vectors sees every window of ``width`` tokens wherever it sits, and words with similar vectors
(learned from raw text: ``train.word_vectors``) share what the few labelled examples teach.

* ``branch``: token ids ``(batch, length)`` -> embedding (initialised from the word vectors,
  fine-tuned) -> one ``Conv1D`` per window width, ReLU -> the max and the mean over the text's
  windows (``WindowPool``: windows starting on padding are left out) -> dense -> the logit(s).
  Each window of a text's last tokens reaches past its end into zero vectors (``same``
  padding on the right only), so a text shorter than the width still has a window.
* ``combine``: one Keras model over the ``NgramSequenceEncoder`` row: ``z = z_ngram + w * z_branch``
  then the sigmoid (two labels) or softmax (N), where ``z_branch`` is the mean of ``S`` branches
  trained from different seeds (an average of a few small convolutions is steadier than one).
  The parts are trained apart (each with its own early stopping on validation) and ``w`` is
  chosen on validation (``best_weight``); ``w / S`` is folded into each branch's dense layer, so the model
  computes exactly ``z_ngram + w * mean(z_branch)``.

Export reads the weights back by layer name (``TOKEN_TABLE``, ``CONV_LAYER`` + width, ``HEAD_LAYER``)
and writes the same arithmetic as TFLite and ONNX ops (``export.convert.order_function``).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from train.ngram_model import LOGITS_LAYER as NGRAM_LAYER
from train.ngram_model import OUTPUT_LAYER, NgramBag

TOKEN_TABLE = "token_table"  # the embedding layer's name (and the exported table's)
CONV_LAYER = "window_conv_"  # + the width
HEAD_LAYER = "branch_head"
BRANCH_LAYER = "order_branch"  # the branch inside the combined model


@keras.saving.register_keras_serializable(package="imdb_edge")
class ColumnSlice(keras.layers.Layer):
    """Columns ``[start:stop]`` of an id batch (``stop`` None: to the end)."""

    def __init__(self, start: int, stop: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.start, self.stop = start, stop

    def call(self, ids):
        return ids[:, self.start : self.stop]

    def compute_output_spec(self, ids):
        width = None if self.stop is None else self.stop - self.start
        return keras.KerasTensor((ids.shape[0], width), dtype=ids.dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "start": self.start, "stop": self.stop}


@keras.saving.register_keras_serializable(package="imdb_edge")
class WindowPool(keras.layers.Layer):
    """``[max ‖ mean]`` over the windows that start on a token (id != 0) of each text.

    The activations are ReLU outputs (>= 0), so zeroing the left-out windows leaves the max
    of the others (0 for a text with no token); the mean divides by the count (at least 1).
    """

    def call(self, inputs):
        activations, ids = inputs
        mask = ops.expand_dims(ops.cast(ops.not_equal(ids, 0), activations.dtype), -1)
        kept = activations * mask
        count = ops.maximum(ops.sum(mask, axis=1), 1.0)
        return ops.concatenate([ops.max(kept, axis=1), ops.sum(kept, axis=1) / count], axis=-1)

    def compute_output_shape(self, input_shape):
        shape = input_shape[0]
        return (shape[0], 2 * shape[-1])


def branch(length: int, vocab_size: int, vectors: np.ndarray | None, filters: int, widths: tuple[int, ...],
           classes: int, dropout: float, name: str = BRANCH_LAYER) -> keras.Model:
    """The convolution branch: ``(batch, length)`` int32 token ids -> ``(batch, classes)`` logits.

    Args:
        length: the sequence columns.
        vocab_size: the embedding's rows.
        vectors: ``(vocab_size, dim)`` initial word vectors (None: random, dimension 64).
        filters: filters per window width.
        widths: the window widths.
        classes: 1 for two labels, else N.
        dropout: on the pooled features (half of it on the embedded tokens).
        name: the model's name.

    Returns:
        An uncompiled Keras model.
    """
    ids = keras.Input(shape=(length,), dtype="int32", name="tokens")
    dim = 64 if vectors is None else vectors.shape[1]
    init = "uniform" if vectors is None else keras.initializers.Constant(vectors)
    x = keras.layers.Embedding(vocab_size, dim, embeddings_initializer=init, name=TOKEN_TABLE)(ids)
    if dropout:
        x = keras.layers.Dropout(dropout / 2)(x)
    pooled = []
    for width in widths:
        padded = keras.layers.ZeroPadding1D((0, width - 1))(x) if width > 1 else x
        a = keras.layers.Conv1D(filters, width, activation="relu", name=f"{CONV_LAYER}{width}")(padded)
        pooled.append(WindowPool()([a, ids]))
    h = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate()(pooled)
    if dropout:
        h = keras.layers.Dropout(dropout)(h)
    logits = keras.layers.Dense(classes, name=HEAD_LAYER)(h)
    return keras.Model(ids, logits, name=name)


def clean_branch(trained: keras.Model, length: int, widths: tuple[int, ...], weight: float,
                 name: str = BRANCH_LAYER) -> keras.Model:
    """``trained`` without dropout and with its head scaled by ``weight``: ``weight * z_branch``."""
    table = trained.get_layer(TOKEN_TABLE).get_weights()[0]
    head_kernel, head_bias = trained.get_layer(HEAD_LAYER).get_weights()
    filters = trained.get_layer(f"{CONV_LAYER}{widths[0]}").filters
    clean = branch(length, table.shape[0], table, filters, widths, head_kernel.shape[1], 0.0, name=name)
    for width in widths:
        clean.get_layer(f"{CONV_LAYER}{width}").set_weights(trained.get_layer(f"{CONV_LAYER}{width}").get_weights())
    clean.get_layer(HEAD_LAYER).set_weights([head_kernel * np.float32(weight), head_bias * np.float32(weight)])
    return clean


def combine(ngram: keras.Model, branches: list[keras.Model], length: int, name: str) -> keras.Model:
    """One model over the ``NgramSequenceEncoder`` row: ``squash(z_ngram + sum of z_branch)``.

    Args:
        ngram: the trained n-gram model (``train.ngram_model.build``), its bag is reused.
        branches: the branches as ``clean_branch`` made them (no dropout, heads already
            weighted), each named ``BRANCH_LAYER`` + ``_`` + its index.
        length: the sequence columns at the front of the row.
        name: the model's name.

    Returns:
        The model: ``(batch, n)`` int32 rows -> ``(batch, 1)`` P(second label) or ``(batch, N)``.
    """
    bag = next(layer for layer in ngram.layers if isinstance(layer, NgramBag))
    ids = keras.Input(shape=(None,), dtype="int32", name="features")
    tokens = ColumnSlice(0, length, name="sequence_columns")(ids)
    grams = ColumnSlice(length, None, name="ngram_columns")(ids)
    clean_bag = NgramBag(bag.rows, dropout=0.0, l2=0.0, classes=bag.classes, name=NGRAM_LAYER)
    z = keras.layers.Add(name="logits")([clean_bag(grams), *(b(tokens) for b in branches)])
    squash = "sigmoid" if bag.classes == 1 else "softmax"
    out = keras.layers.Activation(squash, name=OUTPUT_LAYER)(z)
    model = keras.Model(ids, out, name=name)
    clean_bag.set_weights(bag.get_weights())
    return model


def parts_of(model: keras.Model) -> tuple[NgramBag, list[keras.Model]]:
    """The combined model's n-gram bag and branches."""
    branches = [layer for layer in model.layers if layer.name.startswith(BRANCH_LAYER)]
    return model.get_layer(NGRAM_LAYER), branches


def scores(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Accuracy and log loss of logits ``z`` (``(n,)``: sigmoid; ``(n, N)``: softmax) on labels ``y``."""
    if z.ndim == 1:
        p = 1.0 / (1.0 + np.exp(-z))
        return (float(np.mean((z > 0) == (y == 1))),
                float(-np.mean(np.log(np.clip(np.where(y == 1, p, 1 - p), 1e-12, 1.0)))))
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(np.mean(np.argmax(z, axis=1) == y)), float(-np.mean(logp[np.arange(len(y)), y]))


def _correct(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (z > 0) == (y == 1) if z.ndim == 1 else np.argmax(z, axis=1) == y


def best_weight(z_ngram: np.ndarray, z_order: np.ndarray, y: np.ndarray,
                grid: tuple[float, ...] = tuple(np.round(np.arange(0.0, 4.01, 0.25), 2))) -> tuple[float, float]:
    """The branch's weight, by validation accuracy with the one-standard-error rule toward 1.

    ``w = 1`` adds the two logits as they are (each part was trained to predict the label on
    its own). A few hundred validation examples cannot tell close weights apart, so a weight
    other than 1 has to earn it: among the weights whose accuracy is within one standard error
    of the best one's (of the paired difference, as in McNemar's test), the one closest to 1 is
    kept (ties: the smaller). A branch that does not help loses to ``w = 0`` by more than that.

    Args:
        z_ngram: the n-gram part's validation logits, ``(n,)`` or ``(n, N)``.
        z_order: the branch's, same shape.
        y: the validation labels (0/1, or label indexes).
        grid: the weights tried.

    Returns:
        ``(weight, accuracy)``: the kept weight and its validation accuracy.
    """
    correct = {w: _correct(z_ngram + w * z_order, y).astype(np.int64) for w in grid}
    best = None
    for w in grid:
        acc, loss = scores(z_ngram + w * z_order, y)
        key = (-acc, loss, w)
        if best is None or key < best[0]:
            best = (key, w)
    top = correct[best[1]]
    # the best weight's wins over w less w's wins over it, against that count's standard error
    # were the two equally good: the square root of the examples on which they differ
    near = [w for w in grid
            if int(np.sum(top - correct[w])) <= np.sqrt(np.count_nonzero(top != correct[w]))]
    weight = min(near, key=lambda w: (abs(w - 1.0), w))
    return float(weight), float(correct[weight].mean())
