"""How far a model's probabilities can be taken at their word: expected calibration error,
reliability diagrams and a temperature fitted on validation reviews.

ECE here is the usual binned form over P(positive): reviews are put in ``BINS`` equal-width
bins of their probability, and ECE is the review-weighted mean of |fraction positive - mean
probability| over the bins. A temperature ``T`` rescales the logit (``sigmoid(logit / T)``);
it is fitted by minimizing the log-loss on validation reviews, never on the test split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.probability import logits as _logits
from runtime.probability import HIGH, LOW, label_logits, tempered_all, tempered_softmax

BINS = 10


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> dict:
    """Per bin: mean probability, fraction positive and count (empty bins left out); and ECE."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels, np.float64)
    which = np.minimum((probs * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    mean_p = np.bincount(which, probs, minlength=bins)
    frac = np.bincount(which, labels, minlength=bins)
    used = count > 0
    mean_p[used] /= count[used]
    frac[used] /= count[used]
    ece = float(np.sum(count[used] * np.abs(frac[used] - mean_p[used])) / max(len(probs), 1))
    return {"ece": ece, "bins": bins, "mean_probability": mean_p[used].tolist(),
            "fraction_positive": frac[used].tolist(), "count": count[used].tolist()}


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    return reliability(probs, labels, bins)["ece"]


def scaled(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities with their logits divided by ``temperature``, as the runtime computes them."""
    return tempered_all(np.asarray(probs).tolist(), temperature).astype(np.float64)


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in [LOW, HIGH] that minimizes the log-loss of ``probs`` (golden-section search
    on log T; the log-loss of a scaled logit is unimodal in T)."""
    z, y = _logits(probs), np.asarray(labels, np.float64)

    def loss(log_t: float) -> float:
        s = z / np.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, s) - y * s))

    return _minimize_temperature(loss)


def temperature_decision(val_probs: np.ndarray, val_labels: np.ndarray, min_gain: float = 0.002) -> dict:
    """Whether temperature scaling lowers the validation ECE by at least ``min_gain``; the
    figures either way."""
    t = fit_temperature(val_probs, val_labels)
    return _decision(t, expected_calibration_error(val_probs, val_labels),
                     expected_calibration_error(scaled(val_probs, t), val_labels), min_gain)


def _decision(t: float, before: float, after: float, min_gain: float) -> dict:
    """The record of a temperature: applied when it lowers the validation ECE by ``min_gain``."""
    return {"fitted_temperature": t, "validation_ece": before, "validation_ece_scaled": after,
            "applied": bool(before - after >= min_gain),
            "note": "applied" if before - after >= min_gain else
                    f"not needed: scaling lowers validation ECE by {before - after:.4f} (< {min_gain})"}


def softmax_tempered(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(p) / T)`` per row, as the runtime computes it (``tempered_softmax``): the
    N > 2 counterpart of ``scaled``."""
    return tempered_softmax(probs, temperature).astype(np.float64)


def fit_multiclass_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in [LOW, HIGH] that minimizes the negative log-likelihood of
    ``softmax(z / T)`` (golden-section search on log T; the NLL is convex in 1/T)."""
    z = label_logits(probs)
    y = np.asarray(labels, np.int64)

    def loss(log_t: float) -> float:
        s = z / np.exp(log_t)
        m = s.max(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(s - m).sum(axis=1))
        return float(np.mean(lse - s[np.arange(len(y)), y]))

    return _minimize_temperature(loss)


def top_label_reliability(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> dict:
    """``reliability`` of the top label: confidence (the highest probability) against whether
    the top label is right; its ``ece`` is the top-label ECE."""
    probs = np.asarray(probs, np.float64)
    correct = (probs.argmax(axis=1) == np.asarray(labels)).astype(np.float64)
    return reliability(probs.max(axis=1), correct, bins)


def top_label_ece(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """The top-label expected calibration error of ``(n, N)`` probabilities."""
    return top_label_reliability(probs, labels, bins)["ece"]


def multiclass_temperature_decision(val_probs: np.ndarray, val_labels: np.ndarray, min_gain: float = 0.002) -> dict:
    """``temperature_decision`` for N > 2 labels: one temperature on the logits, judged by the
    top-label ECE on validation."""
    t = fit_multiclass_temperature(val_probs, val_labels)
    return _decision(t, top_label_ece(val_probs, val_labels),
                     top_label_ece(softmax_tempered(val_probs, t), val_labels), min_gain)


def plot_reliability(curves: dict[str, dict], path: Path, title: str, top_label: bool = False) -> None:
    """A reliability diagram: fraction positive against mean probability per bin, one line per
    model, with the diagonal of perfect calibration and each model's ECE in the legend
    (``top_label``: fraction right against the top label's mean probability)."""
    from train.plotting import pyplot, save

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 6))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    markers = "osD^vP*Xh"
    for i, (name, r) in enumerate(curves.items()):
        ax.plot(r["mean_probability"], r["fraction_positive"], marker=markers[i % len(markers)], markersize=5,
                linewidth=1.2, alpha=0.85, label=f"{name}: ECE {r['ece']:.4f}")
    if top_label:
        ax.set_xlabel("mean probability of the top label in the bin")
        ax.set_ylabel("fraction of examples in the bin whose top label is right")
    else:
        ax.set_xlabel("mean predicted P(positive) in the bin")
        ax.set_ylabel("fraction of reviews in the bin that are positive")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    save(fig, path)


def _minimize_temperature(loss) -> float:
    """The temperature in [LOW, HIGH] minimizing ``loss(log T)``, a unimodal function of log T
    (golden-section search, 60 steps)."""
    lo, hi = np.log(LOW), np.log(HIGH)
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    for _ in range(60):
        if loss(a) < loss(b):
            hi, b = b, a
            a = hi - g * (hi - lo)
        else:
            lo, a = a, b
            b = lo + g * (hi - lo)
    return float(np.exp((lo + hi) / 2))
