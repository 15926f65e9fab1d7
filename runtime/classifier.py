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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial
from pathlib import Path

import numpy as np

from runtime.engines.base import ENGINES, Backend, engine_version, installed_engines
from runtime.engines.load import load_backend
from runtime.bundle.directory import Bundle, open_bundle
from runtime.bundle.files import BundleError
from runtime.bundle.manifest import DEFAULT_THRESHOLD, LABELS
from runtime.explain import Explanation, explain_linear, explain_occlusion
from runtime.encoding.features import NGRAM, NGRAM_SEQUENCE, Encoder, pad_word_ids
from runtime.options import AUTO, DEFAULT_BUNDLE, ClassifierOptions, check_band, check_threshold
from runtime.probability import tempered, tempered_softmax
from runtime.encoding.text import EMPTY_REVIEW, is_blank

WHOLE_UP_TO = 4 << 20  # characters: a longer review is refused whole (the commands stream it)

BATCH = 1000  # reviews encoded at once by predict_proba: bounds memory for any batch
RUN_BATCH = 256  # reviews of similar length run by the engine at once
UNCERTAIN = "uncertain"  # the label of a probability inside the uncertainty band
TEMPER_CACHE = 4096  # tempered probabilities kept (an int8 artifact has at most 256 distinct outputs)


@dataclass(frozen=True)
class Prediction:
    """A classifier's answer for one review.

    Attributes:
        label: the label of the bundle (two labels: by the threshold; more: the most probable
            one), or ``UNCERTAIN`` inside an uncertainty band.
        probability: two labels: P(positive), i.e. of the bundle's second label; more: the
            probability of the most probable label.
        known_words: distinct vocabulary words the model saw (0: the answer is only the
            model's prior).
        probabilities: every label's probability, in the bundle's label order (a property).
    """

    label: str
    probability: float
    known_words: int
    labels: tuple[str, ...] = field(default=LABELS, repr=False, compare=False)
    scores: tuple[float, ...] | None = field(default=None, repr=False)  # N labels: each label's probability

    @property
    def probabilities(self) -> dict[str, float]:
        """Every label's probability, in the bundle's label order."""
        if self.scores is None:
            return {self.labels[0]: 1.0 - self.probability, self.labels[1]: self.probability}
        return dict(zip(self.labels, self.scores))

    def top(self, k: int = 1) -> list[tuple[str, float]]:
        """The ``k`` most probable labels with their probabilities, most probable first.

        Args:
            k: how many labels (at most the bundle's labels).

        Returns:
            ``(label, probability)`` pairs.

        Raises:
            ValueError: ``k`` is not a positive integer.
        """
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        ranked = sorted(self.probabilities.items(), key=lambda item: -item[1])
        return ranked[: int(k)]


def _check_text(text: object) -> None:
    if not isinstance(text, str):
        raise TypeError(f"a review must be a str, got {type(text).__name__}"
                        + (" (decode bytes first, e.g. data.decode('utf-8'))" if isinstance(text, bytes) else ""))
    if is_blank(text):
        raise ValueError(EMPTY_REVIEW)


def _check_texts(texts: object) -> None:
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise TypeError(f"reviews must be a list or other sequence of str, got {type(texts).__name__}"
                        + (" (for one review use predict)" if isinstance(texts, str) else ""))
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
    """Sentiment of raw review text with one artifact of a bundle. Thread-safe and picklable.

    Made by ``runtime.load``; its public surface is ``predict``, ``predict_batch``,
    ``predict_proba``, ``predict_stream`` and ``explain``, and the read-only properties below.
    ``encoder``, ``backend`` and ``bundle`` are the loaded parts, for the project's own tools
    (parity, benchmarks, export), not a stable interface.

    An uncertainty band (``uncertain=(low, high)``) labels a probability with
    ``low <= p <= high`` ``UNCERTAIN`` rather than negative or positive. The bundle's
    temperature (from the manifest; 1: none) rescales every engine output's logit (see
    ``runtime.probability``).

    Args:
        encoder: the bundle's feature encoder.
        backend: the loaded artifact (``runtime.engines.base.load_backend``).
        options: the options the classifier is made with (default: all defaults); its
            threshold None is ``DEFAULT_THRESHOLD``, and its engine is taken from ``backend``.
        labels: the (negative, positive) labels.
        temperature: the logit temperature applied to every output.
        bundle: the bundle the artifact was read from (a classifier without one cannot be
            pickled).
        name: what error messages call the artifact.

    Raises:
        TypeError: ``options`` is not a ``ClassifierOptions``.
        BundleError: the artifact does not take the encoder's input.
    """

    def __init__(self, encoder: Encoder, backend: Backend, options: ClassifierOptions | None = None, *,
                 labels: tuple[str, str] = LABELS, temperature: float = 1.0, bundle: Bundle | None = None,
                 name: str = "model"):
        if options is None:
            options = ClassifierOptions()
        elif not isinstance(options, ClassifierOptions):
            raise TypeError(f"options must be a ClassifierOptions, got {type(options).__name__}")
        if backend.word_ids != encoder.word_ids:
            raise BundleError(f"{name}: the model does not take the {encoder.family} encoder's input")
        if backend.vocab_size is not None and backend.vocab_size != encoder.table_rows:
            raise BundleError(f"{name}: the model takes {backend.vocab_size} features but the "
                              f"{encoder.family} encoder makes {encoder.table_rows}")
        if encoder.family == NGRAM_SEQUENCE and backend.sequence_length != encoder.length:
            raise BundleError(f"{name}: the model reads {backend.sequence_length} token columns but the "
                              f"{encoder.family} encoder makes {encoder.length}")
        if not backend.word_ids and backend.length != encoder.length:
            raise BundleError(f"{name}: the model takes rows of {backend.length} ids but the "
                              f"{encoder.family} encoder makes {encoder.length}")
        self.encoder = encoder
        self.backend = backend
        self.bundle = bundle
        # The options as loaded: the engine that runs the artifact, the threshold in use (two labels).
        multi = len(tuple(labels)) > 2
        self._options = replace(options, engine=backend.engine,
                                threshold=None if multi else DEFAULT_THRESHOLD if options.threshold is None
                                else options.threshold)
        self._labels = tuple(labels)
        self._multi = len(self._labels) > 2
        expected = len(self._labels) if self._multi else 1
        if backend.classes != expected:
            raise BundleError(f"{name}: the model outputs {backend.classes} values a review, but the bundle has "
                              f"{len(self._labels)} labels")
        if self._multi and options.threshold is not None:
            raise ValueError(f"a threshold applies to a bundle of two labels; this one has {len(self._labels)} "
                             f"(an uncertainty band marks a top probability at or below p instead)")
        self._threshold = self._options.threshold
        self._uncertain = self._options.uncertain
        self._temperature = float(temperature)
        self._encode_one = encoder.model_input
        # ``tempered`` is pure, and an int8 artifact has at most 256 outputs: it runs once per distinct output.
        self._temper = lru_cache(maxsize=TEMPER_CACHE)(partial(tempered, temperature=self._temperature))
        run_one, temper = backend.run_one, self._temper
        if self._multi:
            t = self._temperature
            self._run_one = run_one if t == 1.0 else (lambda row: tempered_softmax(run_one(row), t))
        else:
            self._run_one = run_one if self._temperature == 1.0 else (lambda row: temper(run_one(row)))

    @classmethod
    def _from_bundle(cls, bundle: Bundle, options: ClassifierOptions) -> Classifier:
        """A classifier for one artifact of a verified bundle, as ``options`` say (their
        ``bundle`` is replaced by ``bundle``'s directory): the artifact named, else the default
        one, or the first one an installed engine can run."""
        name = options.artifact or _runnable_default(bundle, options.engine)
        entry, path, content = bundle.artifact_content(name)
        loaded = load_backend(path, entry.format, options.engine, options.num_threads, entry.batch_invariant,
                              entry.output, content)
        m = bundle.manifest
        # Where to load it again, whatever the working directory then: an absolute path, and
        # the shipped bundle None, so a process elsewhere (a Ray or Spark worker) loads its own copy.
        options = replace(options, bundle=bundle.root, artifact=name,
                          threshold=m.threshold if options.threshold is None and len(m.labels) == 2
                          else options.threshold)
        return cls(bundle.encoder(), loaded, options, labels=m.labels, temperature=m.temperature, bundle=bundle,
                   name=str(path))

    def __reduce__(self):
        """Pickled as its ``options``; unpickling loads the bundle again."""
        if self.bundle is None:
            raise TypeError("only a classifier loaded from a bundle can be pickled")
        return _loaded, (self._options,)

    @property
    def options(self) -> ClassifierOptions:
        """The options it was loaded with, as loaded: the bundle (absolute, None for the shipped
        one), the artifact and engine that run, the threshold in use, threads and band."""
        return self._options

    @property
    def labels(self) -> tuple[str, ...]:
        """The bundle's labels in its column order: (negative, positive) for two labels."""
        return self._labels

    @property
    def engine(self) -> str:
        """The engine that runs the artifact (``litert``, ``tflite-runtime`` or ``onnxruntime``)."""
        return self._options.engine

    @property
    def artifact(self) -> str | None:
        """The name of the artifact in the bundle."""
        return self._options.artifact

    @property
    def threshold(self) -> float | None:
        """P(positive) at or above which a review is positive (None: more than two labels)."""
        return self._threshold

    @property
    def uncertain(self) -> tuple[float, float] | None:
        """The uncertainty band, or None."""
        return self._uncertain

    @property
    def num_threads(self) -> int | None:
        """The engine threads asked for (None: one)."""
        return self._options.num_threads

    @property
    def temperature(self) -> float:
        """The bundle's logit temperature (1: none)."""
        return self._temperature

    def _probability(self, text: str) -> float:
        """P(positive) for one review: the hot path, as the benchmark times it."""
        _check_text(text)
        return self._run_one(self._encode_one(text))

    def _probability_of_input(self, row: np.ndarray) -> float:
        """P(positive) for one review's already encoded model input (``encoder.model_input``):
        the engine alone, as the benchmark times it."""
        return self._run_one(row)

    def _label(self, probability: float, threshold: float | None = None,
               uncertain: tuple[float, float] | None = None) -> str:
        """The label of a probability (checked by the caller): ``uncertain`` inside the band,
        else by the threshold."""
        band = self._uncertain if uncertain is None else uncertain
        if band is not None and band[0] <= probability <= band[1]:
            return UNCERTAIN
        t = self._threshold if threshold is None else threshold
        return self._labels[1] if probability >= t else self._labels[0]

    def _prediction(self, probability, row: np.ndarray, threshold: float | None = None,
                    uncertain: tuple[float, float] | None = None) -> Prediction:
        if self._multi:
            return self._multi_prediction(probability, int(self.encoder.known_words(row)), uncertain)
        return Prediction(self._label(probability, threshold, uncertain), probability,
                          int(self.encoder.known_words(row)), self._labels)

    def _multi_prediction(self, probs: np.ndarray, known: int, uncertain: tuple[float, float] | None = None) -> Prediction:
        """An N-label prediction: the most probable label (the first of equals), unless its
        probability lies inside the uncertainty band."""
        scores = tuple(np.asarray(probs, np.float32).tolist())
        top = int(np.argmax(probs))
        band = self._uncertain if uncertain is None else uncertain
        label = UNCERTAIN if band is not None and band[0] <= scores[top] <= band[1] else self._labels[top]
        return Prediction(label, scores[top], known, self._labels, scores)

    def _check_call(self, threshold: float | None) -> None:
        if threshold is not None and self._multi:
            raise ValueError(f"a threshold applies to a bundle of two labels; this one has {len(self._labels)}")

    def predict(self, text: str, *, threshold: float | None = None,
                uncertain: tuple[float, float] | None = None) -> Prediction:
        """Label, P(positive) and known-word count for one review.

        Args:
            text: the review, of any length (a long one is encoded in pieces, to the same answer).
            threshold: for this call, instead of the classifier's.
            uncertain: a ``(low, high)`` band for this call, instead of the classifier's.

        Returns:
            The review's ``Prediction``.

        Raises:
            TypeError: ``text`` is not a str (bytes: decode them first).
            ValueError: ``text`` is empty or whitespace-only, ``threshold`` is not a number
                between 0 and 1, or ``uncertain`` not a band.
        """
        _check_text(text)
        threshold = check_threshold(threshold)
        uncertain = check_band(uncertain)
        if threshold is not None and self._multi:
            self._check_call(threshold)
        row = self._encode_one(text)
        return self._prediction(self._run_one(row), row, threshold, uncertain)

    def explain(self, text: str, k: int = 10, label: str | None = None) -> Explanation:
        """The ``k`` terms of the review that pushed most towards each label (see ``runtime.explain``):
        exact weights read from the artifact for the n-gram family, occlusion in batched engine
        calls for the others. Contributions and ``logit`` are the model's own, before any
        temperature; ``probability`` is this classifier's answer.

        Args:
            text: the review, at most ``WHOLE_UP_TO`` characters (the commands do not explain
                a review they stream: explain an excerpt of a longer one).
            k: how many terms to name each way.
            label: for a bundle of more than two labels, the label whose logit to explain
                (default: the most probable one); two labels explain P(positive) and take None.

        Returns:
            The review's ``Explanation``.

        Raises:
            TypeError: ``text`` is not a str.
            ValueError: ``text`` is empty, whitespace-only or too long, ``k`` is not a
                positive integer, or ``label`` is not one of the bundle's labels.
        """
        _check_text(text)
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        if len(text) > WHOLE_UP_TO:
            raise ValueError(f"a review of {len(text)} characters is too long to explain (at most "
                             f"{WHOLE_UP_TO}): explain an excerpt of it")
        if not self._multi:
            if label is not None:
                raise ValueError("label= is for a bundle of more than two labels; this one explains P(positive)")
            if self.encoder.family == NGRAM:
                weights = self.backend.linear_weights()
                return explain_linear(self.encoder, text, k, weights.rows_of, weights.bias, self._run_one)
            return explain_occlusion(self.encoder, text, k, self.backend.run_logits, self._run_one)
        if label is None:
            c = int(np.argmax(self._run_one(self._encode_one(text))))
        elif label in self._labels:
            c = self._labels.index(label)
        else:
            raise ValueError(f"label {label!r} is not one of the bundle's labels: {', '.join(self._labels)}")
        run_one = self._run_one

        def probability_of(row: np.ndarray) -> float:
            return float(run_one(row)[c])

        if self.encoder.family == NGRAM:
            weights = self.backend.linear_weights().column(c)
            found = explain_linear(self.encoder, text, k, weights.rows_of, weights.bias, probability_of)
        else:
            run_logits = self.backend.run_logits
            found = explain_occlusion(self.encoder, text, k, lambda batch: run_logits(batch)[:, c], probability_of)
        return replace(found, label=self._labels[c])

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
        if self._temperature == 1.0:
            return probs
        if self._multi:
            return tempered_softmax(probs, self._temperature)
        return np.fromiter(map(self._temper, probs.tolist()), dtype=np.float32, count=len(probs))

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """P(positive) for each review of a batch; every label's probability for a bundle of
        more than two labels.

        Args:
            texts: a list (or other sequence) of str, each of any length.

        Returns:
            A float32 array of shape ``(len(texts),)`` for two labels (P(positive)), or
            ``(len(texts), N)`` for N > 2 labels, columns in ``labels`` order.

        Raises:
            TypeError: ``texts`` is not a sequence of str (a str alone is one review: use ``predict``).
            ValueError: a review is empty or whitespace-only (the message names its index).
        """
        return self._score_batch(texts)[0]

    def _score_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """P(positive) (float32) and known-word counts (int32) for each review of a batch."""
        _check_texts(texts)
        shape = (len(texts), len(self._labels)) if self._multi else len(texts)
        probs, known = np.zeros(shape, np.float32), np.zeros(len(texts), np.int32)
        for positions, inputs, p in self._batches(texts):
            probs[positions] = p
            known[positions] = self.encoder.known_words(inputs)
        return probs, known

    def _predictions(self, probs: np.ndarray, known: np.ndarray, threshold: float | None = None,
                     uncertain: tuple[float, float] | None = None) -> list[Prediction]:
        """``Prediction`` objects from ``_score_batch``'s arrays."""
        if self._multi:
            return [self._multi_prediction(p, k, uncertain) for p, k in zip(probs, known.tolist())]
        if uncertain is not None or self._uncertain is not None:
            return [Prediction(self._label(p, threshold, uncertain), p, k, self._labels)
                    for p, k in zip(probs.tolist(), known.tolist())]
        t = self._threshold if threshold is None else threshold
        labels = self._labels
        negative, positive = labels
        return [Prediction(positive if p >= t else negative, p, k, labels) for p, k in zip(probs.tolist(), known.tolist())]

    def predict_batch(self, texts: Sequence[str], *, threshold: float | None = None,
                      uncertain: tuple[float, float] | None = None) -> list[Prediction]:
        """A ``Prediction`` for each review of a batch (engine calls of up to ``RUN_BATCH`` reviews).

        Args:
            texts: a list (or other sequence) of str, each of any length.
            threshold: for this call, instead of the classifier's.
            uncertain: a ``(low, high)`` band for this call, instead of the classifier's.

        Returns:
            One ``Prediction`` per review, in order.

        Raises:
            TypeError: ``texts`` is not a sequence of str.
            ValueError: a review is empty or whitespace-only (the message names its index),
                ``threshold`` is not a number between 0 and 1, or ``uncertain`` not a band.
        """
        threshold = check_threshold(threshold)
        uncertain = check_band(uncertain)
        self._check_call(threshold)
        return self._predictions(*self._score_batch(texts), threshold, uncertain)

    def predict_stream(self, pieces: Iterable[str]) -> Prediction:
        """A ``Prediction`` for one text given in pieces (memory bounded, whatever its length):
        the same as ``predict`` of the pieces joined.

        Args:
            pieces: an iterable of str: a list, a generator, a file opened in text mode.

        Returns:
            The text's ``Prediction``.

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




def load(bundle: str | Path | None = None, artifact: str | None = None, backend: str = AUTO,
         threshold: float | None = None, num_threads: int | None = None,
         uncertain: tuple[float, float] | None = None, *, options: ClassifierOptions | None = None) -> Classifier:
    """A classifier for one artifact of a bundle (default: the bundle shipped inside this package).

    Either the keyword arguments or ``options``, not both; the arguments are checked before
    any file is read.

    Args:
        bundle: the bundle directory; None for the shipped bundle.
        artifact: the artifact to run; None for the manifest's default (or, with ``backend``,
            the first artifact that engine can run).
        backend: ``"auto"`` or an engine name: ``"litert"``, ``"tflite-runtime"``, ``"onnxruntime"``.
        threshold: P(positive) at or above which a review is positive; None for the bundle's.
        num_threads: the threads the engine may use; None for one.
        uncertain: a ``(low, high)`` band labelled ``UNCERTAIN``; None for no band.
        options: all of the above in one ``ClassifierOptions``.

    Returns:
        The loaded ``Classifier``; its ``options`` are these, as loaded.

    Raises:
        TypeError: ``options`` is not a ``ClassifierOptions``, or is given with other
            arguments; or an argument has the wrong type (``num_threads`` not an int,
            ``bundle`` not a path...).
        ValueError: ``threshold`` is not a number between 0 and 1 (bool is not),
            ``uncertain`` not a ``(low, high)`` band inside it, or ``num_threads`` below 1.
        runtime.Error: the bundle or its engine cannot be loaded: ``BundleError`` (missing,
            malformed or tampered bundle, unknown artifact) or ``EngineError`` (no engine
            installed for the artifact, or the engine refused it).
    """
    if options is None:
        options = ClassifierOptions(bundle, artifact, backend, num_threads, threshold, uncertain)
        root = bundle or DEFAULT_BUNDLE  # opened as given, so that messages name it as the caller did
    elif not isinstance(options, ClassifierOptions):
        raise TypeError(f"options must be a runtime.ClassifierOptions, got {type(options).__name__}")
    elif (bundle, artifact, backend, threshold, num_threads, uncertain) != (None, None, AUTO, None, None, None):
        raise TypeError("load() takes options or the other arguments, not both")
    else:
        root = options.bundle_path
    return Classifier._from_bundle(open_bundle(root), options)


def _loaded(options: ClassifierOptions) -> Classifier:
    """An unpickled classifier: loaded again from its options."""
    return load(options=options)


__all__ = ["Classifier", "ClassifierOptions", "Prediction", "Explanation", "load", "DEFAULT_BUNDLE", "ENGINES",
           "UNCERTAIN"]
