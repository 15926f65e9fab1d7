"""Lightweight IMDB sentiment runtime: raw text -> tokens -> features -> model -> probability.

Needs numpy and one inference engine (ai-edge-litert, tflite-runtime or onnxruntime);
never TensorFlow. ``runtime.load()`` returns a classifier for the bundled model.
"""

from runtime.classifier import Classifier, Prediction, load

__all__ = ["Classifier", "Prediction", "load"]
