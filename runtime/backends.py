"""Inference engines behind one small interface: features in, probabilities out.

Engines: ``litert`` (ai-edge-litert), ``tflite-runtime`` and ``onnxruntime``. Each is
imported only when chosen, so the runtime needs numpy plus whichever one is installed.

A TFLite interpreter must not be used from two threads at once, so the TFLite backend
keeps one interpreter per thread (created on a thread's first call); the ONNX Runtime
session is thread-safe and shared.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

TFLITE, ONNX = "tflite", "onnx"

# engine name -> (artifact format, module to import, distribution for `pip install`)
ENGINES = {
    "litert": (TFLITE, "ai_edge_litert.interpreter", "ai-edge-litert"),
    "tflite-runtime": (TFLITE, "tflite_runtime.interpreter", "tflite-runtime"),
    "onnxruntime": (ONNX, "onnxruntime", "onnxruntime"),
}


class EngineError(RuntimeError):
    """No usable engine for an artifact, or the engine refused to load it."""


def engine_version(engine: str) -> str | None:
    """The installed version of an engine's distribution, or None if it is missing."""
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
    """One loaded artifact. ``run`` takes a float32 ``(n, size)`` batch, returns ``(n,)``.

    ``batch_invariant = False`` (from the manifest) runs an artifact one row at a time: one
    whose quantization depends on the whole batch (ONNX Runtime's dynamic quantization picks
    one activation scale per input tensor), so that a review's probability never depends on
    its batch, and a sequence model's TFLite form, whose batch is fixed at 1.
    """

    batch_invariant = True

    engine: str
    version: str | None
    input_dtype: np.dtype
    input_size: int

    def quantize(self, features: np.ndarray) -> np.ndarray:
        """Features in the dtype the model's input takes (identity for float inputs)."""
        return features.astype(self.input_dtype, copy=False)

    def run_raw(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for a batch already in ``input_dtype``."""
        raise NotImplementedError

    def _prepare_sparse(self) -> None:
        """Quantized input values for 0 and 1, computed once at load."""
        self._off, self._on = self.quantize(np.array([[0.0, 1.0]], dtype=np.float32))[0]
        self._sparse = threading.local()

    def run_sparse(self, ids: np.ndarray) -> float:
        """P(positive) for one multi-hot row given by the ids of its ones (the hot path).

        Writes the ones into a per-thread input buffer that is otherwise all zeros, runs,
        and resets the same ids: no per-review allocation or full-row copy.
        """
        buf = getattr(self._sparse, "buf", None)
        if buf is None:
            buf = self._sparse.buf = np.full((1, self.input_size), self._off, dtype=self.input_dtype)
        row = buf[0]
        row[ids] = self._on
        try:
            return float(self.run_raw(buf)[0])
        finally:
            row[ids] = self._off

    def run(self, features: np.ndarray) -> np.ndarray:
        batch = self.quantize(features)
        if self.batch_invariant or len(batch) <= 1:
            return self.run_raw(batch)
        return np.concatenate([self.run_raw(batch[i : i + 1]) for i in range(len(batch))])


def _load_error(engine: str, version: str | None, path: str, error: Exception) -> str:
    """One line: what failed, and what to install when the engine is too old for the model."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    message = f"{engine} {version} cannot load {path}: {first}"
    if "Didn't find op for builtin opcode" in first:
        message += (f"; the model uses an op version newer than {engine} {version} has: "
                    f"pip install ai-edge-litert, or pick an artifact this engine loads "
                    f"(tflite-runtime 2.14 loads the -compat, float and full int8 artifacts)")
    return message


@contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence the engine's C++ INFO lines (e.g. "Created TensorFlow Lite XNNPACK delegate").

    Failures still surface as exceptions with their messages.
    """
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        sys.stderr.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class TFLiteBackend(Backend):
    def __init__(self, path: Path, engine: str, num_threads: int | None = None):
        self.engine = engine
        self.version = engine_version(engine)
        self._path = str(path)
        self._num_threads = num_threads
        self._module = importlib.import_module(ENGINES[engine][1])
        self._local = threading.local()
        interp = self._thread_state().interp
        inp = interp.get_input_details()[0]
        out = interp.get_output_details()[0]
        self.input_dtype = np.dtype(inp["dtype"])
        self.input_size = int(inp["shape"][-1])
        self._in_scale, self._in_zero = inp["quantization"]
        self._out_scale, self._out_zero = out["quantization"]
        self._out_quantized = np.dtype(out["dtype"]) != np.float32
        self._prepare_sparse()

    def _thread_state(self):
        """This thread's interpreter and its tensor indices, created on first use."""
        state = self._local
        if getattr(state, "interp", None) is None:
            try:
                with _quiet_native_stderr():
                    interp = self._module.Interpreter(model_path=self._path, num_threads=self._num_threads)
                    interp.allocate_tensors()
            except (ValueError, RuntimeError) as e:
                raise EngineError(_load_error(self.engine, self.version, self._path, e)) from e
            state.interp = interp
            state.batch = interp.get_input_details()[0]["shape"][0]
            state.inp = interp.get_input_details()[0]["index"]
            state.out = interp.get_output_details()[0]["index"]
            state.in_view = interp.tensor(state.inp)
            state.out_view = interp.tensor(state.out)
            state.clean = False
        return state

    def _resize(self, state, shape: tuple[int, ...]) -> None:
        state.interp.resize_tensor_input(state.inp, shape, strict=False)
        state.interp.allocate_tensors()
        state.batch = shape[0]
        state.clean = False

    def run_sparse(self, ids: np.ndarray) -> float:
        """The hot path, writing straight into the interpreter's own input tensor.

        Views from ``tensor()`` are taken and dropped within one statement, as the
        interpreter refuses to run while a view of its memory is alive.
        """
        state = self._thread_state()
        if state.batch != 1:
            self._resize(state, (1, self.input_size))
        if not state.clean:
            state.in_view()[...] = self._off
            state.clean = True
        state.in_view()[0, ids] = self._on
        try:
            state.interp.invoke()
            out = state.out_view()[0, 0].item()
        finally:
            state.in_view()[0, ids] = self._off
        if self._out_quantized:
            return (out - self._out_zero) * self._out_scale
        return out

    def quantize(self, features: np.ndarray) -> np.ndarray:
        if self.input_dtype.kind == "f" or not self._in_scale:
            return features.astype(self.input_dtype, copy=False)  # float, or integer token ids
        info = np.iinfo(self.input_dtype)
        q = features * np.float32(1.0 / self._in_scale)
        np.rint(q, out=q)
        q += np.float32(self._in_zero)
        np.clip(q, info.min, info.max, out=q)
        return q.astype(self.input_dtype)

    def run_raw(self, batch: np.ndarray) -> np.ndarray:
        state = self._thread_state()
        interp = state.interp
        if batch.shape[0] != state.batch:
            self._resize(state, batch.shape)
        interp.set_tensor(state.inp, batch)
        state.clean = False
        interp.invoke()
        out = interp.get_tensor(state.out).reshape(-1)
        if self._out_quantized:
            return (out.astype(np.float32) - self._out_zero) * np.float32(self._out_scale)
        return out


class OnnxBackend(Backend):
    engine = "onnxruntime"

    def __init__(self, path: Path, num_threads: int | None = None, batch_invariant: bool = True):
        import onnxruntime as ort

        self.batch_invariant = batch_invariant
        self.version = ort.__version__
        opts = ort.SessionOptions()
        if num_threads:
            opts.intra_op_num_threads = num_threads
            opts.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise EngineError(f"onnxruntime {self.version} cannot load {path}: {e}") from e
        inp = self._session.get_inputs()[0]
        self._input = inp.name
        self.input_dtype = np.dtype(np.int32 if inp.type == "tensor(int32)" else np.float32)
        self.input_size = int(inp.shape[-1])
        self._prepare_sparse()

    def run_raw(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: batch})[0].reshape(-1)


def load_backend(path: Path, fmt: str, backend: str = "auto", num_threads: int | None = None,
                 batch_invariant: bool = True) -> Backend:
    """Load the artifact at ``path`` (format ``fmt``) on the chosen or best engine.

    ``batch_invariant=False`` (from the manifest) makes the backend run one row at a time.
    """
    engine = choose_engine(fmt, backend)
    if fmt == ONNX:
        return OnnxBackend(path, num_threads, batch_invariant)
    loaded = TFLiteBackend(path, engine, num_threads)
    loaded.batch_invariant = batch_invariant
    return loaded
