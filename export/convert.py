"""Conversions of a Keras model to TFLite and ONNX artifacts, float and quantized.

Each ``ArtifactSpec`` names a file, a format and a precision; ``convert`` writes it. The
Keras 3 model is wrapped in a ``tf.function`` with an explicit input signature, which both
the TFLite converter and tf2onnx accept (``tf2onnx.convert.from_keras`` fails on Keras 3).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.backends import ONNX, TFLITE

ONNX_OPSET = 17


@dataclass(frozen=True)
class ArtifactSpec:
    name: str
    file: str
    format: str
    precision: str
    description: str
    batch_invariant: bool = True

    @property
    def per_tensor(self) -> bool:
        return self.name.endswith("-compat")

    @property
    def is_float32(self) -> bool:
        return self.precision == "float32"


ARTIFACTS = {
    a.name: a
    for a in (
        ArtifactSpec("tflite-float32", "model_float32.tflite", TFLITE, "float32", "TFLite, float32"),
        ArtifactSpec("tflite-float16", "model_float16.tflite", TFLITE, "float16", "TFLite, float16 weights"),
        ArtifactSpec("tflite-dynamic-int8", "model_dynamic_int8.tflite", TFLITE, "dynamic-int8",
                     "TFLite, int8 weights, float activations (dynamic range)"),
        ArtifactSpec("tflite-dynamic-int8-compat", "model_dynamic_int8_compat.tflite", TFLITE, "dynamic-int8",
                     "TFLite, int8 per-tensor weights (dynamic range) for tflite-runtime 2.14"),
        ArtifactSpec("tflite-int8", "model_int8.tflite", TFLITE, "int8",
                     "TFLite, full integer: int8 weights, activations, input and output"),
        ArtifactSpec("onnx-float32", "model_float32.onnx", ONNX, "float32", "ONNX, float32"),
        ArtifactSpec("onnx-dynamic-int8", "model_dynamic_int8.onnx", ONNX, "dynamic-int8",
                     "ONNX, uint8 per-channel weights, activations quantized at run time (one scale per batch)",
                     batch_invariant=False),
        ArtifactSpec("onnx-int8", "model_int8.onnx", ONNX, "int8",
                     "ONNX, static 8-bit QDQ (uint8), calibrated on training reviews"),
    )
}


# Which artifacts each feature family gets. Sequence (LSTM) models have no full-integer
# forms: the TFLite calibrator does not finish on the LSTM's WHILE loop, and ONNX static
# quantization does not reach inside the Loop body.
FAMILY_ARTIFACTS = {
    "multi_hot": list(ARTIFACTS),
    "sequence": ["tflite-float32", "tflite-float16", "tflite-dynamic-int8", "tflite-dynamic-int8-compat",
                 "onnx-float32", "onnx-dynamic-int8"],
}


def serving_function(model, input_size: int, dtype: str = "float32", batch: int | None = None):
    """The model as a ``tf.function`` over a ``(batch, input_size)`` input.

    Multi-hot models take float32; sequence models int32 token ids, and their TFLite form a
    fixed batch of 1 (the LSTM's tensor lists need static shapes to lower to builtin ops).
    """
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([batch, input_size], getattr(tf, dtype), name="features")])
    def serve(features):
        return model(features, training=False)

    return serve


def frozen_function(model, input_size: int, dtype: str = "float32", batch: int | None = None):
    """The serving function with its variables folded into constants.

    TF 2.21 keeps Keras 3 variables as TFLite resource variables otherwise, and the
    full-integer calibrator then fails on READ_VARIABLE; a frozen graph converts cleanly.
    """
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    return convert_variables_to_constants_v2(serving_function(model, input_size, dtype, batch).get_concrete_function())


def to_tflite(frozen, precision: str, calibration: np.ndarray, per_tensor: bool = False) -> bytes:
    """TFLite flatbuffer bytes for ``precision`` (calibration: float32 training features)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    if precision == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "dynamic-int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        # Per-channel dense weights make FULLY_CONNECTED version 12, which tflite-runtime
        # 2.14 (its last release) cannot load; per-tensor weights keep an older version.
        converter._experimental_disable_per_channel_quantization_for_dense_layers = per_tensor
    elif precision == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([calibration[i : i + 1]] for i in range(len(calibration)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    elif precision != "float32":
        raise ValueError(f"unknown TFLite precision {precision!r}")
    return converter.convert()


def to_onnx(model, input_size: int, path: Path, dtype: str = "float32") -> None:
    """A float32 ONNX model through tf2onnx, with input ``features`` and output ``probability``."""
    import tf2onnx

    serve = serving_function(model, input_size, dtype)
    tf2onnx.convert.from_function(
        serve,
        input_signature=serve.input_signature,
        opset=ONNX_OPSET,
        output_path=str(path),
    )
    _rename_output(path, "probability")


def _rename_output(path: Path, name: str) -> None:
    import onnx

    proto = onnx.load(str(path))
    old = proto.graph.output[0].name
    for node in proto.graph.node:
        node.output[:] = [name if o == old else o for o in node.output]
    proto.graph.output[0].name = name
    onnx.save(proto, str(path))


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over training features, one row a call."""

    def __init__(self, features: np.ndarray, input_name: str):
        self._rows = iter(features)
        self._name = input_name

    def get_next(self):
        row = next(self._rows, None)
        return None if row is None else {self._name: row[None, :]}


def quantize_onnx(float_path: Path, out_path: Path, precision: str, calibration: np.ndarray) -> None:
    """int8 ONNX from the float32 one: dynamic, or static QDQ calibrated on ``calibration``."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if precision == "dynamic-int8":
        # uint8 per-channel weights: signed weights lost label agreement here (0.9875 on a
        # small model) because x86 u8*s8 kernels without VNNI can saturate; uint8 kept 0.999.
        quantize_dynamic(str(float_path), str(out_path), weight_type=QuantType.QUInt8, per_channel=True)
        return
    if precision != "int8":
        raise ValueError(f"unknown ONNX precision {precision!r}")
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out_path),
            _Calibration(calibration, "features"),
            quant_format=QuantFormat.QDQ,
            # uint8 activations and weights: with int8 ones x86 kernels saturated and label
            # agreement fell to 0.984 on a small model (0.993 with uint8; 0.9984 full model).
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QUInt8,
            per_channel=True,
        )
