"""The versions of the libraries a model, a bundle or a benchmark was made with."""

from __future__ import annotations

import importlib.metadata
import platform

_DISTRIBUTIONS = ("tensorflow-cpu", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert",
                  "numpy")


def library_versions() -> dict[str, str]:
    """Python and every installed distribution of the toolchain, by name."""
    found = {"python": platform.python_version()}
    for dist in _DISTRIBUTIONS:
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found
