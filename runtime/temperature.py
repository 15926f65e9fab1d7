"""Temperature scaling: a bundle may store a temperature ``T`` fitted on validation reviews,
and every engine's P(positive) then becomes ``sigmoid(logit(p) / T)``.

One scalar function, used one value at a time by single reviews, batches, export's
reference and the goldens alike, so that every path gives bit-identical answers; the result
is rounded to float32 like the engines' own outputs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

EPS = 1e-7  # probabilities are clipped to [EPS, 1 - EPS] before taking the logit
LOW, HIGH = 0.25, 4.0  # the temperatures a manifest may hold (the range the fit searches)


def tempered(p: float, temperature: float) -> float:
    """``sigmoid(logit(p) / temperature)``, rounded to float32."""
    p = min(max(float(p), EPS), 1.0 - EPS)
    z = (math.log(p) - math.log1p(-p)) / temperature
    return float(np.float32(1.0 / (1.0 + math.exp(-z))))


def tempered_all(probs: Iterable[float], temperature: float) -> np.ndarray:
    """``tempered`` of each probability, as a float32 array."""
    return np.array([tempered(p, temperature) for p in probs], dtype=np.float32)
