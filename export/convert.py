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

from runtime.engines.base import (LOGIT, ONNX, PROBABILITY, SEQUENCE_LENGTH_KEY, SEQUENCE_TABLE, TFLITE, VOCAB_SIZE_KEY,
                                  WORD_BIAS, WORD_TABLE)
from runtime.encoding.features import MULTI_HOT, NGRAM, NGRAM_SEQUENCE, SEQUENCE
from runtime.encoding.vocab import RESERVED

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
                     "TFLite, full integer: int8 weights, activations and output (the input stays int32 ids)"),
        # ONNX Runtime's ReduceSum adds a batch of rows in another order than a single row,
        # so the float forms run row by row to keep every answer independent of its batch.
        ArtifactSpec("onnx-float32", "model_float32.onnx", ONNX, "float32", "ONNX, float32", batch_invariant=False),
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
#
# Multi-hot and n-gram models have no "-compat" form: their word-id graphs have no
# FULLY_CONNECTED layer large enough to quantize, so it would be the same file as the dynamic
# int8 one, which tflite-runtime 2.14 loads.
_WORD_ID_ARTIFACTS = [n for n in ARTIFACTS if n != "tflite-dynamic-int8-compat"]
FAMILY_ARTIFACTS = {
    MULTI_HOT: _WORD_ID_ARTIFACTS,
    NGRAM: _WORD_ID_ARTIFACTS,
    NGRAM_SEQUENCE: _WORD_ID_ARTIFACTS,
    SEQUENCE: ["tflite-float32", "tflite-float16", "tflite-dynamic-int8", "tflite-dynamic-int8-compat",
                 "onnx-float32", "onnx-dynamic-int8"],
}


def output_of(spec: ArtifactSpec) -> str:
    """What ``spec``'s artifact outputs (the manifest's ``output``), for every feature family.

    Every artifact whose output is a float ends at the logit, and the runtime applies the
    sigmoid (``runtime.engines.base.sigmoid32``): a probability saturates in float32 (ONNX
    Runtime's Sigmoid moves in absolute steps of about 3e-8 near 0), so a very confident
    review's logit could not be recovered from it, and leaving one word out
    (``runtime.explain``) gave every word the same clipped contribution. The full-integer
    forms keep their 8-bit probability: a logit in 8 bits would step far more coarsely at
    the decision boundary than a probability does.

    For N > 2 labels the same holds column by column: the float forms end at the ``(batch, N)``
    logits (the runtime applies the softmax), the full-integer ones at the 8-bit softmax.
    """
    return PROBABILITY if spec.precision == "int8" else LOGIT


def portable_float(family: str, spec: ArtifactSpec) -> bool:
    """Whether ``spec``'s artifact of ``family`` is built to give the same bits on every CPU:
    its sum runs in one fixed order (and, like every float artifact, it ends at the logit:
    ``output_of``).

    The n-gram family's float TFLite forms are. Measured under emulation (``export.arm64``),
    their plain form differed between x86_64 and arm64 in the last bits (1 to 4 ulp): on
    ai-edge-litert through XNNPACK's LOGISTIC (a vectorized approximation), on tflite-runtime
    2.14 through its built-in SUM (vectorized differently per CPU). A cumulative sum's last
    element is the same sum added one id after the other (padding adds zeros at the end), and
    the engines' CUMSUM kernels add in that order. The full-integer form keeps SUM and LOGISTIC
    (integer sums and a lookup table are exact everywhere), and ONNX Runtime already agreed.
    """
    return family == NGRAM and spec.format == TFLITE and spec.precision != "int8"


def serving_function(model, family: str, input_size: int, batch: int | None = None, portable: bool = False,
                     logit: bool = False):
    """The model as a ``tf.function`` over the input the runtime feeds it.

    Sequence models take a ``(batch, input_size)`` int32 row of token ids, and their TFLite
    form a fixed batch of 1 (the LSTM's tensor lists need static shapes to lower to builtin
    ops). Multi-hot models take their word ids instead of the multi-hot row (see
    ``word_id_function``). ``logit``: the function ends at the logit, without the final
    sigmoid (see ``output_of``). ``portable``: an n-gram model's form that gives the same
    bits on every CPU (see ``portable_float``; it ends at the logit).
    """
    import tensorflow as tf

    if family == NGRAM:
        return ngram_function(model, batch, portable, logit)
    if family == NGRAM_SEQUENCE:
        return order_function(model, batch, logit)
    if logit:
        model = logit_model(model)
    if family == MULTI_HOT:
        return word_id_function(model, batch)

    @tf.function(input_signature=[tf.TensorSpec([batch, input_size], tf.int32, name="features")])
    def serve(features):
        return model(features, training=False)

    return serve


def logit_model(model):
    """The Keras model without its final sigmoid or softmax: the same layers, ending at the
    logit (two labels) or the ``(batch, N)`` logits (N > 2 labels).

    A model ending in a sigmoid or softmax ``Activation`` (the n-gram family; the seed MLP and
    LSTM for N > 2 labels) ends at that layer's input. A layered two-label model (multi-hot
    MLP, LSTM) ends in a ``Dense(1, activation="sigmoid")``: it is replaced by the same weights
    without the activation (likewise a ``Dense`` with a softmax).
    """
    import keras

    last = model.layers[-1]
    if keras.activations.serialize(getattr(last, "activation", None)) not in ("sigmoid", "softmax"):
        raise ValueError(f"{model.name} does not end in a sigmoid or softmax: cannot take its logit")
    if isinstance(last, keras.layers.Activation):
        return keras.Model(model.input, last.input, name=f"{model.name}_logit")
    if not isinstance(last, keras.layers.Dense):
        raise ValueError(f"{model.name} ends in a {type(last).__name__}: cannot take its logit")
    head = keras.layers.Dense(last.units, use_bias=last.use_bias, name="logit")
    out = keras.Model(model.input, head(last.input), name=f"{model.name}_logit")
    head.set_weights(last.get_weights())
    return out


def word_id_function(model, batch: int | None = None):
    """A multi-hot model over the ids of its ones: ``(batch, n)`` int32, padded with id 0.

    ``multi_hot @ W`` is the sum of the rows of ``W`` at the ids that are set, so the first
    Dense layer becomes a gather and a sum: the same function, with work proportional to the
    review's distinct words instead of the vocabulary. Rows of the reserved ids (never set in
    multi-hot) are zeroed, which makes id 0 a neutral padding. The table is named
    ``WORD_TABLE``: its rows are how a TFLite artifact records the vocabulary size it indexes.
    """
    import keras
    import tensorflow as tf

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    first, rest = layers[0], layers[1:]
    if not isinstance(first, keras.layers.Dense) or not first.use_bias:
        raise ValueError(f"a multi-hot model must start with a Dense layer with bias, not {type(first).__name__}")
    kernel = np.array(first.kernel.numpy(), dtype=np.float32)
    kernel[: len(RESERVED)] = 0.0
    bias = np.array(first.bias.numpy(), dtype=np.float32)

    @tf.function(input_signature=[tf.TensorSpec([batch, None], tf.int32, name="ids")])
    def serve(ids):
        # Constants made inside the function: captured ones would become extra graph inputs.
        table = tf.constant(kernel, name=WORD_TABLE)
        h = first.activation(tf.reduce_sum(tf.gather(table, ids), axis=1) + tf.constant(bias))
        for layer in rest:
            h = layer(h, training=False)
        return h

    return serve


def _served_table(bag) -> tuple[np.ndarray, np.ndarray]:
    """An ``NgramBag``'s folded table as ``(rows, columns)`` float32 with zero reserved rows,
    and its ``(columns,)`` float32 bias (one column for two labels)."""
    table, bias = bag.table()
    if table.ndim == 1:
        table = table.reshape(-1, 1)
    table[: len(RESERVED)] = 0.0
    return table, np.asarray(bias, np.float32).reshape(-1)


def ngram_function(model, batch: int | None = None, portable: bool = False, logit: bool = False):
    """An n-gram model as a gather, a sum and a sigmoid over its ids (padded with 0); with
    ``logit``, no sigmoid; with ``portable``, a cumulative sum's last element and no sigmoid
    (see ``portable_float``).

    The Naive-Bayes ratios and the learned weights are folded into one table, named
    ``WORD_TABLE`` like the multi-hot one, whose reserved rows are zero; the bias is named
    ``WORD_BIAS``. Explanations read both from the artifact. Two labels: a ``(rows, 1)`` table
    and one bias, ending at the ``(batch, 1)`` logit or probability. N > 2 labels: a
    ``(rows, N)`` table and ``(N,)`` bias, ending at the ``(batch, N)`` logits or their softmax.
    """
    import tensorflow as tf

    from train.ngram_model import bag_of

    table, bias = _served_table(bag_of(model))
    squash = tf.sigmoid if table.shape[1] == 1 else tf.nn.softmax

    @tf.function(input_signature=[tf.TensorSpec([batch, None], tf.int32, name="ids")])
    def serve(ids):
        weights = tf.gather(tf.constant(table, name=WORD_TABLE), ids)
        if portable:
            return tf.cumsum(weights, axis=1)[:, -1] + tf.constant(bias, name=WORD_BIAS)
        total = tf.reduce_sum(weights, axis=1) + tf.constant(bias, name=WORD_BIAS)
        return total if logit else squash(total)

    return serve


def order_function(model, batch: int | None = None, logit: bool = False):
    """An order-aware model (``train.order_model``) over its ``NgramSequenceEncoder`` rows.

    The same arithmetic as the Keras model, from its weights as constants: the n-gram part as
    ``ngram_function`` (table ``WORD_TABLE``, bias ``WORD_BIAS``) on the columns after
    ``length``; each branch on the first ``length`` columns: a gather from its token table, per
    window width a zero pad on the right, a convolution and a ReLU, the max and the mean over
    the windows that start on a token (the mask and the reciprocal of the token count are
    gathered from small tables: the full-int8 TFLite converter handles gathers, and the int8
    ONNX forms leave these two in float, see ``_EXACT_TABLES``), and
    its dense head (already weighted); the branches' logits are added to the n-gram part's
    in order, as the Keras model's ``Add`` does. ``logit``: no final sigmoid or softmax.
    """
    import tensorflow as tf

    from train.order_model import CONV_LAYER, HEAD_LAYER, TOKEN_TABLE, parts_of

    bag, branches = parts_of(model)
    table, bias = _served_table(bag)
    length = int(branches[0].inputs[0].shape[1])
    parts = []  # per branch: its token table, its convolutions (width, kernel, bias), its head
    for branch in branches:
        convs = [(layer.kernel_size[0], *(np.asarray(w, np.float32) for w in layer.get_weights()))
                 for layer in branch.layers if layer.name.startswith(CONV_LAYER)]
        head = [np.asarray(w, np.float32) for w in branch.get_layer(HEAD_LAYER).get_weights()]
        parts.append((np.asarray(branch.get_layer(TOKEN_TABLE).get_weights()[0], np.float32), convs, head))
    mask_table = np.ones((parts[0][0].shape[0], 1), np.float32)
    mask_table[0] = 0.0  # padding
    reciprocal = (1.0 / np.maximum(np.arange(length + 1), 1)).astype(np.float32).reshape(-1, 1)
    squash = tf.sigmoid if table.shape[1] == 1 else tf.nn.softmax

    @tf.function(input_signature=[tf.TensorSpec([batch, None], tf.int32, name="ids")])
    def serve(ids):
        tokens, grams = ids[:, :length], ids[:, length:]
        z = tf.reduce_sum(tf.gather(tf.constant(table, name=WORD_TABLE), grams), axis=1) \
            + tf.constant(bias, name=WORD_BIAS)
        mask = tf.gather(tf.constant(mask_table, name="token_mask"), tokens)
        count = tf.reduce_sum(tf.cast(tf.not_equal(tokens, 0), tf.int32), axis=1)
        scale = tf.gather(tf.constant(reciprocal, name=SEQUENCE_TABLE), count)
        for i, (tokens_table, convs, (head_kernel, head_bias)) in enumerate(parts):
            x = tf.gather(tf.constant(tokens_table, name=f"{TOKEN_TABLE}_{i}"), tokens)
            pooled = []
            for width, kernel, conv_bias in convs:
                padded = tf.pad(x, [[0, 0], [0, width - 1], [0, 0]]) if width > 1 else x
                a = tf.nn.relu(tf.nn.conv1d(padded, tf.constant(kernel), 1, "VALID") + tf.constant(conv_bias)) * mask
                pooled += [tf.reduce_max(a, axis=1), tf.reduce_sum(a, axis=1) * scale]
            h = tf.concat(pooled, axis=1)
            z = z + (tf.matmul(h, tf.constant(head_kernel)) + tf.constant(head_bias))
        return z if logit else squash(z)

    return serve


def frozen_function(serve):
    """The serving function with its variables folded into constants.

    TF 2.21 keeps Keras 3 variables as TFLite resource variables otherwise, and the
    full-integer calibrator then fails on READ_VARIABLE; a frozen graph converts cleanly.
    """
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    return convert_variables_to_constants_v2(serve.get_concrete_function())


def to_tflite(frozen, precision: str, calibration: np.ndarray | None, per_tensor: bool = False) -> bytes:
    """TFLite flatbuffer bytes for ``precision`` (calibration: model inputs of training reviews)."""
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
        converter.inference_output_type = tf.int8  # the input stays int32 word ids
    elif precision != "float32":
        raise ValueError(f"unknown TFLite precision {precision!r}")
    return converter.convert()


def to_onnx(serve, path: Path, vocab_size: int, output: str = PROBABILITY, sequence_length: int | None = None) -> None:
    """A float32 ONNX model through tf2onnx, its output named ``output`` (what it is);
    ``sequence_length``: an order-aware model's token columns, recorded in its metadata."""
    import tf2onnx

    tf2onnx.convert.from_function(
        serve,
        input_signature=serve.input_signature,
        opset=ONNX_OPSET,
        output_path=str(path),
    )
    _finish_onnx(path, vocab_size, rename_output=output, sequence_length=sequence_length)


def _finish_onnx(path: Path, vocab_size: int, rename_output: str | None = None,
                 sequence_length: int | None = None) -> None:
    """Name the output, and record the vocabulary size the model's ids index.

    ONNX Runtime does not show initializer shapes, so the runtime reads the size from the
    model's metadata to check it against the bundle's vocabulary.
    """
    import onnx

    proto = onnx.load(str(path))
    if rename_output:
        old = proto.graph.output[0].name
        for node in proto.graph.node:
            node.output[:] = [rename_output if o == old else o for o in node.output]
        proto.graph.output[0].name = rename_output
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = VOCAB_SIZE_KEY, str(vocab_size)
    if sequence_length is not None:
        entry = proto.metadata_props.add()
        entry.key, entry.value = SEQUENCE_LENGTH_KEY, str(sequence_length)
    onnx.save(proto, str(path))


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over training features, one row a call."""

    def __init__(self, features: np.ndarray, input_name: str):
        self._rows = iter(features)
        self._name = input_name

    def get_next(self):
        row = next(self._rows, None)
        return None if row is None else {self._name: row[None, :]}


def quantize_onnx(float_path: Path, out_path: Path, precision: str, calibration: np.ndarray,
                  vocab_size: int, sequence_length: int | None = None) -> None:
    """int8 ONNX from the float32 one (see ``_quantize_onnx``), with the vocabulary size (and an
    order-aware model's token columns) recorded."""
    _quantize_onnx(float_path, out_path, precision, calibration)
    _finish_onnx(out_path, vocab_size, sequence_length=sequence_length)


# Small tables that must stay exact: the order-aware model's token mask (0/1) and the
# reciprocals of the token count (one 8-bit scale would move 1/100 by a fifth).
_EXACT_TABLES = (SEQUENCE_TABLE, "token_mask")


def _exact_nodes(path: Path) -> list[str]:
    """The Gather nodes of ``path`` that read an ``_EXACT_TABLES`` table: never quantized."""
    import onnx

    graph = onnx.load(str(path)).graph
    return [n.name for n in graph.node
            if n.op_type == "Gather" and any(t in i for i in n.input for t in _EXACT_TABLES)]


def _quantize_onnx(float_path: Path, out_path: Path, precision: str, calibration: np.ndarray) -> None:
    """int8 ONNX from the float32 one: dynamic, or static QDQ calibrated on ``calibration``."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if precision == "dynamic-int8":
        # uint8 per-channel weights: signed weights lost label agreement here (0.9875 on a
        # small model) because x86 u8*s8 kernels without VNNI can saturate; uint8 kept 0.999.
        quantize_dynamic(str(float_path), str(out_path), weight_type=QuantType.QUInt8, per_channel=True,
                         nodes_to_exclude=_exact_nodes(float_path))
        return
    if precision != "int8":
        raise ValueError(f"unknown ONNX precision {precision!r}")
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out_path),
            _Calibration(calibration, input_name(float_path)),
            quant_format=QuantFormat.QDQ,
            # uint8 activations and weights: with int8 ones x86 kernels saturated and label
            # agreement fell to 0.984 on a small model (0.993 with uint8; 0.9984 full model).
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QUInt8,
            per_channel=True,
            nodes_to_exclude=_exact_nodes(prepared),
        )


def input_name(path: Path) -> str:
    import onnx

    return onnx.load(str(path)).graph.input[0].name
