"""The golden set: a few dozen fixed test reviews with every artifact's probability.

Chosen deterministically from the float model's test predictions to cover what parity
must hold for: the shortest and longest reviews, the clearest, the most borderline, and
a seeded sample of ordinary ones.
"""

from __future__ import annotations

import numpy as np

from runtime.bundle import LABELS

PER_KIND = 8


def choose(texts: list[str], ids: list[str], labels: np.ndarray, probs: np.ndarray, threshold: float,
           seed: int = 0) -> list[dict]:
    """Up to ``5 * PER_KIND`` distinct reviews, each with its float probability."""
    lengths = np.array([len(t) for t in texts])
    margin = np.abs(probs - threshold)
    picks = {
        "short": np.argsort(lengths, kind="stable")[:PER_KIND],
        "long": np.argsort(-lengths, kind="stable")[:PER_KIND],
        "clear": np.argsort(-margin, kind="stable")[:PER_KIND],
        "borderline": np.argsort(margin, kind="stable")[:PER_KIND],
        "sample": np.random.default_rng(seed).permutation(len(texts))[:PER_KIND],
    }
    chosen: dict[int, str] = {}
    for kind, idx in picks.items():
        for i in idx:
            chosen.setdefault(int(i), kind)
    return [
        {
            "id": ids[i],
            "kind": kind,
            "label": LABELS[int(labels[i])],
            "text": texts[i],
            "float_probability": float(probs[i]),
            "probabilities": {},
        }
        for i, kind in chosen.items()
    ]
