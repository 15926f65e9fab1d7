"""The validation gate: every artifact against the Keras float model before publishing.

Figures: on held-out validation reviews (training split, never fitted) the maximum and
mean absolute probability difference and label agreement; on the test split, accuracy
and its difference from the float model's. A failed criterion raises ``ValidationError``
naming the artifact and the figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.backends import Backend
from runtime.features import MULTI_HOT, SEQUENCE

# How far a float32 artifact may differ from the Keras model, by feature family. Multi-hot
# models are one matrix product deep: conversion changes only summation order (seen: 1e-6).
# An LSTM carries its rounding through up to 400 recurrent steps, and the size of that drift
# depends on the CPU's kernels (seen on the whole test split: 6.2e-6 on AMD EPYC, 1.12e-5 on
# Intel Xeon, for the same recipe and seed, each trained and converted on that CPU).
FLOAT32_MAX_DIFF = {MULTI_HOT: 1e-5, SEQUENCE: 1e-4}
MIN_AGREEMENT = 0.99
MAX_ACCURACY_DROP = 0.005
BATCH = 1000


class ValidationError(Exception):
    """An artifact that does not match the float model closely enough."""


@dataclass
class Reference:
    """The float model's answers that artifacts are compared with."""

    val_features: np.ndarray
    val_probs: np.ndarray
    test_features: np.ndarray  # uint8 multi-hot, converted batch by batch
    test_labels: np.ndarray
    test_probs: np.ndarray

    @property
    def test_accuracy(self) -> float:
        return float(np.mean((self.test_probs >= 0.5) == (self.test_labels == 1)))


def predict_batched(run, features: np.ndarray, batch: int = BATCH) -> np.ndarray:
    """``run`` over ``features`` in batches (bounded memory): multi-hot stored as uint8 is
    given as float32, token ids as they are."""
    dtype = np.float32 if features.dtype == np.uint8 else features.dtype
    return np.concatenate([
        np.asarray(run(features[i : i + batch].astype(dtype))).reshape(-1)
        for i in range(0, len(features), batch)
    ])


def measure(backend: Backend, ref: Reference) -> dict:
    """Every figure of the gate for one loaded artifact."""
    val = predict_batched(backend.run, ref.val_features)
    test = predict_batched(backend.run, ref.test_features)
    diff = np.abs(val - ref.val_probs)
    test_acc = float(np.mean((test >= 0.5) == (ref.test_labels == 1)))
    return {
        "validation_reviews": int(len(val)),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "label_agreement": float(np.mean((val >= 0.5) == (ref.val_probs >= 0.5))),
        "test_reviews": int(len(test)),
        "test_max_abs_diff": float(np.abs(test - ref.test_probs).max()),
        "test_label_agreement": float(np.mean((test >= 0.5) == (ref.test_probs >= 0.5))),
        "test_accuracy": test_acc,
        "float_test_accuracy": ref.test_accuracy,
        "test_accuracy_delta": test_acc - ref.test_accuracy,
    }


def check(name: str, is_float32: bool, figures: dict, family: str = MULTI_HOT) -> None:
    """Raise ``ValidationError`` if the figures miss the gate for this kind of artifact."""
    failures = []
    if is_float32:
        limit = FLOAT32_MAX_DIFF[family]
        if figures["max_abs_diff"] > limit or figures["test_max_abs_diff"] > limit:
            failures.append(
                f"max |p - p_float| {max(figures['max_abs_diff'], figures['test_max_abs_diff']):.3g} > {limit:g}"
            )
    else:
        if figures["label_agreement"] < MIN_AGREEMENT:
            failures.append(f"label agreement {figures['label_agreement']:.4f} < {MIN_AGREEMENT}")
        if figures["test_accuracy_delta"] < -MAX_ACCURACY_DROP:
            failures.append(
                f"test accuracy {figures['test_accuracy']:.4f} is {-figures['test_accuracy_delta'] * 100:.2f} points "
                f"below float {figures['float_test_accuracy']:.4f} (limit {MAX_ACCURACY_DROP * 100:.1f})"
            )
    if failures:
        raise ValidationError(f"artifact {name} failed validation: {'; '.join(failures)}")


def criteria(family: str = MULTI_HOT) -> dict:
    """The gate's thresholds for one feature family, as recorded in the manifest."""
    return {
        "float32_max_abs_diff": FLOAT32_MAX_DIFF[family],
        "min_label_agreement": MIN_AGREEMENT,
        "max_test_accuracy_drop": MAX_ACCURACY_DROP,
    }
