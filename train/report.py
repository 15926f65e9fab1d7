"""Evaluation figures and the human-readable training report (metrics, plots, mistakes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score

from runtime.bundle.manifest import DEFAULT_THRESHOLD, LABELS
from train.corpus import Split
from train.plotting import pyplot, save


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, threshold: float = DEFAULT_THRESHOLD,
                           labels: tuple[str, ...] = LABELS) -> dict:
    """Two labels: accuracy, precision, recall, F1, ROC AUC and the confusion matrix (rows:
    truth); precision, recall and F1 are those of the second label (``labels[1]``)."""
    pred = (probs >= threshold).astype(np.int64)
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, pred, average="binary", zero_division=0)
    cm = confusion_matrix(y_true, pred, labels=[0, 1])
    return {
        "test_accuracy": float(np.mean(pred == y_true)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "roc_auc": float(roc_auc_score(y_true, probs)),
        "confusion_matrix": {"labels": list(labels), "rows_true_cols_predicted": cm.tolist()},
        "threshold": threshold,
    }


def per_label_metrics(y_true: np.ndarray, pred: np.ndarray, labels: tuple[str, ...]) -> dict:
    """Macro-F1 and each label's precision, recall, F1 and support (test examples).

    Args:
        y_true: the true label indexes.
        pred: the predicted label indexes.
        labels: the label names, in index order.

    Returns:
        ``{"macro_f1": float, "per_label": {name: {"precision", "recall", "f1", "support"}}}``.
    """
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, pred, labels=list(range(len(labels))), average=None, zero_division=0)
    return {"macro_f1": float(np.mean(f1)),
            "per_label": {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                                 "support": int(support[i])} for i, name in enumerate(labels)}}


def multiclass_metrics(y_true: np.ndarray, probs: np.ndarray, labels: tuple[str, ...]) -> dict:
    """N > 2 labels: accuracy, macro-F1, per-label figures and the confusion matrix (rows: truth).

    Args:
        y_true: the true label indexes.
        probs: ``(n, N)`` probabilities.
        labels: the label names, in index order.

    Returns:
        The figures, as in metrics.json.
    """
    pred = np.asarray(probs).argmax(axis=1)
    cm = confusion_matrix(y_true, pred, labels=list(range(len(labels))))
    return {"test_accuracy": float(np.mean(pred == y_true)), **per_label_metrics(y_true, pred, labels),
            "confusion_matrix": {"labels": list(labels), "rows_true_cols_predicted": cm.tolist()}}


def preview(text: str, width: int = 240) -> str:
    """A one-line start of a review: HTML breaks and runs of whitespace become one space."""
    return " ".join(text.replace("<br />", " ").split())[:width]


def plot_history(history: dict, best_epoch: int, monitor: str, path: Path, loss_name: str = "Binary cross-entropy") -> None:
    plt = pyplot()
    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, title in ((axes[0], "loss", loss_name), (axes[1], "accuracy", "Accuracy")):
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


def _title(text: str, width: int) -> str:
    """``text`` broken into lines of at most ``width`` characters (a long title would be cut)."""
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def plot_confusion(metrics: dict, path: Path, title: str = "Test confusion matrix") -> None:
    cm = np.asarray(metrics["confusion_matrix"]["rows_true_cols_predicted"])
    if len(cm) > 2:
        return plot_confusion_multiclass(metrics, path, title)
    plt = pyplot()
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
    ax.set_title(_title(f"{title} (accuracy {metrics['test_accuracy']:.2%})", 48))
    fig.colorbar(im, ax=ax, fraction=0.046)
    save(fig, path)


def plot_confusion_multiclass(metrics: dict, path: Path, title: str = "Test confusion matrix") -> None:
    """The N x N test confusion matrix, coloured by the share of each true label's row (so rare
    labels show as clearly as common ones), with the counts written in when N <= 25."""
    plt = pyplot()
    cm = np.asarray(metrics["confusion_matrix"]["rows_true_cols_predicted"])
    labels = metrics["confusion_matrix"]["labels"]
    n = len(labels)
    side = min(4.0 + 0.55 * n, 30.0)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    if n <= 25:
        for (i, j), v in np.ndenumerate(cm):
            if v:
                ax.text(j, i, f"{v:,}", ha="center", va="center", fontsize=9 if n <= 12 else 7,
                        color="white" if share[i, j] > 0.5 else "black")
    if n <= 60:
        ax.set_xticks(range(n), labels, rotation=45 if max(map(len, labels)) > 3 else 0, ha="right" if
                      max(map(len, labels)) > 3 else "center")
        ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(_title(f"{title} (accuracy {metrics['test_accuracy']:.2%}, macro-F1 {metrics['macro_f1']:.3f})",
                        int(side * 11)))
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true label's examples")
    save(fig, path)


def plot_probabilities(y_true: np.ndarray, probs: np.ndarray, path: Path, labels: tuple[str, ...] | None = None) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    bins = np.linspace(0, 1, 41)
    neg, pos = (f"{labels[0]} examples", f"{labels[1]} examples") if labels else ("negative reviews", "positive reviews")
    ax.hist(probs[y_true == 0], bins=bins, alpha=0.6, label=neg, color="tab:red")
    ax.hist(probs[y_true == 1], bins=bins, alpha=0.6, label=pos, color="tab:blue")
    ax.axvline(DEFAULT_THRESHOLD, color="black", linestyle="--", label=f"threshold {DEFAULT_THRESHOLD:g}")
    ax.set_xlabel(f"predicted probability of {labels[1] if labels else 'positive'}")
    ax.set_ylabel("test examples" if labels else "test reviews")
    ax.set_yscale("log")
    ax.set_title("Predicted probabilities on the test split")
    ax.legend()
    save(fig, path)


def confident_mistakes_multiclass(y_true: np.ndarray, probs: np.ndarray, split: Split, labels: tuple[str, ...],
                                  k: int = 25) -> str:
    """The ``k`` wrong top labels the model was surest of, with the start of each text."""
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != y_true)
    confidence = probs[wrong, pred[wrong]]
    lines = ["Most confident mistakes on the test split (p = probability of the predicted label)", ""]
    for i in wrong[np.argsort(-confidence, kind="stable")][:k]:
        lines.append(f"{split.ids[i]}  true={labels[int(y_true[i])]}  predicted={labels[int(pred[i])]}  "
                     f"p={probs[i, pred[i]]:.4f}")
        lines.append(f"    {preview(split.texts[i])}")
    return "\n".join(lines) + "\n"


def confident_mistakes(y_true: np.ndarray, probs: np.ndarray, split: Split, k: int = 25,
                       labels: tuple[str, ...] = LABELS) -> str:
    """The ``k`` wrong predictions the model was surest of, with the start of each review."""
    pred = probs >= DEFAULT_THRESHOLD
    wrong = np.flatnonzero(pred != (y_true == 1))
    confidence = np.abs(probs[wrong] - DEFAULT_THRESHOLD)
    lines = [f"Most confident mistakes on the test split (probability = P({labels[1]}))", ""]
    for i in wrong[np.argsort(-confidence, kind="stable")][:k]:
        truth = labels[int(y_true[i])]
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


def _per_label_table(metrics: dict) -> str:
    rows = ["| label | precision | recall | F1 | test examples |", "|---|---|---|---|---|"]
    for name, m in metrics["per_label"].items():
        rows.append(f"| {name} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['support']:,} |")
    return "\n".join(rows)


def _tuning_text(metrics: dict) -> str:
    t = metrics.get("tuning")
    if not t:
        return ""
    lines = [f"Settings chosen on validation (time budget {t['time_budget_seconds']:g} s; the test split plays no part):",
             "", "| setting | validation accuracy | validation loss | seconds |", "|---|---|---|---|"]
    for i, trial in enumerate(t["trials"]):
        mark = " (chosen)" if i == t["chosen"] else ""
        lines.append(f"| {trial['setting']}{mark} | {trial['validation_accuracy']:.4f} | {trial['validation_loss']:.4f} | "
                     f"{trial['seconds']:.1f} |")
    return "\n".join(lines)


def write_multiclass(out: Path, history: dict, metrics: dict, y_true: np.ndarray, probs: np.ndarray, test: Split,
                     labels: tuple[str, ...]) -> None:
    """``write_all`` for N > 2 labels: accuracy, macro-F1, per-label figures, the N x N confusion matrix."""
    plot_history(history, metrics["best_epoch"], metrics["early_stopping_monitor"], out / "history.png",
                 loss_name="Cross-entropy")
    plot_confusion_multiclass(metrics, out / "confusion_matrix.png")
    (out / "mistakes.txt").write_text(confident_mistakes_multiclass(y_true, probs, test, labels), encoding="utf-8")
    c = metrics.get("calibration")
    calibration = (f"Calibration ({c['bins']} bins, top label): expected calibration error {c['test_ece']:.4f} on the "
                   f"test split, {c['validation_ece']:.4f} on validation. A temperature fitted on validation "
                   f"(T = {c['fitted_temperature']:.3f}) gives {c['validation_ece_scaled']:.4f} there. "
                   f"See reliability.png." if c else "")
    (out / "report.md").write_text(
        f"""# Training report

| metric | value |
|---|---|
| labels | {len(labels)} |
| test accuracy | {metrics['test_accuracy']:.4f} |
| test macro-F1 | {metrics['macro_f1']:.4f} |
| test loss | {metrics['test_loss']:.4f} |
| epochs trained / kept | {metrics['epochs_trained']} / {metrics['best_epoch']} |
| best validation loss / accuracy | {metrics['best_val_loss']:.4f} / {metrics['best_val_accuracy']:.4f} |
| final model trained on | {metrics['final_model_reviews']:,} examples{' (refitted on every training example for the kept number of epochs)' if metrics['refit'] else ''} |
| training time | {metrics.get('training_seconds', float('nan')):.1f} s |

{_per_label_table(metrics)}

{_tuning_text(metrics)}

{calibration}

![history](history.png)
![confusion matrix](confusion_matrix.png)
![reliability](reliability.png)

The most confident mistakes are listed in `mistakes.txt`.
""",
        encoding="utf-8",
    )


def _extra_binary(metrics: dict) -> str:
    """A user's two-label report: macro-F1, per-label figures and the search (nothing for IMDB)."""
    if "per_label" not in metrics:
        return ""
    return (f"\n\nMacro-F1 {metrics['macro_f1']:.4f}; training took {metrics.get('training_seconds', float('nan')):.1f} s.\n\n"
            f"{_per_label_table(metrics)}\n\n{_tuning_text(metrics)}\n")


def write_all(out: Path, history: dict, metrics: dict, y_true: np.ndarray, probs: np.ndarray, test: Split,
              labels: tuple[str, ...] | None = None) -> None:
    """Plots, the mistakes file and report.md into ``out``. ``labels``: a user's label names
    (None: the IMDB report, as it always was); ``probs`` of shape ``(n, N)`` for N > 2."""
    if labels is not None and len(labels) > 2:
        return write_multiclass(out, history, metrics, y_true, probs, test, labels)
    plot_history(history, metrics["best_epoch"], metrics["early_stopping_monitor"], out / "history.png")
    plot_confusion(metrics, out / "confusion_matrix.png")
    plot_probabilities(y_true, probs, out / "probabilities.png", labels)
    mistakes = confident_mistakes(y_true, probs, test, labels=labels or LABELS)
    (out / "mistakes.txt").write_text(mistakes, encoding="utf-8")
    cm = metrics["confusion_matrix"]["rows_true_cols_predicted"]
    unit = "example" if labels is not None else "review"
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
| validation holds out | {dict(movies='whole movies', examples='single examples').get(metrics['validation_holds_out'], 'single reviews')} |
| final model trained on | {metrics['final_model_reviews']:,} {unit}s{f' (refitted on every training {unit} for the kept number of epochs)' if metrics['refit'] else ''} |

Confusion matrix (rows: true {", ".join(labels or ("negative", "positive"))}; columns: predicted): {cm}

{_calibration_text(metrics.get("calibration"))}{_extra_binary(metrics)}

![history](history.png)
![confusion matrix](confusion_matrix.png)
![probabilities](probabilities.png)
![reliability](reliability.png)

The most confident mistakes are listed in `mistakes.txt`.
""",
        encoding="utf-8",
    )
