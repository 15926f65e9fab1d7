"""The golden set: a few dozen fixed test reviews with every artifact's probability.

Chosen deterministically from the float model's test predictions to cover what parity
must hold for: the shortest and longest reviews, the clearest, the most borderline, and
a seeded sample of ordinary ones. Each also records the float Keras model's explanation
(its top terms), which parity compares every artifact's explanation with.

For N > 2 labels the probabilities are rows of N: "clear" and "borderline" are by the top-1
margin (top probability minus the second), each review records ``float_probabilities`` and
one list of N probabilities per artifact, and its explanation is of the float model's top
label (named in ``explanation.label``).
"""

from __future__ import annotations

import numpy as np

from runtime.bundle.manifest import LABELS
from runtime.explain import explain_linear, explain_occlusion
from runtime.encoding.features import MULTI_HOT, NGRAM, Encoder
from runtime.checks.parity import EXPLANATION_TERMS

PER_KIND = 8


def choose(texts: list[str], ids: list[str], labels: np.ndarray, probs: np.ndarray, threshold: float | None,
           seed: int = 0, names: tuple[str, ...] = LABELS) -> list[dict]:
    """Up to ``5 * PER_KIND`` distinct reviews, each with its float probability (two labels:
    ``probs`` is ``(n,)`` P(names[1])) or probabilities (N > 2: ``probs`` is ``(n, N)``)."""
    probs = np.asarray(probs)
    lengths = np.array([len(t) for t in texts])
    if probs.ndim == 2:
        top2 = np.sort(probs, axis=1)[:, -2:]
        margin = top2[:, 1] - top2[:, 0]
    else:
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
    if probs.ndim == 2:
        return [{"id": ids[i], "kind": kind, "label": names[int(labels[i])], "text": texts[i],
                 "float_probabilities": [float(p) for p in probs[i]], "probabilities": {}}
                for i, kind in chosen.items()]
    return [
        {
            "id": ids[i],
            "kind": kind,
            "label": names[int(labels[i])],
            "text": texts[i],
            "float_probability": float(probs[i]),
            "probabilities": {},
        }
        for i, kind in chosen.items()
    ]


def _keras_logits(model, encoder: Encoder, column: int | None = None):
    """The Keras model as ``run(model inputs) -> logits``, the interface explanations take
    (``Backend.run_logits``): read before the sigmoid or softmax, so that they do not
    saturate. ``column``: for an N-label model, the logit of that label.

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
        out = logits(batch, training=False).numpy().astype(np.float64)
        return out.reshape(-1) if column is None else out[:, column]

    return run


def add_explanations(model, encoder: Encoder, gold: list[dict], k: int = EXPLANATION_TERMS,
                     names: tuple[str, ...] = LABELS) -> None:
    """Record the float model's top ``k`` explanation terms on each golden review, by the
    runtime's own explanation code (exact for the n-gram family, occlusion otherwise). For
    N > 2 labels, of the float model's top label: the contributions to that label's logit."""
    if encoder.family == NGRAM:
        from train.ngram_model import bag_of

        table, bias = bag_of(model).table()
        table = table.astype(np.float64)
    for g in gold:
        many = "float_probabilities" in g
        column = int(np.argmax(g["float_probabilities"])) if many else None
        p = g["float_probabilities"][column] if many else g["float_probability"]
        probability = lambda row, p=p: p  # noqa: E731
        if encoder.family == NGRAM:
            if many:
                e = explain_linear(encoder, g["text"], k, lambda ids, c=column: table[ids, c], float(bias[column]),
                                   probability)
            else:
                e = explain_linear(encoder, g["text"], k, lambda ids: table[ids], bias, probability)
        else:
            e = explain_occlusion(encoder, g["text"], k, _keras_logits(model, encoder, column), probability)
        g["explanation"] = {"method": e.method, **({"label": names[column]} if many else {}), "logit": e.logit,
                            "top": [[t.text, t.contribution] for t in e.top(k)]}
