"""The golden set: a few dozen fixed test reviews with every artifact's probability.

Chosen deterministically from the float model's test predictions to cover what parity
must hold for: the shortest and longest reviews, the clearest, the most borderline, and
a seeded sample of ordinary ones. Each also records the float Keras model's explanation
(its top terms), which parity compares every artifact's explanation with.
"""

from __future__ import annotations

import numpy as np

from runtime.bundle.manifest import LABELS
from runtime.explain import explain_linear, explain_occlusion
from runtime.encoding.features import MULTI_HOT, NGRAM, Encoder
from runtime.checks.parity import EXPLANATION_TERMS

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


def _keras_logits(model, encoder: Encoder):
    """The Keras model as ``run(model inputs) -> logits``, the interface explanations take
    (``Backend.run_logits``): read before the sigmoid, so that they do not saturate.

    A multi-hot model trains on dense rows: the padded word ids become them here.
    """
    from export.convert import logit_model

    logits = logit_model(model)

    def run(batch: np.ndarray) -> np.ndarray:
        if encoder.family == MULTI_HOT:
            dense = np.zeros((len(batch), encoder.vocab_size), dtype=np.float32)
            rows, cols = np.nonzero(batch)
            dense[rows, batch[rows, cols]] = 1.0
            batch = dense
        return logits(batch, training=False).numpy().astype(np.float64).reshape(-1)

    return run


def add_explanations(model, encoder: Encoder, gold: list[dict], k: int = EXPLANATION_TERMS) -> None:
    """Record the float model's top ``k`` explanation terms on each golden review, by the
    runtime's own explanation code (exact for the n-gram family, occlusion otherwise)."""
    if encoder.family == NGRAM:
        from train.ngram_model import bag_of

        table, bias = bag_of(model).table()
        table = table.astype(np.float64)
    else:
        run = _keras_logits(model, encoder)
    for g in gold:
        probability = lambda row: g["float_probability"]  # noqa: E731
        if encoder.family == NGRAM:
            e = explain_linear(encoder, g["text"], k, lambda ids: table[ids], bias, probability)
        else:
            e = explain_occlusion(encoder, g["text"], k, run, probability)
        g["explanation"] = {"method": e.method, "logit": e.logit,
                            "top": [[t.text, t.contribution] for t in e.top(k)]}
