"""The benchmark on a user's own data: a model trained with ``python -m train --data FILE``.

The model directory's config.json records how its data was read (``data.reading``) and which
files it came from (``data.files``, with their sha256); ``train.dataset.load`` reads them
again, and the split is checked to be the one the model was trained on (same files, same test
ids). On it, every artifact of the bundle, the float Keras model and the desktop peers
(trained on the same training examples, settings chosen on the same validation examples) get
accuracy, macro-F1, each label's precision, recall and F1, and a confusion matrix plot.

The IMDB-only sections are not run on a user's data: the volume job (its goals are stated
on the 1,000,000 reviews of ten copies of the aclImdb archive) and the tutorial pipeline
(a particular IMDB tutorial's app). Latency, throughput, explanation cost and cold start run
on the user's test texts.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from tqdm import tqdm

from runtime.classifier import Classifier
from train.errors import DataError
from train.model_dir import ModelDir

KERAS = "keras float32"
WIDE_TABLE_LABELS = 8  # more labels: the per-label table has a row per label instead of a column

NOT_RUN = {
    "volume": "its goals are stated on IMDB (1,000,000 reviews: ten copies of the aclImdb archive); a user's test "
              "split is too small to say anything about bulk scoring that the throughput section does not",
    "tutorial pipeline": "it is a particular IMDB tutorial's app (lower().split() into a binary model)",
}


def is_user_model(model_dir: ModelDir) -> bool:
    """Whether ``model_dir`` was trained on a user's data (its config records how it was read)."""
    return bool((model_dir.config.get("data") or {}).get("reading"))


def load_split(model_dir: ModelDir):
    """The user's data as the model was trained on it.

    Args:
        model_dir: a model directory trained with ``python -m train --data FILE``.

    Returns:
        ``(pool, val_mask, test, labels)``: every training example (the validation file's
        appended, as training does), which of them are the validation examples, the test
        split, and the label names in the model's order.

    Raises:
        DataError: a file is missing, unreadable or changed since training, or the split it
            makes is not the model's.
    """
    from train import dataset
    from train.corpus import Split

    data = model_dir.config["data"]
    reading, files = data["reading"], data.get("files") or {}
    if "train" not in files:
        raise DataError(f"{model_dir.path / 'config.json'}: data.files has no training file")
    for name, f in files.items():
        path = Path(f.get("path", ""))
        if not path.exists():
            where = "" if path.is_absolute() else " (a path relative to where python -m train ran)"
            raise DataError(f"{path}: the {name} data {model_dir.path} was trained on{where} is not there; run "
                            "from that directory, or put the file back")
    splits = model_dir.splits
    hold_out = (splits.get("test") or {}).get("fraction") or 0.1
    corpus = dataset.load(files["train"]["path"], files.get("test", {}).get("path"),
                          files.get("validation", {}).get("path"), reading.get("format"),
                          reading.get("text_column", "text"), reading.get("label_column", "label"),
                          hold_out, splits.get("seed", model_dir.config.get("seed", 1337)),
                          dataset.recorded_max_bytes(reading))
    for name, recorded in files.items():
        now = corpus.split_record["files"].get(name, {}).get("sha256")
        if now != recorded.get("sha256"):
            raise DataError(f"{recorded.get('path')}: changed since {model_dir.path} was trained (sha256 differs)")
    if tuple(corpus.labels) != model_dir.labels:
        raise DataError(f"{files['train']['path']}: labels {list(corpus.labels)} are not the model's "
                        f"{list(model_dir.labels)}")
    test = corpus.splits["test"]
    if "test_ids" in splits and list(test.ids) != list(splits["test_ids"]):
        raise DataError(f"{model_dir.path / 'splits.json'}: the test split read again is not the model's")
    pool = corpus.splits["train"]
    if corpus.validation is not None:
        v = corpus.validation
        pool = Split(pool.texts + v.texts, pool.labels + v.labels, pool.ids + v.ids, [])
    held = set(splits.get("validation_ids") or ())
    val_mask = np.array([i in held for i in pool.ids])
    if not val_mask.any():
        raise DataError(f"{model_dir.path / 'splits.json'}: no validation ids of the training data")
    return pool, val_mask, test, tuple(corpus.labels)


def as_columns(probs: np.ndarray, n_labels: int) -> np.ndarray:
    """``(n, N)`` probabilities: two labels' ``(n,)`` P(labels[1]) becomes ``[1 - p, p]``."""
    probs = np.asarray(probs, np.float64)
    if n_labels == 2 and probs.ndim == 1:
        return np.stack([1.0 - probs, probs], axis=1)
    return probs.reshape(len(probs), n_labels)


def predicted(probs: np.ndarray, threshold: float | None) -> np.ndarray:
    """Label indexes from ``(n, N)`` probabilities: by the threshold on P(labels[1]) for two
    labels (as the runtime labels them), else the most probable label."""
    if probs.shape[1] == 2 and threshold is not None:
        return (probs[:, 1] >= threshold).astype(np.int64)
    return probs.argmax(axis=1)


def figures(probs: np.ndarray, y: np.ndarray, labels: tuple[str, ...], threshold: float | None,
            ref_pred: np.ndarray | None = None, ref_probs: np.ndarray | None = None) -> dict:
    """Accuracy, macro-F1, each label's figures, the confusion matrix, top-label ECE, and
    (given the float model's) agreement with the float model's labels and the largest
    probability difference."""
    from sklearn.metrics import confusion_matrix

    from train.calibration import top_label_ece
    from train.report import per_label_metrics

    pred = predicted(probs, threshold)
    cm = confusion_matrix(y, pred, labels=list(range(len(labels))))
    out = {"accuracy": float(np.mean(pred == y)), "test_accuracy": float(np.mean(pred == y)),
           **per_label_metrics(y, pred, labels),
           "confusion_matrix": {"labels": list(labels), "rows_true_cols_predicted": cm.tolist()},
           "ece": float(top_label_ece(probs, y)), "examples": int(len(y))}
    if ref_pred is not None:
        out["agreement_with_float"] = float(np.mean(pred == ref_pred))
        out["max_abs_diff_vs_float"] = float(np.abs(probs - ref_probs).max())
    return out


def _batched(run, texts: list[str], n_labels: int, batch: int = 1000) -> np.ndarray:
    return np.concatenate([as_columns(run(texts[i : i + batch]), n_labels) for i in range(0, len(texts), batch)])


def accuracy(clfs: dict[str, Classifier], keras_ref, texts: list[str], y: np.ndarray, labels: tuple[str, ...],
             threshold: float | None) -> dict:
    """Every candidate's figures on the test split, beside the float Keras model's."""
    n = len(labels)
    ref = _batched(keras_ref.predict_proba, texts, n)
    ref_pred = predicted(ref, threshold)
    out = {KERAS: {**figures(ref, y, labels, threshold, ref_pred, ref), "size_bytes": keras_ref.size_bytes,
                             "temperature": keras_ref.temperature}}
    for key, clf in tqdm(clfs.items(), desc="accuracy", unit="candidate"):
        out[key] = {**figures(_batched(clf.predict_proba, texts, n), y, labels, threshold, ref_pred, ref),
                    "size_bytes": clf.bundle.artifacts[clf.artifact].size_bytes}
    return out


def peers(pool, val_mask: np.ndarray, test_texts: list[str], y: np.ndarray, labels: tuple[str, ...],
          latency_texts: list[str], repeats: int) -> dict:
    """The desktop peers (``benchmarks.peer_models``) on the model's split: settings chosen on
    the validation examples by accuracy, refitted on every training example (as the toolkit's
    recipe is), scored once on the test split. fastText's training file is shuffled (it
    learns in file order; a file sorted by label would teach it one label at a time)."""
    import time

    from benchmarks import peer_models as pm

    n = len(labels)
    texts, all_y = list(pool.texts), np.asarray(pool.labels)
    train = ([t for t, v in zip(texts, val_mask) if not v], all_y[~val_mask])
    val = ([t for t, v in zip(texts, val_mask) if v], all_y[val_mask])
    grids = {
        pm.SKLEARN: (lambda s: pm.SklearnPeer(s["C"], n), [{"C": c} for c in pm.SKLEARN_C]),
        pm.FASTTEXT: (lambda s: pm.FastTextPeer(**s, n_labels=n), list(pm.FASTTEXT_SETTINGS)),
    }
    if n == 2:
        grids[pm.NBLR] = (lambda s: pm.NbLrPeer(s["C"]), [{"C": c} for c in pm.NBLR_C])
    out = {}
    for name, (make, grid) in tqdm(grids.items(), desc="peers", unit="peer"):
        best = None
        for settings in grid:
            peer = make(settings).fit(*train)
            acc = float(np.mean(peer.label_probabilities(val[0]).argmax(axis=1) == val[1]))
            if best is None or acc > best[1]:
                best = (settings, acc)
        peer = make(best[0]).fit(texts, all_y)
        probs = peer.label_probabilities(test_texts)
        start = time.perf_counter()
        peer.label_probabilities(latency_texts)
        batch_seconds = time.perf_counter() - start
        out[name] = {**figures(probs, y, labels, None), "settings": peer.settings, "validation_accuracy": best[1],
                     "size_bytes": peer.size_bytes(),
                     "latency_p50_us": pm._p50_us(lambda t, p=peer: p.label_probabilities([t]), latency_texts, repeats),
                     "batch_reviews_per_s": len(latency_texts) / batch_seconds,
                     "training_examples": len(texts), "validation_examples": len(val[0]),
                     "test_examples": len(test_texts)}
    return out


def slug(name: str) -> str:
    """A file name for a candidate: ``tflite-int8 @ litert`` -> ``tflite-int8_litert``."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", name).strip("_")


def plot_confusions(result: dict, out: Path) -> dict[str, str]:
    """One confusion matrix PNG per candidate and peer; returns ``{candidate: file name}``."""
    from train.report import plot_confusion

    files = {}
    rows = {**result["accuracy"], **{f"peer: {k}": v for k, v in result.get("peers", {}).items()}}
    for name, figs in rows.items():
        path = out / f"confusion_{slug(name)}.png"
        plot_confusion(figs, path, title=f"{name}: test confusion matrix")
        files[name] = path.name
    return files


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def markdown(result: dict) -> str:
    """The report of a benchmark on a user's data."""
    from benchmarks.report import _fmt_us, speed_lines

    meta, d = result["meta"], result["data"]
    labels = d["labels"]
    lines = [
        "# Benchmark report: your own data", "",
        f"{meta['date']} · {meta['machine']['cpu']} · {meta['machine']['cores']} cores · Python {meta['python']} · "
        f"mode `{meta['mode']}` · bundle `{meta['bundle']}` (manifest sha256 `{meta['manifest_sha256'][:12]}`)", "",
        f"Data: `{d['train']}` ({d['format']}), {len(labels)} labels; test split: {d['test_source']}, "
        f"{d['test_examples']:,} examples (the model's own test ids); training {d['training_examples']:,} examples, "
        f"of which {d['validation_examples']:,} validation. The float model, every artifact and the peers are "
        "scored on the same test examples; the peers are trained on the same training examples with their "
        "settings chosen on the same validation examples, then refitted on all of them.", "",
        f"Recommended default artifact (fastest that keeps accuracy): `{result['recommended_default']}`", "",
        "## Accuracy and size", "",
        "| candidate | accuracy | macro-F1 | top-label ECE | agreement with float | max abs diff | size KiB | confusion |",
        "|---|---|---|---|---|---|---|---|"]
    plots = result["confusion_plots"]
    for name, a in result["accuracy"].items():
        size = f"{a['size_bytes'] / 1024:,.1f}" if a.get("size_bytes") else ""
        lines.append(f"| {name} | {_pct(a['accuracy'])} | {a['macro_f1']:.4f} | {a['ece']:.4f} | "
                     f"{_pct(a['agreement_with_float'])} | {a['max_abs_diff_vs_float']:.2e} | {size} | "
                     f"[png]({plots[name]}) |")
    if "peers" in result:
        lines += ["", "## Peers, trained on the same split", "",
                  "| model | accuracy | macro-F1 | validation accuracy | size KiB | single text p50 µs | "
                  "batch texts/s | settings | confusion |", "|---|---|---|---|---|---|---|---|---|"]
        for name, p in result["peers"].items():
            lines.append(f"| {name} | {_pct(p['accuracy'])} | {p['macro_f1']:.4f} | {_pct(p['validation_accuracy'])} | "
                         f"{p['size_bytes'] / 1024:,.0f} | {p['latency_p50_us']:.1f} | "
                         f"{p['batch_reviews_per_s']:,.0f} | `{p['settings']}` | [png]({plots['peer: ' + name]}) |")
    rows = {**result["accuracy"], **{f"peer: {k}": v for k, v in result.get("peers", {}).items()}}
    support = next(iter(rows.values()))["per_label"]
    if len(labels) <= WIDE_TABLE_LABELS:
        lines += ["", "## Per label (precision / recall / F1; support = test examples)", "",
                  "| candidate | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
        lines.append("| support | " + " | ".join(f"{support[lab]['support']:,}" for lab in labels) + " |")
        for name, a in rows.items():
            cells = [f"{p['precision']:.3f} / {p['recall']:.3f} / {p['f1']:.3f}"
                     for p in (a["per_label"][lab] for lab in labels)]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    else:  # one row per label, F1 only (every figure is in benchmark.json)
        shown = [n for n in rows if n == KERAS or n == result["recommended_default"] or n.startswith("peer: ")]
        lines += ["", "## Per label: F1 (precision and recall in benchmark.json)", "",
                  "| label | support | " + " | ".join(shown) + " |", "|---" * (len(shown) + 2) + "|"]
        for lab in labels:
            lines.append(f"| {lab} | {support[lab]['support']:,} | "
                         + " | ".join(f"{rows[n]['per_label'][lab]['f1']:.3f}" for n in shown) + " |")
    lines += speed_lines(result, "Single-text latency on the test texts, raw text to probabilities (µs)",
                         "Throughput (texts per second, raw text to probabilities)",
                         "Cold start of one classification (the median test text), whole process")
    c = result["explanation_cost"]
    lines += ["", f"## Explanations ({c['artifact']}, {c['method']}, top {c['k']} each way, {c['reviews']} texts)", "",
              "| call | p50 µs | p90 µs | p99 µs |", "|---|---|---|---|"]
    for call in ("classify", "explain"):
        lines.append(f"| {call} | {_fmt_us(c[call]['p50_us'])} | {_fmt_us(c[call]['p90_us'])} | "
                     f"{_fmt_us(c[call]['p99_us'])} |")
    lines += ["", "## Not run", ""] + [f"- {k}: {v}" for k, v in {**result["not_run"], **result["skipped"]}.items()]
    lines += ["", "![latency](latency.png)", "", "![throughput](throughput.png)", ""]
    lines += [f"![{name}]({f})" for name, f in plots.items()]
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()), ""]
    return "\n".join(lines)
