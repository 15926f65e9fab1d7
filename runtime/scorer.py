"""``ReviewScorer``: the classifier as a batch function for data-parallel frameworks.

It loads its bundle once (when built, or when unpickled on a worker), pickles as its
arguments, and takes a batch of texts:

* Ray Data, as a class-based UDF::

      ds.map_batches(ReviewScorer, fn_constructor_kwargs={"bundle": "out/bundle"},
                     batch_format="numpy", concurrency=4)

  ``__call__`` takes a dict of columns and returns it with ``probability`` and ``label``.
* Spark, with ``pyspark.ml.functions.predict_batch_udf``, whose predict function takes an
  array of inputs and returns an array (the tests call it so; Spark itself is not run here)::

      predict_batch_udf(lambda: ReviewScorer("out/bundle"), return_type=FloatType(), batch_size=256)

  ``__call__`` takes an array of texts and returns an array of probabilities.

Neither framework is imported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from runtime.classifier import Prediction, load
from runtime.features import BULK_MEMO_SIZE


class ReviewScorer:
    """P(positive) for batches of reviews with one artifact of a bundle."""

    def __init__(self, bundle: str | Path | None = None, artifact: str | None = None, backend: str = "auto",
                 threshold: float | None = None, column: str = "text"):
        self._args = (None if bundle is None else str(bundle), artifact, backend, threshold, column)
        self.classifier = load(bundle, artifact, backend, threshold)
        self.classifier.encoder.set_memo_size(BULK_MEMO_SIZE)
        self.column = column

    def __reduce__(self):
        return ReviewScorer, self._args

    def predict_batch(self, texts: Sequence[str]) -> list[Prediction]:
        """A ``Prediction`` per review, as ``Classifier.predict_batch`` gives it."""
        return self.classifier.predict_batch(texts)

    def score_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and known-word counts, as ``Classifier.score_batch`` gives them."""
        return self.classifier.score_batch(texts)

    def __call__(self, batch):
        """Ray Data: a dict of columns in, the same dict with ``probability`` and ``label`` out.
        Spark and plain use: texts in (a sequence or array), float32 probabilities out."""
        if isinstance(batch, dict):
            texts = [str(t) for t in batch[self.column]]
            probabilities = self.classifier.predict_proba(texts)
            labels = np.array([self.classifier.label(float(p)) for p in probabilities])
            return {**batch, "probability": probabilities, "label": labels}
        return self.classifier.predict_proba([str(t) for t in batch])
