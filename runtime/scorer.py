"""``ReviewScorer``: the classifier as a batch function for data-parallel frameworks.

It loads its bundle once (when built, or when unpickled on a worker), pickles as the
options it was built with (the bundle as an absolute path), and takes a batch of texts:

* Ray Data, as a class-based UDF::

      ds.map_batches(ReviewScorer, fn_constructor_kwargs={"bundle": "out/bundle"},
                     batch_format="numpy", concurrency=4)

  ``__call__`` takes a dict of columns and returns it with ``probability``, ``label`` and
  ``error`` added (replacing columns of those names).
* Spark, with ``pyspark.ml.functions.predict_batch_udf``, whose predict function takes an
  array of inputs and returns an array (the tests call it so; Spark itself is not run here)::

      predict_batch_udf(lambda: ReviewScorer("out/bundle"), return_type=FloatType(), batch_size=256)

  ``__call__`` takes an array of texts and returns an array of probabilities.

A row that holds no review never fails its batch and never gets a made-up answer: a null
(None, a NaN float, pandas ``NA``/``NaT``, a masked numpy entry), an empty or whitespace-only
text, bytes that are not UTF-8, or a value that is not text at all gets probability NaN,
label None and, in the dict form, an ``error`` saying why. Bytes are decoded as UTF-8.

Neither framework is imported here.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from runtime.classifier import UNCERTAIN, Classifier, Prediction, load
from runtime.options import AUTO, ClassifierOptions
from runtime.encoding.features import BULK_MEMO_SIZE
from runtime.encoding.text import EMPTY_REVIEW, is_blank

NULL = "null text"  # the error of a row holding no value
NOT_UTF8 = "bytes that are not UTF-8 text"


def _is_null(value: object) -> bool:
    """None, a NaN float (numpy's too), a masked numpy entry, pandas ``NA`` or ``NaT``."""
    if value is None or value is np.ma.masked:
        return True
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    pandas = sys.modules.get("pandas")  # a pandas value can only come from a program that imported it
    return pandas is not None and (value is pandas.NA or value is pandas.NaT)


def text_of(value: object) -> tuple[str | None, str | None]:
    """(text, None) for a value that holds a review, else (None, why not): the rule every row
    of a batch is read by."""
    if isinstance(value, str):
        return (None, EMPTY_REVIEW) if is_blank(value) else (str(value), None)
    if isinstance(value, (bytes, bytearray)):
        try:
            return text_of(bytes(value).decode("utf-8"))
        except UnicodeDecodeError:
            return None, NOT_UTF8
    if _is_null(value):
        return None, NULL
    return None, f"not text: {type(value).__name__}"


def _check_column(column: object) -> None:
    if not isinstance(column, str) or not column:
        raise TypeError(f"column must be a non-empty str, got {type(column).__name__} {column!r}")


class ReviewScorer:
    """P(positive) for batches of reviews with one artifact of a bundle.

    Args:
        bundle: as ``runtime.load`` takes it (and so ``artifact``, ``backend``,
            ``threshold``, ``num_threads``, ``uncertain`` and ``options``); the
            classifier's options are kept whole when the scorer is pickled.
        column: the column of a dict batch that holds the reviews.

    Raises:
        TypeError, ValueError: an argument is wrong, as ``runtime.load`` says.
        runtime.Error: the bundle or its engine cannot be loaded.
    """

    def __init__(self, bundle: str | Path | None = None, artifact: str | None = None, backend: str = AUTO,
                 threshold: float | None = None, column: str = "text", num_threads: int | None = None,
                 uncertain: tuple[float, float] | None = None, *, options: ClassifierOptions | None = None):
        _check_column(column)  # before the bundle is read, as every argument is
        self._start(load(bundle, artifact, backend, threshold, num_threads, uncertain, options=options), column)

    def _start(self, classifier: Classifier, column: str) -> None:
        _check_column(column)
        self.classifier = classifier
        self.classifier.encoder.set_memo_size(BULK_MEMO_SIZE)
        self.column = column

    @property
    def options(self) -> ClassifierOptions:
        """The options of its classifier, as loaded (what it is pickled as, with its column)."""
        return self.classifier.options

    def __reduce__(self):
        """Pickled as its classifier's options and its column."""
        return _unpickled_scorer, (self.classifier.options, self.column)

    def predict_batch(self, texts: Sequence[str]) -> list[Prediction]:
        """A ``Prediction`` per review, as ``Classifier.predict_batch`` gives it (strict: a
        value that is not a review raises).

        Args:
            texts: a list (or other sequence) of str.

        Returns:
            One ``Prediction`` per review, in order.

        Raises:
            TypeError: ``texts`` is not a sequence of str.
            ValueError: a review is empty or whitespace-only.
        """
        return self.classifier.predict_batch(texts)

    def score_values(self, values) -> tuple[np.ndarray, list[str | None]]:
        """P(positive) for each value of a batch, lenient: a value that holds no review gets
        NaN and says why (see the module).

        Args:
            values: an array or list of texts (str or UTF-8 bytes; nulls are allowed).

        Returns:
            float32 probabilities (NaN where a value holds no review; one column per label for
            a bundle of more than two labels) and each value's error (None for a scored review).

        Raises:
            TypeError: ``values`` is a str, bytes or a dict rather than a batch of texts.
        """
        if isinstance(values, (str, bytes, bytearray, dict)):
            raise TypeError(f"a batch must be an array or list of texts, got {type(values).__name__}"
                            + (" (for one review use classifier.predict)" if isinstance(values, str) else ""))
        read = [text_of(v) for v in values]
        labels = len(self.classifier.labels)
        probabilities = np.full((len(read), labels) if labels > 2 else len(read), np.nan, dtype=np.float32)
        positions = [i for i, (text, _) in enumerate(read) if text is not None]
        if positions:
            probabilities[positions] = self.classifier.predict_proba([read[i][0] for i in positions])
        return probabilities, [error for _, error in read]

    def __call__(self, batch):
        """Score a batch, as Ray Data or Spark call a UDF.

        Args:
            batch: Ray Data: a dict of columns, the reviews in ``column``. Spark and plain
                use: an array or list of texts.

        Returns:
            For a dict, the same dict with ``probability`` (float32, NaN for a row without a
            review), ``label`` (None for one) and ``error`` (None, or why) added; for an
            array or list, the float32 probabilities (NaN for a row without a review). With
            more than two labels, ``probability`` and ``label`` are the top label's, the dict
            gains ``probabilities`` (one column per label), and the array form is ``(n, N)``.

        Raises:
            TypeError: ``batch`` is a str (one review is not a batch) or bytes.
            KeyError: a dict batch has no ``column``.
        """
        if isinstance(batch, dict):
            if self.column not in batch:
                shown = ", ".join(repr(k) for k in list(batch)[:10]) or "none"
                raise KeyError(f"the batch has no column {self.column!r} (its columns: {shown})")
            probabilities, errors = self.score_values(batch[self.column])
            if probabilities.ndim == 2:  # more than two labels: the top one, and every label's column
                names = np.array(self.classifier.labels, dtype=object)
                scored = np.array([e is None for e in errors], dtype=bool)
                top = np.argmax(np.nan_to_num(probabilities, nan=-1.0), axis=1)
                labels = np.where(scored, names[top], None)
                best = np.where(scored, probabilities[np.arange(len(top)), top], np.nan).astype(np.float32)
                band = self.classifier.uncertain
                if band is not None:  # a top probability inside the band, as Classifier.predict labels it
                    labels = np.where(scored & (band[0] <= best) & (best <= band[1]), UNCERTAIN, labels)
                return {**batch, "probability": best, "label": labels, "probabilities": probabilities,
                        "error": np.array(errors, dtype=object)}
            label = self.classifier._label
            labels = np.array([None if e is not None else label(p) for p, e in zip(probabilities.tolist(), errors)],
                              dtype=object)
            return {**batch, "probability": probabilities, "label": labels, "error": np.array(errors, dtype=object)}
        return self.score_values(batch)[0]


def _unpickled_scorer(options: ClassifierOptions | Classifier, column: str) -> ReviewScorer:
    scorer = ReviewScorer.__new__(ReviewScorer)  # a scorer pickled before options held its classifier
    scorer._start(options if isinstance(options, Classifier) else load(options=options), column)
    return scorer
