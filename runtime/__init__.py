"""Lightweight IMDB sentiment runtime: raw text -> tokens -> features -> model -> probability.

Needs numpy and one inference engine (ai-edge-litert, tflite-runtime or onnxruntime);
never TensorFlow. ``runtime.load()`` returns a classifier for the bundled model;
``runtime.ReviewScorer`` is the same as a batch function for Ray Data or Spark.
"""

from runtime.classifier import DEFAULT_BUNDLE, Classifier, Prediction, load
from runtime.scorer import ReviewScorer

__all__ = ["Classifier", "DEFAULT_BUNDLE", "Prediction", "ReviewScorer", "load"]
