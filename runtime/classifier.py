"""The classifier: an encoder and one loaded artifact, behind a small API. It is the only
door to the engines: the CLI, streaming, parity, the export gate and the benchmark all call
it, so every path computes the same features the same way.

``predict(text)`` gives a ``Prediction`` for one review; ``predict_proba(texts)``
probabilities for a batch; ``explain(text, k)`` the words behind a probability (see
``runtime.explain``). An empty or whitespace-only review is refused (``ValueError``): the
model's prior is not an answer. A text of any length is taken: one longer than
``features.STREAM_OVER`` characters is encoded in pieces, to the same answer, so memory stays
bounded (``explain`` refuses a text longer than the commands would explain). An optional uncertainty band labels probabilities inside
it ``uncertain`` instead of forcing a side. Everything that can be prepared once is
prepared at load: the vocabulary dictionary and the engine with its input buffers, so one
review costs tokenization, writing its model input into the engine and an invoke.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

import numpy as np

from runtime.engines.base import ENGINES, Backend, engine_threads, engine_version, installed_engines, load_backend
from runtime.bundle.directory import Bundle, open_bundle
from runtime.bundle.files import BundleError
from runtime.bundle.manifest import DEFAULT_THRESHOLD, LABELS
from runtime.explain import Explanation, explain_linear, explain_occlusion
from runtime.encoding.features import NGRAM, Encoder, pad_word_ids
from runtime.probability import tempered
from runtime.encoding.text import EMPTY_REVIEW, is_blank

WHOLE_UP_TO = 4 << 20  # characters: a longer review is refused whole (the commands stream it)

DEFAULT_BUNDLE = Path(__file__).parent / "default_bundle"
BATCH = 1000  # reviews encoded at once by predict_proba: bounds memory for any batch
RUN_BATCH = 256  # reviews of similar length run by the engine at once
UNCERTAIN = "uncertain"  # the label of a probability inside the uncertainty band
TEMPER_CACHE = 4096  # tempered probabilities kept (an int8 artifact has at most 256 distinct outputs)


@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float
    known_words: int  # distinct vocabulary words the model saw (0: the answer is only the model's prior)


def _is_probability(x: object) -> bool:
    """A real number (numpy's included, bool not) between 0 and 1; NaN is not."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and 0.0 <= x <= 1.0


def _check_threshold(threshold: object) -> None:
    if threshold is not None and not _is_probability(threshold):
        raise ValueError(f"threshold must be a number between 0 and 1, got {threshold!r}")


def _band(band: object) -> tuple[float, float] | None:
    """An uncertainty band checked, as a pair of floats (None: no band)."""
    if band is None:
        return None
    if (not isinstance(band, (tuple, list)) or len(band) != 2 or not all(map(_is_probability, band))
            or not band[0] <= band[1]):
        raise ValueError(f"uncertain must be a (low, high) pair with 0 <= low <= high <= 1, got {band!r}")
    return float(band[0]), float(band[1])


def _check_num_threads(num_threads: object) -> None:
    engine_threads(num_threads)  # raises TypeError or ValueError for what no engine can be given


def _check_text(text: object) -> None:
    if not isinstance(text, str):
        raise TypeError(f"a review must be a str, got {type(text).__name__}"
                        + (" (decode bytes first, e.g. data.decode('utf-8'))" if isinstance(text, bytes) else ""))
    if is_blank(text):
        raise ValueError(EMPTY_REVIEW)


def _check_texts(texts: object) -> None:
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise TypeError(f"reviews must be a list or other sequence of str, got {type(texts).__name__}"
                        + (" (for one review use predict or probability)" if isinstance(texts, str) else ""))
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"review {i} must be a str, got {type(t).__name__}")
        if is_blank(t):
            raise ValueError(f"review {i}: {EMPTY_REVIEW}")


class _Pieces:
    """The pieces of one streamed text, checked as they are read: each must be a str, and
    ``blank`` stays true while all of them are whitespace."""

    def __init__(self, pieces: object):
        if isinstance(pieces, (str, bytes, bytearray)) or not isinstance(pieces, Iterable):
            raise TypeError("predict_stream takes an iterable of str pieces (a list, a generator, a file "
                            f"opened in text mode), got {type(pieces).__name__}"
                            + (" (for one text use predict)" if isinstance(pieces, str) else ""))
        self._pieces = pieces
        self.blank = True

    def __iter__(self) -> Iterator[str]:
        for i, piece in enumerate(self._pieces):
            if not isinstance(piece, str):
                raise TypeError(f"predict_stream: piece {i} is {type(piece).__name__}, not str"
                                + (" (open the file in text mode, or decode the bytes)"
                                   if isinstance(piece, (bytes, bytearray)) else ""))
            if self.blank and not is_blank(piece):
                self.blank = False
            yield piece


class Classifier:
    """Sentiment of raw review text with one artifact. Thread-safe.

    ``uncertain=(low, high)``: a probability with ``low <= p <= high`` is labelled
    ``uncertain`` rather than negative or positive. ``temperature`` (from the manifest; 1:
    none) rescales every engine output's logit (see ``runtime.temperature``).
    """

    def __init__(self, encoder: Encoder, backend: Backend, labels: tuple[str, str] = LABELS,
                 threshold: float = DEFAULT_THRESHOLD, name: str = "model", bundle: Bundle | None = None,
                 artifact: str | None = None, uncertain: tuple[float, float] | None = None,
                 temperature: float = 1.0):
        _check_threshold(threshold)
        uncertain = _band(uncertain)
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
        self.uncertain = uncertain
        self.bundle = bundle
        self.artifact = artifact
        self.temperature = float(temperature)
        self.num_threads: int | None = None  # the engine threads asked for (None: the engine's choice)
        self._encode_one = encoder.model_input
        # ``tempered`` is pure, and an int8 artifact has at most 256 outputs: it runs once per distinct output.
        self._temper = lru_cache(maxsize=TEMPER_CACHE)(partial(tempered, temperature=self.temperature))
        run_one, temper = backend.run_one, self._temper
        self._run_one = run_one if self.temperature == 1.0 else (lambda row: temper(run_one(row)))

    @classmethod
    def from_bundle(cls, bundle: Bundle, artifact: str | None = None, backend: str = "auto",
                    threshold: float | None = None, num_threads: int | None = None,
                    uncertain: tuple[float, float] | None = None) -> Classifier:
        """A classifier for one artifact of a verified bundle (default: the default artifact,
        or the first one an installed engine can run)."""
        _check_threshold(threshold)
        uncertain = _band(uncertain)
        _check_num_threads(num_threads)
        name = artifact or _runnable_default(bundle, backend)
        entry, path, content = bundle.artifact_content(name)
        loaded = load_backend(path, entry.format, backend, num_threads, entry.batch_invariant, entry.output, content)
        m = bundle.manifest
        clf = cls(bundle.encoder(), loaded, m.labels, m.threshold if threshold is None else threshold,
                  str(path), bundle, name, uncertain, m.temperature)
        clf.num_threads = None if num_threads is None else int(num_threads)
        # Where to load it again, whatever the working directory then: the shipped bundle is
        # named None, so a process elsewhere (a Ray or Spark worker) loads its own copy.
        root = os.path.abspath(bundle.root)
        clf._pickled_root = None if root == os.path.abspath(DEFAULT_BUNDLE) else root
        return clf

    def __reduce__(self):
        """Pickled as every option it was loaded with (bundle, as an absolute path, artifact,
        engine, threshold, engine threads, band); unpickling loads the bundle again."""
        if self.bundle is None or not hasattr(self, "_pickled_root"):
            raise TypeError("only a classifier loaded from a bundle can be pickled")
        return load, (self._pickled_root, self.artifact, self.engine, self.threshold, self.num_threads,
                      self.uncertain)

    def probability(self, text: str) -> float:
        """P(positive) for one review: the hot path."""
        _check_text(text)
        return self._run_one(self._encode_one(text))

    def probability_of_input(self, row: np.ndarray) -> float:
        """P(positive) for one review's already encoded model input (``encoder.model_input``):
        the engine alone, as the benchmark times it."""
        return self._run_one(row)

    def label(self, probability: float, threshold: float | None = None,
              uncertain: tuple[float, float] | None = None) -> str:
        """The label of a probability: ``uncertain`` inside the band, else by the threshold.

        Raises:
            ValueError: ``probability`` (or ``threshold``) is not a number between 0 and 1
                (NaN is not: it has no label), or ``uncertain`` is not a band.
        """
        if not _is_probability(probability):
            raise ValueError(f"probability must be a number between 0 and 1, got {probability!r}")
        _check_threshold(threshold)
        return self._label(probability, threshold, _band(uncertain))

    def _label(self, probability: float, threshold: float | None = None,
               uncertain: tuple[float, float] | None = None) -> str:
        band = self.uncertain if uncertain is None else uncertain
        if band is not None and band[0] <= probability <= band[1]:
            return UNCERTAIN
        t = self.threshold if threshold is None else threshold
        return self.labels[1] if probability >= t else self.labels[0]

    def _prediction(self, probability: float, row: np.ndarray, threshold: float | None = None,
                    uncertain: tuple[float, float] | None = None) -> Prediction:
        return Prediction(self._label(probability, threshold, uncertain), probability,
                          int(self.encoder.known_words(row)))

    def predict(self, text: str, threshold: float | None = None,
                uncertain: tuple[float, float] | None = None) -> Prediction:
        """Label, P(positive) and known-word count for one review (``uncertain``: a band
        for this call, see the class)."""
        _check_text(text)
        _check_threshold(threshold)
        uncertain = _band(uncertain)
        row = self._encode_one(text)
        return self._prediction(self._run_one(row), row, threshold, uncertain)

    def explain(self, text: str, k: int = 10) -> Explanation:
        """The ``k`` terms of the review that pushed most towards each label (see ``runtime.explain``):
        exact weights read from the artifact for the n-gram family, occlusion in batched engine
        calls for the others. Contributions and ``logit`` are the model's own, before any
        temperature; ``probability`` is this classifier's answer. A text longer than
        ``WHOLE_UP_TO`` characters is refused (``ValueError``), as the commands
        do not explain a review they stream: explain an excerpt of it."""
        _check_text(text)
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        if len(text) > WHOLE_UP_TO:
            raise ValueError(f"a review of {len(text)} characters is too long to explain (at most "
                             f"{WHOLE_UP_TO}): explain an excerpt of it")
        if self.encoder.family == NGRAM:
            weights = self.backend.linear_weights()
            return explain_linear(self.encoder, text, k, weights.rows_of, weights.bias, self._run_one)
        return explain_occlusion(self.encoder, text, k, self.backend.run_logits, self._run_one)

    def _batches(self, texts: Sequence[str]) -> Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(positions, model inputs, probabilities) for engine batches of at most ``RUN_BATCH``
        reviews, taken from consecutive slices of ``BATCH`` reviews.

        Word-id inputs are padded to the longest review of their engine batch, and the engine
        gathers the padding too, so each slice is run in order of length: reviews of similar
        length share a batch. Padding adds zero rows, and the engines are batch-invariant, so
        no probability changes.
        """
        for i in range(0, len(texts), BATCH):
            rows = self.encoder.model_input_rows(texts[i : i + BATCH])
            order = np.arange(len(rows))
            if self.encoder.word_ids:
                order = np.argsort(np.fromiter(map(len, rows), dtype=np.int64, count=len(rows)), kind="stable")
            for j in range(0, len(rows), RUN_BATCH):
                positions = order[j : j + RUN_BATCH]
                inputs = (pad_word_ids([rows[k] for k in positions]) if self.encoder.word_ids
                          else np.stack([rows[k] for k in positions]))
                yield positions + i, inputs, self._run_batch(inputs)

    def _run_batch(self, inputs: np.ndarray) -> np.ndarray:
        """The engine's probabilities for a batch of model inputs, tempered like ``_run_one``."""
        probs = self.backend.run(inputs)
        if self.temperature == 1.0:
            return probs
        return np.fromiter(map(self._temper, probs.tolist()), dtype=np.float32, count=len(probs))

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """P(positive) for each review of a batch, as a float32 ``(n,)`` array."""
        return self.score_batch(texts)[0]

    def score_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """P(positive) (float32) and known-word counts (int32) for each review of a batch: the
        compact form worker processes send back."""
        _check_texts(texts)
        probs, known = np.zeros(len(texts), np.float32), np.zeros(len(texts), np.int32)
        for positions, inputs, p in self._batches(texts):
            probs[positions] = p
            known[positions] = self.encoder.known_words(inputs)
        return probs, known

    def predictions(self, probs: np.ndarray, known: np.ndarray) -> list[Prediction]:
        """``Prediction`` objects from ``score_batch``'s arrays."""
        if self.uncertain is not None:
            return [Prediction(self._label(p), p, k) for p, k in zip(probs.tolist(), known.tolist())]
        t, negative, positive = self.threshold, self.labels[0], self.labels[1]
        return [Prediction(positive if p >= t else negative, p, k) for p, k in zip(probs.tolist(), known.tolist())]

    def predict_batch(self, texts: Sequence[str]) -> list[Prediction]:
        """A ``Prediction`` for each review of a batch (engine calls of up to ``RUN_BATCH`` reviews)."""
        return self.predictions(*self.score_batch(texts))

    def predict_stream(self, pieces: Iterable[str]) -> Prediction:
        """A ``Prediction`` for one text given in pieces (memory bounded, whatever its length):
        the same as ``predict`` of the pieces joined.

        Args:
            pieces: an iterable of str: a list, a generator, a file opened in text mode.

        Raises:
            TypeError: ``pieces`` is not such an iterable (a str: use ``predict``), or a piece
                is not a str (bytes: open the file in text mode, or decode them).
            ValueError: the text is empty or whitespace-only, as ``predict`` refuses it.
        """
        checked = _Pieces(pieces)
        row = self.encoder.model_input_stream(checked)
        if checked.blank:
            raise ValueError(EMPTY_REVIEW)
        return self._prediction(self._run_one(row), row)


def _runnable_default(bundle: Bundle, backend: str = "auto") -> str:
    """The manifest's default artifact, or else the first one an installed engine (the
    requested one, if any) can run.

    An engine the manifest records as unable to load an artifact (tflite-runtime 2.14 and
    per-channel dynamic int8, say) does not count.
    """
    default = bundle.manifest.default_artifact
    for name in [default] + [n for n in bundle.artifacts if n != default]:
        entry = bundle.artifacts[name]
        engines = [e for e in installed_engines(entry.format) if backend in ("auto", e)]
        if any(not entry.refuses(e, engine_version(e)) for e in engines):
            return name
    return default  # loading it raises the error that says what to install


def load(bundle: str | Path | None = None, artifact: str | None = None, backend: str = "auto",
         threshold: float | None = None, num_threads: int | None = None,
         uncertain: tuple[float, float] | None = None) -> Classifier:
    """A classifier for ``bundle`` (default: the bundle shipped inside this package).

    Raises:
        ValueError: ``threshold`` is not a number between 0 and 1 (bool is not),
            ``uncertain`` not a ``(low, high)`` band inside it, or ``num_threads`` not a
            positive integer.
        runtime.Error: the bundle or its engine cannot be loaded (``BundleError``, ``EngineError``).
    """
    _check_threshold(threshold)  # the arguments first: a wrong one is named before any file is read
    _band(uncertain)
    _check_num_threads(num_threads)
    return Classifier.from_bundle(open_bundle(bundle or DEFAULT_BUNDLE), artifact, backend, threshold, num_threads,
                                  uncertain)


__all__ = ["Classifier", "Prediction", "Explanation", "load", "DEFAULT_BUNDLE", "ENGINES", "UNCERTAIN"]
