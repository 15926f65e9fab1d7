"""The classifier: an encoder and one loaded artifact, behind a small API. It is the only
door to the engines: the CLI, streaming, parity, the export gate and the benchmark all call
it, so every path computes the same features the same way.

``predict(text)`` gives a ``Prediction`` for one review; ``predict_proba(texts)``
probabilities for a batch. Everything that can be prepared once is prepared at load: the
vocabulary dictionary and the engine with its input buffers, so one review costs
tokenization, writing its model input into the engine and an invoke.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.backends import ENGINES, Backend, engine_version, installed_engines, load_backend
from runtime.bundle import DEFAULT_THRESHOLD, LABELS, Bundle, BundleError, open_bundle
from runtime.features import Encoder

DEFAULT_BUNDLE = Path(__file__).parent / "default_bundle"
BATCH = 1000  # reviews encoded and run at once by predict_proba: bounds memory for any batch


@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float
    known_words: int  # distinct vocabulary words the model saw (0: the answer is only the model's prior)


def _check_threshold(threshold: float | None) -> None:
    if threshold is not None and not (isinstance(threshold, (int, float)) and 0.0 <= threshold <= 1.0):
        raise ValueError(f"threshold must be a number between 0 and 1, got {threshold!r}")


def _check_text(text: object) -> None:
    if not isinstance(text, str):
        raise TypeError(f"a review must be a str, got {type(text).__name__}"
                        + (" (decode bytes first, e.g. data.decode('utf-8'))" if isinstance(text, bytes) else ""))


def _check_texts(texts: object) -> None:
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise TypeError(f"reviews must be a list or other sequence of str, got {type(texts).__name__}"
                        + (" (for one review use predict or probability)" if isinstance(texts, str) else ""))
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"review {i} must be a str, got {type(t).__name__}")


class Classifier:
    """Sentiment of raw review text with one artifact. Thread-safe."""

    def __init__(self, encoder: Encoder, backend: Backend, labels: tuple[str, str] = LABELS,
                 threshold: float = DEFAULT_THRESHOLD, name: str = "model", bundle: Bundle | None = None,
                 artifact: str | None = None):
        _check_threshold(threshold)
        if backend.word_ids != encoder.word_ids:
            raise BundleError(f"{name}: the model does not take the {encoder.family} encoder's input")
        if backend.vocab_size is not None and backend.vocab_size != encoder.table_rows:
            raise BundleError(f"{name}: the model takes {backend.vocab_size} features but the "
                              f"{encoder.family} encoder makes {encoder.table_rows}")
        if not backend.word_ids and backend.length != encoder.length:
            raise BundleError(f"{name}: the model takes rows of {backend.length} ids but the "
                              f"{encoder.family} encoder makes {encoder.length}")
        self.encoder = encoder
        self.backend = backend
        self.engine = backend.engine
        self.labels = labels
        self.threshold = float(threshold)
        self.bundle = bundle
        self.artifact = artifact
        self._encode_one = encoder.model_input
        self._run_one = backend.run_one

    @classmethod
    def from_bundle(cls, bundle: Bundle, artifact: str | None = None, backend: str = "auto",
                    threshold: float | None = None, num_threads: int | None = None) -> Classifier:
        """A classifier for one artifact of a verified bundle (default: the default artifact,
        or the first one an installed engine can run)."""
        _check_threshold(threshold)
        name = artifact or _runnable_default(bundle)
        entry, path = bundle.artifact_path(name)
        loaded = load_backend(path, entry.format, backend, num_threads, entry.batch_invariant)
        m = bundle.manifest
        return cls(bundle.encoder(), loaded, m.labels, m.threshold if threshold is None else threshold,
                   str(path), bundle, name)

    def __reduce__(self):
        """Pickled as its bundle, artifact, engine and threshold; unpickling loads the bundle again."""
        if self.bundle is None:
            raise TypeError("only a classifier loaded from a bundle can be pickled")
        return load, (self.bundle.root, self.artifact, self.engine, self.threshold)

    def probability(self, text: str) -> float:
        """P(positive) for one review: the hot path."""
        _check_text(text)
        return self._run_one(self._encode_one(text))

    def probability_of_input(self, row: np.ndarray) -> float:
        """P(positive) for one review's already encoded model input (``encoder.model_input``):
        the engine alone, as the benchmark times it."""
        return self._run_one(row)

    def label(self, probability: float, threshold: float | None = None) -> str:
        t = self.threshold if threshold is None else threshold
        return self.labels[1] if probability >= t else self.labels[0]

    def _prediction(self, probability: float, row: np.ndarray, threshold: float | None = None) -> Prediction:
        return Prediction(self.label(probability, threshold), probability, int(self.encoder.known_words(row)))

    def predict(self, text: str, threshold: float | None = None) -> Prediction:
        """Label, P(positive) and known-word count for one review."""
        _check_text(text)
        _check_threshold(threshold)
        row = self._encode_one(text)
        return self._prediction(self._run_one(row), row, threshold)

    def _batches(self, texts: Sequence[str]) -> Iterable[tuple[np.ndarray, np.ndarray]]:
        """(model inputs, probabilities) for consecutive slices of at most ``BATCH`` reviews."""
        for i in range(0, len(texts), BATCH):
            inputs = self.encoder.model_inputs(texts[i : i + BATCH])
            yield inputs, self.backend.run(inputs)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """P(positive) for each review of a batch, as a float32 ``(n,)`` array."""
        return self.score_batch(texts)[0]

    def score_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """P(positive) (float32) and known-word counts (int32) for each review of a batch: the
        compact form worker processes send back."""
        _check_texts(texts)
        probs, known = [np.zeros(0, np.float32)], [np.zeros(0, np.int32)]
        for inputs, p in self._batches(texts):
            probs.append(p.astype(np.float32, copy=False))
            known.append(self.encoder.known_words(inputs).astype(np.int32))
        return np.concatenate(probs), np.concatenate(known)

    def predictions(self, probs: np.ndarray, known: np.ndarray) -> list[Prediction]:
        """``Prediction`` objects from ``score_batch``'s arrays."""
        t, negative, positive = self.threshold, self.labels[0], self.labels[1]
        return [Prediction(positive if p >= t else negative, p, k) for p, k in zip(probs.tolist(), known.tolist())]

    def predict_batch(self, texts: Sequence[str]) -> list[Prediction]:
        """A ``Prediction`` for each review of a batch (one engine call per ``BATCH`` reviews)."""
        return self.predictions(*self.score_batch(texts))

    def predict_stream(self, pieces: Iterable[str]) -> Prediction:
        """A ``Prediction`` for one text given in pieces (memory bounded, whatever its length)."""
        row = self.encoder.model_input_stream(pieces)
        return self._prediction(self._run_one(row), row)


def _runnable_default(bundle: Bundle) -> str:
    """The manifest's default artifact, or else the first one an installed engine can run.

    An engine the manifest records as unable to load an artifact (tflite-runtime 2.14 and
    per-channel dynamic int8, say) does not count.
    """
    default = bundle.manifest.default_artifact
    for name in [default] + [n for n in bundle.artifacts if n != default]:
        entry = bundle.artifacts[name]
        if any(not entry.refuses(e, engine_version(e)) for e in installed_engines(entry.format)):
            return name
    return default  # loading it raises the error that says what to install


def load(bundle: str | Path | None = None, artifact: str | None = None, backend: str = "auto",
         threshold: float | None = None, num_threads: int | None = None) -> Classifier:
    """A classifier for ``bundle`` (default: the bundle shipped inside this package)."""
    return Classifier.from_bundle(open_bundle(bundle or DEFAULT_BUNDLE), artifact, backend, threshold, num_threads)


__all__ = ["Classifier", "Prediction", "load", "DEFAULT_BUNDLE", "ENGINES"]
