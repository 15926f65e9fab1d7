"""Desktop peers, trained on the model directory's own split and scored in the same run.

* scikit-learn: TF-IDF over word uni+bigrams and logistic regression;
* NB-weighted logistic regression over word 1-3-grams (two labels only): the strongest
  documented linear model on IMDB (Wang & Manning 2012's NBSVM idea; Mesnil et al. 2014 report
  91.87% with trigrams), the anchor any order-aware model has to beat;
* fastText supervised with word bigrams, on text cleaned as fastText's own tutorial does
  (each of . ! ? , ' / ( ) spaced out, then lowercased; fastText splits on spaces only).

Each peer picks its settings on the model directory's validation reviews (whole movies held
out), is refitted on every training review, as the n-gram recipe is, and is scored once on
the test split. Benchmark-only dependencies: never the runtime's.
"""

from __future__ import annotations

import pickle
import random
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np


_PUNCTUATION = re.compile(r"([.!?,'/()])")
SKLEARN = "scikit-learn TF-IDF uni+bigram + LR"
FASTTEXT = "fastText supervised, word bigrams"
NBLR = "NB-weighted LR, hashed word 1-3-grams"
SKLEARN_C = (1.0, 4.0, 16.0)
NBLR_C = (0.3, 1.0, 3.0, 10.0)
NBLR_COLUMNS = 1 << 23  # hashed n-gram columns; the n-grams that share one are mostly rare ones
FASTTEXT_SETTINGS = ({"lr": 0.1, "epoch": 5}, {"lr": 0.5, "epoch": 5}, {"lr": 0.25, "epoch": 10})


class SklearnPeer:
    def __init__(self, c: float, n_labels: int = 2):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        # More than two labels: one multinomial (softmax) regression, as the toolkit's model is,
        # rather than liblinear's one-against-the-rest.
        solver = "liblinear" if n_labels == 2 else "lbfgs"
        self.settings = {"C": c, "ngram_range": [1, 2], "min_df": 2, "sublinear_tf": True, "solver": solver}
        if n_labels == 2:
            del self.settings["solver"]  # as the IMDB report has always shown it
        self.pipeline = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                                      LogisticRegression(C=c, solver=solver, max_iter=100 if n_labels == 2 else 1000))

    def fit(self, texts: Sequence[str], labels: np.ndarray) -> SklearnPeer:
        self.pipeline.fit(list(texts), labels)
        return self

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        return self.pipeline.predict_proba(list(texts))[:, 1]

    def label_probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, N)``: each label's probability, in label index order."""
        return self.pipeline.predict_proba(list(texts))

    def size_bytes(self) -> int:
        return len(pickle.dumps(self.pipeline, protocol=pickle.HIGHEST_PROTOCOL))


class NbLrPeer:
    """Logistic regression on binary 1-3-gram presence scaled by the naive Bayes log-count ratio
    ``r = log((p / |p|) / (q / |q|))`` (add-one counts per class), two labels only. The n-grams
    are hashed (no vocabulary to hold); ``r`` is folded into the weights after fitting, so
    scoring is one sparse dot product."""

    def __init__(self, c: float, n_labels: int = 2):
        from sklearn.feature_extraction.text import HashingVectorizer

        if n_labels != 2:
            raise ValueError(f"the NB-weighted peer takes two labels, not {n_labels}")
        self.settings = {"C": c, "ngram_range": [1, 3], "columns": NBLR_COLUMNS, "binary": True}
        # Words of one character and ! ? count: "a 10", "i loved", "!" carry sentiment in trigrams.
        self.vectorizer = HashingVectorizer(ngram_range=(1, 3), n_features=NBLR_COLUMNS, alternate_sign=False,
                                            binary=True, norm=None, token_pattern=r"(?u)\b\w+\b|[!?]",
                                            dtype=np.float32)
        self.weights, self.bias = None, 0.0

    def fit(self, texts: Sequence[str], labels: np.ndarray) -> NbLrPeer:
        from sklearn.linear_model import LogisticRegression

        x, y = self.vectorizer.transform(list(texts)).tocsr(), np.asarray(labels)
        p = np.asarray(x[y == 1].sum(axis=0)).ravel() + 1.0
        q = np.asarray(x[y == 0].sum(axis=0)).ravel() + 1.0
        r = np.log((p / p.sum()) / (q / q.sum())).astype(np.float32)
        lr = LogisticRegression(C=self.settings["C"], solver="liblinear", dual=True, max_iter=1000, random_state=0)
        lr.fit(x.multiply(r).tocsr(), y)
        self.weights = (lr.coef_[0] * r).astype(np.float32)
        self.bias = float(lr.intercept_[0])
        return self

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        z = self.vectorizer.transform(list(texts)) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-z.astype(np.float64)))

    def label_probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, 2)``: each label's probability, in label index order."""
        p1 = self.probabilities(texts)
        return np.stack([1.0 - p1, p1], axis=1)

    def size_bytes(self) -> int:
        """The folded weights as stored (float32, every hashed column) and the settings."""
        return len(pickle.dumps((self.settings, self.weights, self.bias), protocol=pickle.HIGHEST_PROTOCOL))


class FastTextPeer:
    """fastText supervised with word bigrams. One training thread: fastText's threads race on
    shared weights (Hogwild), so with more than one the chosen settings and figures change
    from run to run."""

    def __init__(self, lr: float, epoch: int, seed: int = 0, n_labels: int = 2):
        self.settings = {"lr": lr, "epoch": epoch, "wordNgrams": 2, "dim": 10, "bucket": 2_000_000, "thread": 1}
        self.seed = seed
        self.n_labels = n_labels
        self.model = None

    @staticmethod
    def line(text: str) -> str:
        """fastText's tutorial preprocessing: punctuation spaced out, lowercased, one line."""
        return " ".join(_PUNCTUATION.sub(r" \1 ", text).lower().split())

    def fit(self, texts: Sequence[str], labels: np.ndarray) -> FastTextPeer:
        import fasttext

        rows = [f"__label__{int(y)} {self.line(t)}" for t, y in zip(texts, labels)]
        random.Random(self.seed).shuffle(rows)  # fastText learns in file order
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "train.txt"
            path.write_text("\n".join(rows) + "\n", encoding="utf-8")
            self.model = fasttext.train_supervised(str(path), verbose=0, seed=self.seed, **self.settings)
        return self

    def probability(self, text: str) -> float:
        labels, probs = self.model.predict(self.line(text), k=2)
        return float(dict(zip(labels, probs)).get("__label__1", 0.0))

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        labels, probs = self.model.predict([self.line(t) for t in texts], k=2)
        return np.array([dict(zip(ls, ps)).get("__label__1", 0.0) for ls, ps in zip(labels, probs)])

    def label_probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, N)``: each label's probability, in label index order (0 for a label fastText
        never saw in training)."""
        names, probs = self.model.predict([self.line(t) for t in texts], k=-1)
        out = np.zeros((len(names), self.n_labels))
        for row, (ls, ps) in enumerate(zip(names, probs)):
            for label, p in zip(ls, ps):
                out[row, int(label[len("__label__"):])] = p
        return out

    def size_bytes(self) -> int:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.bin"
            self.model.save_model(str(path))
            return path.stat().st_size


BULK_CHUNK = 10_000  # reviews a peer's bulk path takes at once: its batch call, memory bounded


def bulk_rate(peer: SklearnPeer | FastTextPeer | NbLrPeer, texts: Sequence[str]) -> float:
    """Reviews per second of a peer's own batch call over ``texts`` (scikit-learn's
    ``predict_proba``; fastText's ``predict`` on a list, with its tutorial preprocessing), in
    chunks of ``BULK_CHUNK``: what a user with the reviews in memory would run."""
    start = time.perf_counter()
    for i in range(0, len(texts), BULK_CHUNK):
        peer.probabilities(texts[i : i + BULK_CHUNK])
    return len(texts) / (time.perf_counter() - start)


def _choose(make: Callable[[dict], object], grid: Sequence[dict], train: tuple, val: tuple) -> tuple[dict, float]:
    """The settings of ``grid`` with the best validation accuracy."""
    best = None
    for settings in grid:
        peer = make(settings).fit(*train)
        acc = float(np.mean((peer.probabilities(val[0]) >= 0.5) == val[1]))
        if best is None or acc > best[1]:
            best = (settings, acc)
    return best


def _p50_us(run: Callable[[str], object], texts: Sequence[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        for t in texts:
            start = time.perf_counter()
            run(t)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def measure(texts: Sequence[str], labels: np.ndarray, val_mask: np.ndarray, test_texts: Sequence[str],
            test_labels: np.ndarray, latency_texts: Sequence[str], repeats: int,
            fitted: dict | None = None) -> dict:
    """Each peer: chosen settings, validation and test accuracy, ROC AUC, size on disk,
    single-review p50 from raw text and batch throughput (reviews/s). ``fitted`` receives the
    fitted peers by name (the volume section runs their bulk paths)."""
    from sklearn.metrics import roc_auc_score

    texts, labels = list(texts), np.asarray(labels)
    train = ([t for t, v in zip(texts, val_mask) if not v], labels[~val_mask])
    val = ([t for t, v in zip(texts, val_mask) if v], labels[val_mask])
    peers = {
        SKLEARN: (lambda s: SklearnPeer(s["C"]), [{"C": c} for c in SKLEARN_C], None),
        FASTTEXT: (lambda s: FastTextPeer(**s), list(FASTTEXT_SETTINGS), "probability"),
        NBLR: (lambda s: NbLrPeer(s["C"]), [{"C": c} for c in NBLR_C], None),
    }
    out = {}
    for name, (make, grid, single) in peers.items():
        settings, val_acc = _choose(make, grid, train, val)
        peer = make(settings).fit(texts, labels)
        if fitted is not None:
            fitted[name] = peer
        probs = peer.probabilities(test_texts)
        one = getattr(peer, single) if single else (lambda t, p=peer: p.probabilities([t]))
        start = time.perf_counter()
        peer.probabilities(latency_texts)
        batch_seconds = time.perf_counter() - start
        out[name] = {
            "settings": peer.settings, "validation_accuracy": val_acc,
            "accuracy": float(np.mean((probs >= 0.5) == test_labels)),
            "roc_auc": float(roc_auc_score(test_labels, probs)),
            "size_bytes": peer.size_bytes(),
            "latency_p50_us": _p50_us(one, latency_texts, repeats),
            "batch_reviews_per_s": len(latency_texts) / batch_seconds,
            "test_reviews": len(test_texts),
        }
    return out
