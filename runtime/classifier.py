"""The classifier: a verified bundle, its encoder and one engine, behind a small API.

``predict(text)`` gives (label, probability) for one review; ``predict_proba(texts)``
probabilities for a batch. Everything that can be prepared once is prepared at load:
the vocabulary dictionary and the engine with its input buffers, so one review costs
tokenization, writing its distinct word ids into the engine's input and an invoke.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.backends import ENGINES, engine_version, installed_engines, load_backend
from runtime.bundle import Bundle, BundleError, open_bundle
from runtime.features import MULTI_HOT

DEFAULT_BUNDLE = Path(__file__).parent / "default_bundle"


@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float


class Classifier:
    """Sentiment of raw review text with one artifact of a bundle. Thread-safe."""

    def __init__(self, bundle: Bundle, artifact: str | None = None, backend: str = "auto",
                 threshold: float | None = None, num_threads: int | None = None):
        self.bundle = bundle
        self.artifact = artifact or _runnable_default(bundle)
        _, info, path = bundle.artifact_path(self.artifact)
        self.encoder = bundle.encoder()
        self.backend = load_backend(path, info["format"], backend, num_threads,
                                    info.get("batch_invariant", True))
        if self.backend.input_size != self.encoder.size:
            raise BundleError(f"{path}: the model takes {self.backend.input_size} features but the "
                              f"{self.encoder.kind} encoder makes {self.encoder.size}")
        if self.backend.bag != (self.encoder.kind == MULTI_HOT):
            raise BundleError(f"{path}: the model does not take the {self.encoder.kind} encoder's input")
        self.engine = self.backend.engine
        self._bag = self.backend.bag
        self.labels: list[str] = list(bundle.manifest["labels"])
        self.threshold = float(bundle.manifest["threshold"] if threshold is None else threshold)

    def probability(self, text: str) -> float:
        """P(positive) for one review: the hot path (multi-hot: word ids straight into the engine)."""
        if self._bag:
            return self.backend.run_ids(self.encoder.word_ids(text))
        return float(self.backend.run(self.encoder.encode([text]))[0])

    def label(self, probability: float, threshold: float | None = None) -> str:
        t = self.threshold if threshold is None else threshold
        return self.labels[1] if probability >= t else self.labels[0]

    def predict(self, text: str, threshold: float | None = None) -> Prediction:
        """Label and P(positive) for one review."""
        p = self.probability(text)
        return Prediction(self.label(p, threshold), p)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """P(positive) for each review of a batch, as a float32 ``(n,)`` array."""
        if not texts:
            return np.zeros(0, dtype=np.float32)
        if self._bag:
            return self.backend.run_bags([self.encoder.word_ids(t) for t in texts])
        return self.predict_features(self.encoder.encode(texts))

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        """P(positive) for already encoded features (float32 multi-hot or int32 ids)."""
        return self.backend.run(features)

    def predict_stream(self, pieces: Iterable[str]) -> tuple[float, int]:
        """P(positive) and the known-word count of one text given in pieces (bounded memory)."""
        features = self.encoder.encode_stream(pieces)
        return float(self.predict_features(features)[0]), int(self.encoder.known_words(features)[0])


def _runnable_default(bundle: Bundle) -> str:
    """The manifest's default artifact, or else the first one an installed engine can run.

    An engine the manifest records as unable to load an artifact (tflite-runtime 2.14 and
    per-channel dynamic int8, say) does not count.
    """
    default = bundle.manifest["default_artifact"]
    names = [default] + [n for n in bundle.artifacts if n != default]
    for name in names:
        info = bundle.artifacts[name]
        for engine in installed_engines(info["format"]):
            version = engine_version(engine)
            if not any(r["engine"] == engine and r["version"] == version and r["loads"] is False
                       for r in info.get("engines", [])):
                return name
    return default  # loading it raises the error that says what to install


def load(bundle: str | Path | None = None, artifact: str | None = None, backend: str = "auto",
         threshold: float | None = None, num_threads: int | None = None) -> Classifier:
    """A classifier for ``bundle`` (default: the bundle shipped inside this package)."""
    return Classifier(open_bundle(bundle or DEFAULT_BUNDLE), artifact, backend, threshold, num_threads)


__all__ = ["Classifier", "Prediction", "load", "DEFAULT_BUNDLE", "ENGINES"]
