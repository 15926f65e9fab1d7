"""Evaluation figures and the human-readable training report (metrics, plots, mistakes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score

from runtime.bundle.manifest import DEFAULT_THRESHOLD, LABELS
from train.corpus import Split
from train.plotting import pyplot, save


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> dict:
    """Accuracy, precision, recall, F1, ROC AUC and the confusion matrix (rows: truth)."""
    pred = (probs >= threshold).astype(np.int64)
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, pred, average="binary", zero_division=0)
    cm = confusion_matrix(y_true, pred, labels=[0, 1])
    return {
        "test_accuracy": float(np.mean(pred == y_true)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "roc_auc": float(roc_auc_score(y_true, probs)),
        "confusion_matrix": {"labels": list(LABELS), "rows_true_cols_predicted": cm.tolist()},
        "threshold": threshold,
    }


def preview(text: str, width: int = 240) -> str:
    """A one-line start of a review: HTML breaks and runs of whitespace become one space."""
    return " ".join(text.replace("<br />", " ").split())[:width]


def plot_history(history: dict, best_epoch: int, monitor: str, path: Path) -> None:
    plt = pyplot()
    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, title in ((axes[0], "loss", "Binary cross-entropy"), (axes[1], "accuracy", "Accuracy")):
        ax.plot(epochs, history[key], "o-", label="training")
        ax.plot(epochs, history[f"val_{key}"], "s-", label="validation")
        ax.axvline(best_epoch, color="grey", linestyle="--", label=f"kept: epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.set_title(title)
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"Training vs validation (early stopping on {monitor.replace('val_', 'validation ')})")
    save(fig, path)


def plot_confusion(metrics: dict, path: Path) -> None:
    plt = pyplot()
    cm = np.asarray(metrics["confusion_matrix"]["rows_true_cols_predicted"])
    labels = metrics["confusion_matrix"]["labels"]
    fig, ax = plt.subplots(figsize=(5, 4.4))
    im = ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        share = v / cm[i].sum()
        ax.text(j, i, f"{v:,}\n{share:.1%} of row", ha="center", va="center",
                color="white" if v > cm.max() / 2 else "black", fontsize=11)
    ax.set_xticks([0, 1], labels)
    ax.set_yticks([0, 1], labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Test confusion matrix (accuracy {metrics['test_accuracy']:.2%})")
    fig.colorbar(im, ax=ax, fraction=0.046)
    save(fig, path)


def plot_probabilities(y_true: np.ndarray, probs: np.ndarray, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    bins = np.linspace(0, 1, 41)
    ax.hist(probs[y_true == 0], bins=bins, alpha=0.6, label="negative reviews", color="tab:red")
    ax.hist(probs[y_true == 1], bins=bins, alpha=0.6, label="positive reviews", color="tab:blue")
    ax.axvline(DEFAULT_THRESHOLD, color="black", linestyle="--", label=f"threshold {DEFAULT_THRESHOLD:g}")
    ax.set_xlabel("predicted probability of positive")
    ax.set_ylabel("test reviews")
    ax.set_yscale("log")
    ax.set_title("Predicted probabilities on the test split")
    ax.legend()
    save(fig, path)


def confident_mistakes(y_true: np.ndarray, probs: np.ndarray, split: Split, k: int = 25) -> str:
    """The ``k`` wrong predictions the model was surest of, with the start of each review."""
    pred = probs >= DEFAULT_THRESHOLD
    wrong = np.flatnonzero(pred != (y_true == 1))
    confidence = np.abs(probs[wrong] - DEFAULT_THRESHOLD)
    lines = ["Most confident mistakes on the test split (probability = P(positive))", ""]
    for i in wrong[np.argsort(-confidence, kind="stable")][:k]:
        truth = LABELS[int(y_true[i])]
        start = preview(split.texts[i])
        lines.append(f"{split.ids[i]}  true={truth}  p={probs[i]:.4f}")
        lines.append(f"    {start}")
    return "\n".join(lines) + "\n"


def _calibration_text(c: dict | None) -> str:
    """The calibration paragraph of report.md."""
    if not c:
        return ""
    verdict = ("temperature scaling would lower it" if c["applied"] else "temperature scaling is not needed")
    return (f"Calibration ({c['bins']} bins): expected calibration error {c['test_ece']:.4f} on the test split, "
            f"{c['validation_ece']:.4f} on validation (the early-stopped model). A temperature fitted on validation "
            f"(T = {c['fitted_temperature']:.3f}) gives {c['validation_ece_scaled']:.4f} there: {verdict} "
            f"(threshold: a gain of 0.002). See reliability.png.")


def write_all(out: Path, history: dict, metrics: dict, y_true: np.ndarray, probs: np.ndarray, test: Split) -> None:
    """Plots, the mistakes file and report.md into ``out``."""
    plot_history(history, metrics["best_epoch"], metrics["early_stopping_monitor"], out / "history.png")
    plot_confusion(metrics, out / "confusion_matrix.png")
    plot_probabilities(y_true, probs, out / "probabilities.png")
    (out / "mistakes.txt").write_text(confident_mistakes(y_true, probs, test), encoding="utf-8")
    cm = metrics["confusion_matrix"]["rows_true_cols_predicted"]
    (out / "report.md").write_text(
        f"""# Training report

| metric | value |
|---|---|
| test accuracy | {metrics['test_accuracy']:.4f} |
| test loss | {metrics['test_loss']:.4f} |
| precision | {metrics['precision']:.4f} |
| recall | {metrics['recall']:.4f} |
| F1 | {metrics['f1']:.4f} |
| ROC AUC | {metrics['roc_auc']:.4f} |
| epochs trained / kept | {metrics['epochs_trained']} / {metrics['best_epoch']} |
| best validation loss / accuracy | {metrics['best_val_loss']:.4f} / {metrics['best_val_accuracy']:.4f} |
| validation holds out | {'whole movies' if metrics['validation_holds_out'] == 'movies' else 'single reviews'} |
| final model trained on | {metrics['final_model_reviews']:,} reviews{' (refitted on every training review for the kept number of epochs)' if metrics['refit'] else ''} |

Confusion matrix (rows: true negative, positive; columns: predicted): {cm}

{_calibration_text(metrics.get("calibration"))}

![history](history.png)
![confusion matrix](confusion_matrix.png)
![probabilities](probabilities.png)
![reliability](reliability.png)

The most confident mistakes are listed in `mistakes.txt`.
""",
        encoding="utf-8",
    )
