"""ONNX artifacts on onnxruntime: one thread-safe session, shared by every thread."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.engines.base import (SEQUENCE_LENGTH_KEY, VOCAB_SIZE_KEY, WORD_BIAS, WORD_TABLE, Backend, EngineError,
                                  engine_threads)
from runtime.probability import sigmoid32, softmax32


class OnnxBackend(Backend):
    engine = "onnxruntime"

    def __init__(self, path: Path, engine: str = "onnxruntime", num_threads: int | None = None,
                 batch_invariant: bool = True, content: bytes | None = None):
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
        length = self._session.get_modelmeta().custom_metadata_map.get(SEQUENCE_LENGTH_KEY)
        self.sequence_length = int(length) if length is not None and length.isdigit() else None
        self.length = None if self.word_ids else int(inp.shape[-1])
        shape = self._session.get_outputs()[0].shape
        last = shape[-1] if len(shape) == 2 else 1
        self.classes = last if isinstance(last, int) and last > 1 else 1  # (batch, N): N labels
        self._empty = np.zeros((1, 1), dtype=np.int32)
        self.path = str(path)

    def _constants(self) -> dict:
        """Read from the file: tf2onnx names a constant ``NAME:0``; ONNX Runtime's quantizer
        stores it as ``NAME:0_quantized`` with ``_scale`` and ``_zero_point`` beside it."""
        from runtime.engines.onnx_tensors import OnnxFormatError, initializers

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

    def run_one(self, row: np.ndarray) -> float | np.ndarray:
        batch = row.reshape(1, -1) if len(row) else self._empty
        if self.classes > 1:
            out = self._session.run(None, {self._input: batch})[0][0]
            return softmax32(out) if self.logit_output else np.array(out, np.float32)
        out = float(self._session.run(None, {self._input: batch})[0][0, 0])
        return sigmoid32(out) if self.logit_output else out

    def _outputs(self, batch: np.ndarray) -> np.ndarray:
        out = self._session.run(None, {self._input: batch})[0]
        return out.reshape(-1) if self.classes == 1 else out.reshape(len(batch), self.classes)
