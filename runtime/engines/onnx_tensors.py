"""Named constant tensors (initializers) of an ONNX model file, read with numpy alone.

ONNX Runtime runs a model but does not hand out its weights, and the ``onnx`` package is
not a runtime dependency. A linear model's explanation needs two of its constants (the
word table and the bias), so this reads them from the file's protobuf encoding directly:
``ModelProto.graph`` (field 7) -> ``GraphProto.initializer`` (field 5) -> ``TensorProto``
(dims 1, data_type 2, float_data 4, int32_data 5, name 8, raw_data 9, data_location 14).
Only the wire format's four kinds of field are involved; anything else is an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from runtime.errors import Error

# TensorProto.DataType -> numpy dtype, for the types the exporter writes
_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64, 10: np.float16}


class OnnxFormatError(Error, ValueError):
    """The file is not an ONNX model this reader understands."""


def _varint(data: memoryview, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise OnnxFormatError("truncated or overlong varint")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _fields(data: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) of one message: an int for varints, bytes for the rest."""
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 2:
            size, i = _varint(data, i)
            if i + size > len(data):
                raise OnnxFormatError("a field runs past the end of its message")
            value, i = data[i : i + size], i + size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, i = data[i : i + width], i + width
        else:
            raise OnnxFormatError(f"unsupported protobuf wire type {wire}")
        yield number, value


def _packed_varints(value: int | memoryview) -> list[int]:
    if isinstance(value, int):
        return [value]
    out, i = [], 0
    while i < len(value):
        v, i = _varint(value, i)
        out.append(v)
    return out


def _tensor(message: memoryview) -> tuple[str, np.ndarray]:
    dims: list[int] = []
    name, dtype, raw, floats, ints = "", None, None, [], []
    for number, value in _fields(message):
        if number == 1:
            dims.extend(_packed_varints(value))
        elif number == 2:
            dtype = value
        elif number == 4:
            floats.append(np.frombuffer(value, "<f4"))
        elif number == 5:
            ints.extend(v - (1 << 64) if v >= 1 << 63 else v for v in _packed_varints(value))
        elif number == 8:
            name = bytes(value).decode("utf-8")
        elif number == 9:
            raw = value
        elif number == 14 and value == 1:
            raise OnnxFormatError(f"initializer {name!r} keeps its data in an external file")
    if dtype not in _DTYPES:
        raise OnnxFormatError(f"initializer {name!r} has unsupported data type {dtype}")
    np_dtype = np.dtype(_DTYPES[dtype]).newbyteorder("<")
    if raw is not None:
        array = np.frombuffer(raw, np_dtype).copy()
    elif floats:
        array = np.concatenate(floats).astype(np_dtype)
    else:
        array = np.array(ints, dtype=np.int64).astype(np_dtype)
    count = int(np.prod(dims)) if dims else 1
    if array.size != count:
        raise OnnxFormatError(f"initializer {name!r} holds {array.size} values for shape {dims}")
    return name, array.reshape(dims)


def initializers(path: str | Path, names: set[str]) -> dict[str, np.ndarray]:
    """The initializers of the ONNX model at ``path`` whose names are in ``names``."""
    data = memoryview(Path(path).read_bytes())
    found: dict[str, np.ndarray] = {}
    for number, graph in _fields(data):
        if number != 7 or isinstance(graph, int):
            continue
        for field, message in _fields(graph):
            if field != 5 or isinstance(message, int):
                continue
            name = _name(message)
            if name in names:
                found[name] = _tensor(message)[1]
    return found


def _name(message: memoryview) -> str:
    for number, value in _fields(message):
        if number == 8 and not isinstance(value, int):
            return bytes(value).decode("utf-8")
    return ""
