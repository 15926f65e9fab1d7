"""Lightweight IMDB sentiment runtime: raw text -> tokens -> features -> model -> probability.

Needs numpy and one inference engine (ai-edge-litert, tflite-runtime or onnxruntime);
never TensorFlow. ``runtime.load()`` returns a classifier for the bundled model (or the bundle,
artifact and engine it is given, one by one or as a ``runtime.ClassifierOptions``);
``runtime.ReviewScorer`` is the same as a batch function for Ray Data or Spark.
``runtime.Error`` is the base of every error the runtime raises on its own account (a bad
bundle, a missing engine, an unusable input); wrong arguments are ``TypeError``/``ValueError``.
"""

from runtime.errors import Error
from runtime.classifier import DEFAULT_BUNDLE, UNCERTAIN, Classifier, Prediction, load
from runtime.options import ClassifierOptions
from runtime.explain import Explanation, Term
from runtime.scorer import ReviewScorer

__all__ = ["Classifier", "ClassifierOptions", "DEFAULT_BUNDLE", "Error", "Explanation", "Prediction", "ReviewScorer",
           "Term", "UNCERTAIN", "load"]
