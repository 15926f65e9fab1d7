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

import faulthandler
import importlib
import math
import numbers
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from runtime.errors import Error

TFLITE, ONNX = "tflite", "onnx"
PROBABILITY, LOGIT = "probability", "logit"  # what an artifact's output is (the manifest's ``output``)
# How every artifact records the vocabulary size its word ids index, set at export: an
# ONNX metadata entry, and in TFLite the name of the word table's tensor (its rows).
VOCAB_SIZE_KEY = "imdb_edge.vocab_size"
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
    (importing ``importlib.metadata`` alone took 17 ms of a 0.16 s cold start)."""
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
    logit_output = False  # the artifact outputs its logit (the manifest's ``output``; set by ``load_backend``)

    engine: str
    version: str | None
    word_ids: bool
    vocab_size: int | None  # rows the word ids index (word-id models)
    length: int | None  # the fixed row length (sequence models)

    def run_one(self, row: np.ndarray) -> float:
        """P(positive) for one review's model input (1-D int32): the hot path."""
        raise NotImplementedError

    def _outputs(self, batch: np.ndarray) -> np.ndarray:
        """What the artifact outputs for a batch, as floats ``(n,)``: logits or probabilities."""
        raise NotImplementedError

    def _rows(self, batch: np.ndarray) -> np.ndarray:
        """``_outputs`` of a batch, one row at a time unless the artifact is batch-invariant."""
        if self.batch_invariant or len(batch) <= 1:
            return self._outputs(batch)
        return np.concatenate([self._outputs(batch[i : i + 1]) for i in range(len(batch))])

    def run(self, batch: np.ndarray) -> np.ndarray:
        """P(positive) for an int32 batch of model inputs, as float32 ``(n,)``."""
        out = self._rows(batch)
        if self.logit_output:
            return np.fromiter(map(sigmoid32, out.tolist()), dtype=np.float32, count=len(out))
        return out.astype(np.float32, copy=False)

    def run_logits(self, batch: np.ndarray) -> np.ndarray:
        """The logits of a batch of model inputs, float64 ``(n,)``: what explanations compare.

        The artifact's own output when it is a logit; else recovered from the probability,
        clipped where it saturates (see ``runtime.explain.logit``).
        """
        if self.logit_output:
            return self._rows(batch).astype(np.float64)
        from runtime.explain import logit

        return logit(self.run(batch))

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
                self._weights = LinearWeights(*found[WORD_TABLE], bias=_dequantize(*found[WORD_BIAS]).sum())
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

    def __init__(self, values: np.ndarray, scales, zeros, axis: int, bias: float):
        self._table = _dequantize(values.reshape(len(values), -1), scales, zeros, axis).reshape(-1)
        self.rows = len(values)
        self.bias = float(bias)

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """float64 weights of table rows ``ids``."""
        return self._table[ids]


def _bucket(n: int) -> int:
    """The padded width for ``n`` ids: a power of two, so that few widths ever get allocated."""
    return max(MIN_WIDTH, 1 << (n - 1).bit_length())


def _check_numpy(engine: str, version: str | None) -> None:
    """tflite-runtime (every release, 2.14 the last) is built against numpy 1: with numpy 2 its
    interpreter fails deep inside with a SystemError. Say so before trying."""
    if engine == "tflite-runtime" and int(np.__version__.split(".")[0]) >= 2:
        raise EngineError(f"tflite-runtime {version} needs numpy<2; numpy {np.__version__} is installed: "
                          f"pip install 'numpy<2', or use ai-edge-litert instead")


def _load_error(engine: str, version: str | None, path: str, error: Exception) -> str:
    """One line: what failed, and what to install when the engine is too old for the model."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    message = f"{engine} {version} cannot load {path}: {first}"
    if "Didn't find op for builtin opcode" in first:
        message += (f"; the model uses an op version newer than {engine} {version} has: "
                    f"pip install ai-edge-litert, or pick an artifact this engine loads "
                    f"(tflite-runtime 2.14 loads the -compat, float and full int8 artifacts)")
    return message


_FIRST_LOCK = threading.Lock()
_first_done = False


@contextmanager
def _first_interpreter_quietly() -> Iterator[None]:
    """Hide the one INFO line ("Created TensorFlow Lite XNNPACK delegate for CPU") that
    ai-edge-litert prints, once per process, when its first interpreter is created.

    File descriptor 2 belongs to the whole process, so it is pointed at /dev/null only for
    that first creation and only while this is the process's only thread; otherwise nothing
    is touched and the line shows. Meanwhile faulthandler writes to the real stderr, so a
    crash inside the engine still prints its traceback; an engine's failure reaches the
    caller as an exception, whose message the runtime reports.

    Nothing is touched either (and the line shows) when fd 2 is closed, or when faulthandler
    is already enabled: Python cannot tell which file it writes to, so it could be neither
    redirected nor restored, and muting fd 2 might hide its traceback. ``sys.stderr`` is only
    flushed, if it can be: it may be None or lack a file descriptor (pytest's ``capsys``).
    """
    global _first_done
    with _FIRST_LOCK:
        quiet = not _first_done and threading.active_count() == 1
        _first_done = True
    if not quiet or faulthandler.is_enabled():
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:  # fd 2 is closed: there is nothing to mute
        yield
        return
    try:
        try:
            if sys.stderr is not None:
                sys.stderr.flush()
        except (OSError, ValueError):
            pass
        faulthandler.enable(file=saved)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        faulthandler.disable()
        os.close(saved)


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


class _Slot:
    """One interpreter allocated for one input shape, with its tensor accessors."""

    def __init__(self, interp, shape: tuple[int, ...]):
        self.interp = interp
        self.shape = shape
        self.inp = interp.get_input_details()[0]["index"]
        self.out = interp.get_output_details()[0]["index"]
        self.in_view = interp.tensor(self.inp)
        self.out_view = interp.tensor(self.out)
        self.filled = shape[-1]  # columns that may hold ids from an earlier review

    def resize(self, shape: tuple[int, ...]) -> None:
        """Reallocate the interpreter for another input shape (a rare, slow step)."""
        self.interp.resize_tensor_input(self.inp, shape, strict=False)
        self.interp.allocate_tensors()
        self.shape = shape
        self.filled = shape[-1]


class TFLiteBackend(Backend):
    """A TFLite artifact on litert or tflite-runtime.

    Interpreters are per thread. A word-id model gets one interpreter per padded width (a power of
    two), each allocated once, so that a review never pays for a resize; batches share one
    that is resized when their shape changes.
    """

    def __init__(self, path: Path, engine: str, num_threads: int | None = None, content: bytes | None = None):
        self.engine = engine
        self.version = engine_version(engine)
        self._path = str(path)
        # The model's verified bytes, when given, are loaded instead of the path (the engine's
        # bindings refuse a path that is not valid UTF-8); ``path`` then only names it.
        self._source = {"model_path": self._path} if content is None else {"model_content": content}
        self._num_threads = engine_threads(num_threads)  # the engines' own default may be several
        _check_numpy(engine, self.version)
        self._module = importlib.import_module(ENGINES[engine][1])
        self._local = threading.local()
        interp = self._interpreter()
        inp = interp.get_input_details()[0]
        self._default_shape = tuple(int(d) for d in inp["shape"])
        self._local.slots = {"batch": _Slot(interp, self._default_shape)}
        out = interp.get_output_details()[0]
        signature = tuple(inp.get("shape_signature", inp["shape"]))
        self.word_ids = np.dtype(inp["dtype"]) == np.int32 and signature[-1] == -1
        self.vocab_size = _table_rows(interp, self._path) if self.word_ids else None
        self.length = None if self.word_ids else int(inp["shape"][-1])
        self._out_scale, self._out_zero = out["quantization"]
        self._out_quantized = np.dtype(out["dtype"]) != np.float32

    @property
    def path(self) -> str:
        return self._path

    def _constants(self) -> dict:
        return _tflite_constants(self._interpreter())

    def _interpreter(self):
        try:
            with _first_interpreter_quietly():
                interp = self._module.Interpreter(**self._source, num_threads=self._num_threads)
                interp.allocate_tensors()
        except (ValueError, RuntimeError, SystemError, ImportError) as e:
            raise EngineError(_load_error(self.engine, self.version, self._path, e)) from e
        return interp

    def _slot(self, key, shape: tuple[int, ...]) -> _Slot:
        """This thread's interpreter for ``key``, allocated for ``shape`` on first use."""
        slots = self._local.__dict__.setdefault("slots", {})
        slot = slots.get(key)
        if slot is None:
            slot = slots[key] = _Slot(self._interpreter(), self._default_shape)
        if slot.shape != shape:
            slot.resize(shape)
        return slot

    def _probability(self, value) -> float:
        if self._out_quantized:
            return (float(value) - self._out_zero) * self._out_scale
        if self.logit_output:
            return sigmoid32(float(value))
        return float(value)

    def run_one(self, row: np.ndarray) -> float:
        """The hot path: the row goes straight into the input tensor of an interpreter
        allocated for its width (word ids: a power of two); only the columns the last review
        used beyond this one's are cleared.

        A view from ``tensor()`` is dropped before ``invoke``, as the interpreter refuses to
        run while a view of its memory is alive.
        """
        n = len(row)
        width = _bucket(n) if self.word_ids else n
        slot = self._slot(width, (1, width))
        view = slot.in_view()
        view[0, :n] = row
        if slot.filled > n:
            view[0, n : slot.filled] = 0
        del view  # no view of the interpreter's memory may be alive when it runs
        slot.filled = n
        slot.interp.invoke()
        return self._probability(slot.out_view()[0, 0])

    def _outputs(self, batch: np.ndarray) -> np.ndarray:
        slot = self._slot("batch", batch.shape)
        slot.interp.set_tensor(slot.inp, batch)
        slot.interp.invoke()
        out = slot.interp.get_tensor(slot.out).reshape(-1)
        if self._out_quantized:
            return (out.astype(np.float32) - self._out_zero) * np.float32(self._out_scale)
        return out


def _tflite_constants(interp) -> dict:
    found = {}
    for tensor in interp.get_tensor_details():
        if tensor["name"] in (WORD_TABLE, WORD_BIAS):
            q = tensor["quantization_parameters"]
            quantized = np.dtype(tensor["dtype"]) in (np.int8, np.uint8, np.int16)
            found[tensor["name"]] = (interp.get_tensor(tensor["index"]), q["scales"] if quantized else None,
                                     q["zero_points"] if quantized else None, int(q["quantized_dimension"]))
    return found


def _table_rows(interp, path: str) -> int:
    """Rows of the tensor export named ``WORD_TABLE``: the vocabulary size a word-id model indexes."""
    for tensor in interp.get_tensor_details():
        if tensor["name"] == WORD_TABLE:
            return int(tensor["shape"][0])
    raise EngineError(f"{path}: a word-id model without a {WORD_TABLE!r} tensor (exported by an older "
                      f"version of this project?); export it again")


class OnnxBackend(Backend):
    engine = "onnxruntime"

    def __init__(self, path: Path, num_threads: int | None = None, batch_invariant: bool = True,
                 content: bytes | None = None):
        import onnxruntime as ort

        self.batch_invariant = batch_invariant
        self.version = ort.__version__
        opts = ort.SessionOptions()
        # ONNX Runtime's default is a pool of one thread per physical core whose threads spin
        # between calls; here the calling thread runs the model (with num_threads=1, no pool
        # at all), operators one after the other, and no thread spins waiting for work.
        opts.intra_op_num_threads = engine_threads(num_threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(path) if content is None else content, opts,
                                                 providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise EngineError(f"onnxruntime {self.version} cannot load {path}: {e}") from e
        inp = self._session.get_inputs()[0]
        self._input = inp.name
        self.word_ids = inp.type == "tensor(int32)" and not isinstance(inp.shape[-1], int)
        size = self._session.get_modelmeta().custom_metadata_map.get(VOCAB_SIZE_KEY)
        if size is None or not size.isdigit():
            raise EngineError(f"{path}: the model does not record {VOCAB_SIZE_KEY!r} (exported by an older "
                              f"version of this project?); export it again")
        self.vocab_size = int(size)
        self.length = None if self.word_ids else int(inp.shape[-1])
        self._empty = np.zeros((1, 1), dtype=np.int32)
        self.path = str(path)

    def _constants(self) -> dict:
        """Read from the file: tf2onnx names a constant ``NAME:0``; ONNX Runtime's quantizer
        stores it as ``NAME:0_quantized`` with ``_scale`` and ``_zero_point`` beside it."""
        from runtime.onnx_tensors import OnnxFormatError, initializers

        names = {f"{n}:0{suffix}" for n in (WORD_TABLE, WORD_BIAS) for suffix in ("", "_quantized", "_scale", "_zero_point")}
        try:
            init = initializers(self.path, names)
        except (OSError, OnnxFormatError) as e:
            raise EngineError(f"{self.path}: cannot read the model's constants: {e}") from e
        found = {}
        for n in (WORD_TABLE, WORD_BIAS):
            if f"{n}:0" in init:
                found[n] = (init[f"{n}:0"], None, None, 0)
            elif all(f"{n}:0{x}" in init for x in ("_quantized", "_scale", "_zero_point")):
                found[n] = (init[f"{n}:0_quantized"], init[f"{n}:0_scale"], init[f"{n}:0_zero_point"], 0)
        return found

    def run_one(self, row: np.ndarray) -> float:
        batch = row.reshape(1, -1) if len(row) else self._empty
        out = float(self._session.run(None, {self._input: batch})[0][0, 0])
        return sigmoid32(out) if self.logit_output else out

    def _outputs(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: batch})[0].reshape(-1)


def sigmoid32(z: float) -> float:
    """``1 / (1 + exp(-z))`` in float64, rounded to float32.

    For artifacts that end at the logit (``output: logit`` in the manifest): XNNPACK's float
    LOGISTIC is a vectorized approximation that differs between x86 and ARM in the last bits,
    and an engine's float32 sigmoid saturates (see ``export.convert.output_of``), while this
    gives the same float32 on every CPU and engine.
    """
    if z >= 0.0:
        return float(np.float32(1.0 / (1.0 + math.exp(-z))))
    e = math.exp(z)
    return float(np.float32(e / (1.0 + e)))


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
    if fmt == ONNX:
        loaded: Backend = OnnxBackend(path, num_threads, batch_invariant, content)
    else:
        loaded = TFLiteBackend(path, engine, num_threads, content)
        loaded.batch_invariant = batch_invariant
    loaded.logit_output = output == LOGIT
    return loaded
