"""TFLite artifacts on ai-edge-litert or tflite-runtime, interpreters kept per thread."""

from __future__ import annotations

import importlib
import threading
from pathlib import Path

import numpy as np

from runtime.engines.base import (ENGINES, MIN_WIDTH, SEQUENCE_TABLE, WORD_BIAS, WORD_TABLE, Backend, EngineError,
                                  engine_threads, engine_version)
from runtime.probability import sigmoid32, softmax32
from runtime.engines.stderr import _first_interpreter_quietly


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

    def __init__(self, path: Path, engine: str, num_threads: int | None = None, batch_invariant: bool = True,
                 content: bytes | None = None):
        self.engine = engine
        self.batch_invariant = batch_invariant
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
        self.sequence_length = _sequence_length(interp) if self.word_ids else None
        self.length = None if self.word_ids else int(inp["shape"][-1])
        shape = list(out["shape"])
        self.classes = int(shape[-1]) if len(shape) == 2 and shape[-1] > 1 else 1  # (batch, N): N labels
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

    def _probabilities(self, out: np.ndarray) -> np.ndarray:
        """An N-label artifact's one row of outputs as its (N,) float32 probabilities."""
        if self._out_quantized:
            return ((out.astype(np.float32) - self._out_zero) * np.float32(self._out_scale)).astype(np.float32)
        return softmax32(out) if self.logit_output else np.array(out, np.float32)

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
        if self.classes > 1:
            return self._probabilities(slot.out_view()[0])
        return self._probability(slot.out_view()[0, 0])

    def _outputs(self, batch: np.ndarray) -> np.ndarray:
        slot = self._slot("batch", batch.shape)
        slot.interp.set_tensor(slot.inp, batch)
        slot.interp.invoke()
        out = slot.interp.get_tensor(slot.out)
        out = out.reshape(-1) if self.classes == 1 else out.reshape(len(batch), self.classes)
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


def _rows(interp, name: str) -> int | None:
    """Rows of the tensor export named ``name``, or None if there is none."""
    for tensor in interp.get_tensor_details():
        if tensor["name"] == name:
            return int(tensor["shape"][0])
    return None


def _sequence_length(interp) -> int | None:
    """The token columns an order-aware model reads: the rows of its ``SEQUENCE_TABLE``, less one."""
    rows = _rows(interp, SEQUENCE_TABLE)
    return None if rows is None else rows - 1


def _table_rows(interp, path: str) -> int:
    """Rows of the tensor export named ``WORD_TABLE``: the vocabulary size a word-id model indexes."""
    rows = _rows(interp, WORD_TABLE)
    if rows is not None:
        return rows
    raise EngineError(f"{path}: a word-id model without a {WORD_TABLE!r} tensor (exported by an older "
                      f"version of this project?); export it again")
