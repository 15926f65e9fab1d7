"""``load_backend``: an artifact on the chosen or best engine, as the backend its format needs."""

from __future__ import annotations

from pathlib import Path

from runtime.engines.base import LOGIT, ONNX, PROBABILITY, Backend, EngineError, choose_engine
from runtime.engines.onnx import OnnxBackend
from runtime.engines.tflite import TFLiteBackend


def load_backend(path: Path, fmt: str, backend: str = "auto", num_threads: int | None = None,
                 batch_invariant: bool = True, output: str = PROBABILITY, content: bytes | None = None) -> Backend:
    """Load the artifact at ``path`` (format ``fmt``) on the chosen or best engine.

    ``content``, the file's bytes when the caller has read (and verified) them, is loaded
    instead of ``path``, which then only names the artifact in messages.

    ``batch_invariant=False`` (from the manifest) makes the backend run one row at a time;
    ``output="logit"`` applies ``sigmoid32`` to what the model returns.
    """
    if output not in (PROBABILITY, LOGIT):
        raise EngineError(f"{path}: an artifact outputs a {PROBABILITY} or a {LOGIT}, not {output!r}")
    engine = choose_engine(fmt, backend)
    kind = OnnxBackend if fmt == ONNX else TFLiteBackend
    loaded: Backend = kind(path, engine, num_threads, batch_invariant, content)
    loaded.logit_output = output == LOGIT
    return loaded
