"""The validation gate: every artifact against the Keras float model before publishing.

Figures: on held-out validation reviews (training split, never fitted) the maximum and
mean absolute probability difference and label agreement; on the test split, accuracy
and its difference from the float model's. For N > 2 labels the probabilities are
``(n, N)`` rows: the differences run over every probability, and a text's label is its
arg-max (agreement: the same top label as the float model's). Every artifact runs through the runtime's
``Classifier`` from raw text, as a user's would. The exporter collects the failures of every
artifact and raises one ``ValidationError`` naming them all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.classifier import Classifier
from runtime.encoding.features import MULTI_HOT, NGRAM, NGRAM_SEQUENCE, SEQUENCE, Encoder

# How far a float32 artifact may differ from the Keras model, by feature family. Multi-hot
# and n-gram models are one matrix product deep: conversion changes only summation order (seen: 1e-6).
# An LSTM carries its rounding through up to 400 recurrent steps, and the size of that drift
# depends on the CPU's kernels (seen on the whole test split: 6.2e-6 on AMD EPYC, 1.12e-5 on
# Intel Xeon, for the same recipe and seed, each trained and converted on that CPU).
# The order-aware model adds a convolution over up to a few hundred windows to the n-gram sum.
FLOAT32_MAX_DIFF = {MULTI_HOT: 1e-5, NGRAM: 1e-5, NGRAM_SEQUENCE: 2e-5, SEQUENCE: 1e-4}
MIN_AGREEMENT = 0.99
MAX_ACCURACY_DROP = 0.005
BATCH = 1000


class ValidationError(Exception):
    """Artifacts that do not match the float model closely enough."""


@dataclass
class Reference:
    """The float model's answers that artifacts are compared with."""

    val_texts: list[str]
    val_probs: np.ndarray
    test_texts: list[str]
    test_labels: np.ndarray
    test_probs: np.ndarray
    threshold: float | None  # two labels: P(labels[1]) at or above it; None for N > 2 (arg-max)

    @property
    def test_accuracy(self) -> float:
        return float(np.mean(decide(self.test_probs, self.threshold) == self.test_labels))


def decide(probs: np.ndarray, threshold: float | None) -> np.ndarray:
    """Each text's label index: ``P(labels[1]) >= threshold`` for a two-label ``(n,)`` array,
    the arg-max of each row of an ``(n, N)`` one."""
    probs = np.asarray(probs)
    if probs.ndim == 2:
        return probs.argmax(axis=1)
    return (probs >= threshold).astype(np.int64)


def keras_probabilities(model, encoder: Encoder, texts: list[str], batch: int = BATCH) -> np.ndarray:
    """The Keras model's P(labels[1]) ``(n,)`` for a two-label model, or its ``(n, N)``
    probabilities for N > 2, for ``texts``, encoded batch by batch (bounded memory)."""
    width = int(model.outputs[0].shape[-1])
    shape = (-1,) if width == 1 else (-1, width)
    parts = [model(encoder.keras_inputs(texts[i : i + batch]), training=False).numpy().reshape(shape)
             for i in range(0, len(texts), batch)]
    return np.concatenate(parts) if parts else np.zeros((0,) if width == 1 else (0, width), dtype=np.float32)


def keras_logits(model, encoder: Encoder, texts: list[str], batch: int = BATCH) -> np.ndarray:
    """The Keras model's ``(n, N)`` float64 logits (before its softmax) for ``texts``."""
    from export.convert import logit_model

    head = logit_model(model)
    parts = [head(encoder.keras_inputs(texts[i : i + batch]), training=False).numpy().astype(np.float64)
             for i in range(0, len(texts), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, int(head.outputs[0].shape[-1])))


def softmax(z: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise ``softmax(z / temperature)`` in float64."""
    z = np.asarray(z, np.float64) / temperature
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def measure(clf: Classifier, ref: Reference) -> dict:
    """Every figure of the gate for one loaded artifact."""
    val = clf.predict_proba(ref.val_texts)
    test = clf.predict_proba(ref.test_texts)
    t = ref.threshold
    if val.shape[1:] != ref.val_probs.shape[1:]:
        raise ValidationError(f"the artifact gives {val.shape[1:] or 'one'} probabilities per text, the float model "
                              f"{ref.val_probs.shape[1:] or 'one'}")
    diff = np.abs(val - ref.val_probs)
    test_acc = float(np.mean(decide(test, t) == ref.test_labels))
    return {
        "validation_reviews": int(len(val)),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "label_agreement": float(np.mean(decide(val, t) == decide(ref.val_probs, t))),
        "test_reviews": int(len(test)),
        "test_max_abs_diff": float(np.abs(test - ref.test_probs).max()),
        "test_label_agreement": float(np.mean(decide(test, t) == decide(ref.test_probs, t))),
        "test_accuracy": test_acc,
        "float_test_accuracy": ref.test_accuracy,
        "test_accuracy_delta": test_acc - ref.test_accuracy,
    }


def failures(is_float32: bool, figures: dict, family: str) -> list[str]:
    """What the figures miss of the gate for this kind of artifact (empty when it passes)."""
    found = []
    if is_float32:
        limit = FLOAT32_MAX_DIFF[family]
        if figures["max_abs_diff"] > limit or figures["test_max_abs_diff"] > limit:
            found.append(
                f"max |p - p_float| {max(figures['max_abs_diff'], figures['test_max_abs_diff']):.3g} > {limit:g}"
            )
    else:
        # Both sets, as for float32: a model refitted on all training reviews has seen the
        # validation ones, so only the test reviews are new to it.
        agreement = min(figures["label_agreement"], figures["test_label_agreement"])
        if agreement < MIN_AGREEMENT:
            found.append(f"label agreement {agreement:.4f} < {MIN_AGREEMENT}")
        if figures["test_accuracy_delta"] < -MAX_ACCURACY_DROP:
            found.append(
                f"test accuracy {figures['test_accuracy']:.4f} is {-figures['test_accuracy_delta'] * 100:.2f} points "
                f"below float {figures['float_test_accuracy']:.4f} (limit {MAX_ACCURACY_DROP * 100:.1f})"
            )
    return found


def criteria(family: str) -> dict:
    """The gate's thresholds for one feature family, as recorded in the manifest."""
    return {
        "float32_max_abs_diff": FLOAT32_MAX_DIFF[family],
        "min_label_agreement": MIN_AGREEMENT,
        "max_test_accuracy_drop": MAX_ACCURACY_DROP,
    }
