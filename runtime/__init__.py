"""Lightweight IMDB sentiment runtime: raw text -> tokens -> features -> model -> probability.

Needs numpy and one inference engine (ai-edge-litert, tflite-runtime or onnxruntime);
never TensorFlow. ``runtime.load()`` returns a classifier for the bundled model (or the bundle,
artifact and engine it is given, one by one or as a ``runtime.ClassifierOptions``);
``runtime.ReviewScorer`` is the same as a batch function for Ray Data or Spark.
``runtime.Error`` is the base of every error the runtime raises on its own account (a bad
bundle, a missing engine, an unusable input); wrong arguments are ``TypeError``/``ValueError``.

The names below are imported when first used (PEP 562): importing ``runtime`` itself loads
nothing heavy, so the command line takes Ctrl-C and SIGTERM before numpy and the engines load.
"""

from importlib import import_module as _import_module

from runtime.errors import Error

_WHERE = {"DEFAULT_BUNDLE": "runtime.classifier", "UNCERTAIN": "runtime.classifier", "Classifier": "runtime.classifier",
          "Prediction": "runtime.classifier", "load": "runtime.classifier", "ClassifierOptions": "runtime.options",
          "Explanation": "runtime.explain", "Term": "runtime.explain", "ReviewScorer": "runtime.scorer"}

__all__ = ["Classifier", "ClassifierOptions", "DEFAULT_BUNDLE", "Error", "Explanation", "Prediction", "ReviewScorer",
           "Term", "UNCERTAIN", "load"]


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(_import_module(_WHERE[name]), name)
        globals()[name] = value  # once
        return value
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
