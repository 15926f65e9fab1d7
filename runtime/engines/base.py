"""Inference engines behind one small interface: model inputs in, probabilities out.

Engines: ``litert`` (ai-edge-litert), ``tflite-runtime`` and ``onnxruntime``. Each is
imported only when chosen, so the runtime needs numpy plus whichever one is installed.

A TFLite interpreter must not be used from two threads at once, so the TFLite backend
keeps its interpreters per thread (created on a thread's first call); the ONNX Runtime
session is thread-safe and shared.

TFLite interpreters apply the XNNPACK delegate, as the engines do by default: its sums do
not depend on a batch's padded width, so a review's answer is the same alone or batched.
ai-edge-litert prints one INFO line on stderr when it first creates the delegate in a
process; see ``_first_interpreter_quietly`` for the only muting the runtime does.
"""

from __future__ import annotations

import importlib
import numbers
import os
import sys
import threading

import numpy as np

from runtime.errors import Error
from runtime.probability import label_logits, logits, sigmoid32, softmax32

TFLITE, ONNX = "tflite", "onnx"
PROBABILITY, LOGIT = "probability", "logit"  # what an artifact's output is (the manifest's ``output``)
# How every artifact records the vocabulary size its word ids index, set at export: an
# ONNX metadata entry, and in TFLite the name of the word table's tensor (its rows).
VOCAB_SIZE_KEY = "imdb_edge.vocab_size"
# The order-aware family: the token columns at the front of a row. ONNX artifacts record it in
# their metadata; TFLite ones hold it as the rows of the 1/count table, less one.
SEQUENCE_LENGTH_KEY = "imdb_edge.sequence_length"
SEQUENCE_TABLE = "reciprocal_count"
WORD_TABLE = "word_table"
WORD_BIAS = "word_bias"  # a linear model's bias, named so that explanations can read it
MIN_WIDTH = 16  # the narrowest padded width a review's word ids are written into

# engine name -> (artifact format, module to import, distribution for `pip install`)
ENGINES = {
    "litert": (TFLITE, "ai_edge_litert.interpreter", "ai-edge-litert"),
    "tflite-runtime": (TFLITE, "tflite_runtime.interpreter", "tflite-runtime"),
    "onnxruntime": (ONNX, "onnxruntime", "onnxruntime"),
}


class EngineError(Error, RuntimeError):
    """No usable engine for an artifact, or the engine refused to load it."""


def engine_version(engine: str) -> str | None:
    """The installed version of an engine's distribution, or None if it is missing: the
    ``__version__`` of its package once that is imported, else the distribution's metadata
    (importing ``importlib.metadata`` is a noticeable part of a cold start)."""
    version = getattr(sys.modules.get(ENGINES[engine][1].partition(".")[0]), "__version__", None)
    if isinstance(version, str):
        return version
    import importlib.metadata

    try:
        return importlib.metadata.version(ENGINES[engine][2])
    except importlib.metadata.PackageNotFoundError:
        return None


def installed_engines(fmt: str | None = None) -> list[str]:
    """Engines that can be imported, in order of preference, optionally for one format."""
    found = []
    for name, (engine_fmt, module, _) in ENGINES.items():
        if fmt is not None and engine_fmt != fmt:
            continue
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        found.append(name)
    return found


def choose_engine(fmt: str, requested: str = "auto") -> str:
    """The engine to run an artifact of format ``fmt``, with an install hint if none."""
    candidates = [n for n, (f, _, _) in ENGINES.items() if f == fmt]
    if requested != "auto":
        if requested not in ENGINES:
            raise EngineError(f"unknown backend {requested!r}; choose from auto, {', '.join(ENGINES)}")
        if ENGINES[requested][0] != fmt:
            raise EngineError(f"backend {requested} cannot run {fmt} artifacts; use {' or '.join(candidates)}")
        if requested not in installed_engines(fmt):
            raise EngineError(f"backend {requested} is not installed: pip install {ENGINES[requested][2]}")
        return requested
    found = installed_engines(fmt)
    if not found:
        hint = " or ".join(f"pip install {ENGINES[c][2]}" for c in candidates)
        raise EngineError(f"no engine for {fmt} artifacts is installed: {hint}")
    return found[0]


class Backend:
    """One loaded artifact: model inputs in, probabilities out. It knows nothing of text.

    Two kinds of model input (``word_ids`` says which):

    * word ids (multi-hot models): an int32 ``(n, width)`` batch holding each review's
      distinct word ids, padded with 0; ``vocab_size`` is the number of rows they index.
    * token id rows (sequence models): int32 ``(n, length)``.

    ``batch_invariant = False`` (from the manifest) runs an artifact one row at a time: one
    whose quantization depends on the whole batch (ONNX Runtime's dynamic quantization picks
    one activation scale per input tensor), so that a review's probability never depends on
    its batch, and a sequence model's TFLite form, whose batch is fixed at 1.
    """

    batch_invariant = True
    classes = 1  # outputs per review: 1 (P(labels[1]) of two labels) or N (one per label), from the artifact
    logit_output = False  # the artifact outputs its logit (the manifest's ``output``; set by ``load_backend``)

    engine: str
    version: str | None
    word_ids: bool
    vocab_size: int | None  # rows the word ids index (word-id models)
    length: int | None  # the fixed row length (sequence models)
    sequence_length: int | None = None  # token columns before the n-gram ids (the ngram-sequence family)

    def run_one(self, row: np.ndarray) -> float | np.ndarray:
        """P(positive) for one review's model input (1-D int32): the hot path. An N-label
        artifact gives its ``(N,)`` float32 probabilities instead."""
        raise NotImplementedError

    def _outputs(self, batch: np.ndarray) -> np.ndarray:
        """What the artifact outputs for a batch, as floats ``(n,)`` (``(n, N)`` for N labels):
        logits or probabilities."""
        raise NotImplementedError

    def _rows(self, batch: np.ndarray) -> np.ndarray:
        """``_outputs`` of a batch, one row at a time unless the artifact is batch-invariant."""
        if self.batch_invariant or len(batch) <= 1:
            return self._outputs(batch)
        return np.concatenate([self._outputs(batch[i : i + 1]) for i in range(len(batch))])

    def run(self, batch: np.ndarray) -> np.ndarray:
        """P(positive) for an int32 batch of model inputs, as float32 ``(n,)``; an N-label
        artifact's probabilities as ``(n, N)``."""
        out = self._rows(batch)
        if self.classes > 1:
            return softmax32(out) if self.logit_output else out.astype(np.float32, copy=False)
        if self.logit_output:
            return np.fromiter(map(sigmoid32, out.tolist()), dtype=np.float32, count=len(out))
        return out.astype(np.float32, copy=False)

    def run_logits(self, batch: np.ndarray) -> np.ndarray:
        """The logits of a batch of model inputs, float64 ``(n,)``: what explanations compare.

        The artifact's own output when it is a logit; else recovered from the probability,
        clipped where it saturates (``runtime.probability.logits``).
        """
        if self.logit_output:
            return self._rows(batch).astype(np.float64)
        if self.classes > 1:
            return label_logits(self.run(batch))
        return logits(self.run(batch))

    def _constants(self) -> dict[str, tuple[np.ndarray, np.ndarray | None, np.ndarray | None, int]]:
        """name -> (stored values, scales, zero points, quantized axis) of the constants
        named ``WORD_TABLE`` and ``WORD_BIAS`` (scales None: stored as floats)."""
        raise NotImplementedError

    def linear_weights(self) -> LinearWeights:
        """A linear model's word table and bias as this artifact stores them (read once, kept).

        Only the n-gram family is linear; ``EngineError`` if the artifact lacks the named
        constants (exported by an older version of this project).
        """
        with _WEIGHTS_LOCK:
            if getattr(self, "_weights", None) is None:
                found = self._constants()
                missing = [n for n in (WORD_TABLE, WORD_BIAS) if n not in found]
                if missing:
                    raise EngineError(f"{self.path}: no {' or '.join(map(repr, missing))} constant to explain "
                                      f"with (exported by an older version of this project?); export it again")
                bias = _dequantize(*found[WORD_BIAS]).reshape(-1)
                self._weights = LinearWeights(*found[WORD_TABLE], bias=bias.sum() if self.classes == 1 else bias)
            return self._weights


_WEIGHTS_LOCK = threading.Lock()


def _dequantize(values: np.ndarray, scales: np.ndarray | None, zeros: np.ndarray | None, axis: int) -> np.ndarray:
    """float64 values of stored constants, quantized per tensor or per axis (or not at all)."""
    if scales is None:
        return values.astype(np.float64)
    scales, zeros = np.asarray(scales, np.float64).ravel(), np.asarray(zeros, np.float64).ravel()
    if scales.size > 1:
        shape = [1] * values.ndim
        shape[axis] = -1
        scales, zeros = scales.reshape(shape), zeros.reshape(shape)
    return (values.astype(np.float64) - zeros) * scales


class LinearWeights:
    """A linear model's table, dequantized once to float64 exactly as the artifact stores it
    (8 bytes a row: made on the first explanation, not at load), and its float bias."""

    def __init__(self, values: np.ndarray, scales, zeros, axis: int, bias: float | np.ndarray):
        table = _dequantize(values.reshape(len(values), -1), scales, zeros, axis)
        self._table = table.reshape(-1) if table.shape[1] == 1 else table
        self.rows = len(values)
        self.bias = float(bias) if np.ndim(bias) == 0 else np.asarray(bias, np.float64)

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """float64 weights of table rows ``ids``: ``(len(ids),)``, or ``(len(ids), N)`` for N labels."""
        return self._table[ids]

    def column(self, c: int) -> LinearWeights:
        """The weights of label ``c`` alone, as a one-column model's (an N-label table's column)."""
        one = LinearWeights.__new__(LinearWeights)
        one._table = np.ascontiguousarray(self._table[:, c])
        one.rows, one.bias = self.rows, float(self.bias[c])
        return one


def engine_threads(num_threads: object) -> int:
    """The threads one loaded artifact's engine may use: 1 unless asked (``num_threads``),
    at most the CPUs this process may run on.

    One thread by default: a scoring process is one worker among as many as there are cores
    (``--jobs``, Ray), and an engine's own pool would fight them for the same cores.

    Raises:
        TypeError: ``num_threads`` is not an int (``True`` is not a count).
        ValueError: ``num_threads`` is below 1.
    """
    if num_threads is None:
        return 1
    if isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral):
        raise TypeError(f"num_threads must be a positive int, got {type(num_threads).__name__} {num_threads!r}")
    if num_threads < 1:
        raise ValueError(f"num_threads must be a positive int, got {num_threads}")
    return min(int(num_threads), usable_cpus())


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the system tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
