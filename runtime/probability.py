"""The one logit/sigmoid pair of the project: training's calibration, export's validation,
the engines, explanations and the runtime's temperature all use these, with one clipping.

A probability is clipped to ``[EPS, 1 - EPS]`` before its logit is taken, so a saturated
float32 probability (0.0 or 1.0) still has a finite logit. Results meant to be compared
with an engine's output are rounded to float32, the engines' own precision.

A bundle may store a temperature ``T`` fitted on validation reviews (``train.calibration``);
every probability then becomes ``sigmoid(logit(p) / T)`` (``tempered``), one value at a time,
so that single reviews, batches, export's reference and the goldens give bit-identical answers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

EPS = 1e-7  # probabilities are clipped to [EPS, 1 - EPS] before taking the logit
LOW, HIGH = 0.25, 4.0  # the temperatures a manifest may hold (the range the fit searches)


def logit(p: float) -> float:
    """``log(p / (1 - p))`` of one probability, clipped to ``[EPS, 1 - EPS]``."""
    p = min(max(float(p), EPS), 1.0 - EPS)
    return math.log(p) - math.log1p(-p)


def logits(p: np.ndarray | Iterable[float]) -> np.ndarray:
    """``logit`` of each probability, as float64 (the same clipping as ``logit``)."""
    p = np.clip(np.asarray(p, np.float64), EPS, 1.0 - EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid32(z: float) -> float:
    """``1 / (1 + exp(-z))`` in float64, rounded to float32, never overflowing.

    For artifacts that end at the logit (``output: logit`` in the manifest): XNNPACK's float
    LOGISTIC is a vectorized approximation that differs between x86 and ARM in the last bits,
    and an engine's float32 sigmoid saturates (see ``export.convert.output_of``), while this
    gives the same float32 on every CPU and engine.
    """
    if z >= 0.0:
        return float(np.float32(1.0 / (1.0 + math.exp(-z))))
    e = math.exp(z)
    return float(np.float32(e / (1.0 + e)))


def tempered(p: float, temperature: float) -> float:
    """``sigmoid(logit(p) / temperature)``, rounded to float32."""
    z = logit(p) / temperature
    return float(np.float32(1.0 / (1.0 + math.exp(-z))))


def tempered_all(probs: Iterable[float], temperature: float) -> np.ndarray:
    """``tempered`` of each probability, as a float32 array."""
    return np.array([tempered(p, temperature) for p in probs], dtype=np.float32)


def softmax32(z: np.ndarray) -> np.ndarray:
    """The softmax of each row of logits ``(..., N)`` in float64, rounded to float32: for
    N-label artifacts that end at the logits, as ``sigmoid32`` is for two labels."""
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def label_logits(p: np.ndarray) -> np.ndarray:
    """N-label logits recovered from probabilities ``(..., N)``: ``log(p)`` with ``p`` clipped
    to ``[EPS, 1]``, equal to the model's logits up to a constant per row (which a softmax
    ignores)."""
    return np.log(np.clip(np.asarray(p, np.float64), EPS, 1.0))


def tempered_softmax(p: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(p) / temperature)`` per row, rounded to float32: the N-label temperature,
    as ``train.calibration`` fits and judges it."""
    return softmax32(label_logits(p) / temperature)
