"""Read the float initializers of an ONNX model with the standard library only.

An ONNX file is one protobuf message (ModelProto). The few fields needed to pull the weights out
are decoded here by hand, so that extracting VGG-16's convolutions needs neither the `onnx`
package (whose wheels pin numpy versions that clash with Blender's) nor protobuf:

    ModelProto  7: graph (GraphProto)
    GraphProto  5: initializer (TensorProto, repeated)
    TensorProto 1: dims (int64, packed or not)   2: data_type (int32)   8: name (string)
                4: float_data (packed float)     9: raw_data (bytes, little endian)

Only FLOAT (1) and FLOAT16 (10) tensors are returned; others are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FLOAT, FLOAT16 = 1, 10
_DTYPES = {FLOAT: np.dtype("<f4"), FLOAT16: np.dtype("<f2")}


class OnnxFormatError(ValueError):
    """The bytes are not a protobuf ONNX model this reader understands."""


@dataclass(frozen=True)
class _Field:
    number: int
    wire: int
    value: int | memoryview  # varint / fixed value, or the bytes of a length-delimited field


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise OnnxFormatError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise OnnxFormatError("varint longer than 10 bytes")


def _fields(data: memoryview):
    """Yield the top-level fields of one protobuf message."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = int.from_bytes(data[pos : pos + 8], "little"), pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise OnnxFormatError("length-delimited field runs past the end")
            value, pos = data[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = int.from_bytes(data[pos : pos + 4], "little"), pos + 4
        else:
            raise OnnxFormatError(f"unsupported protobuf wire type {wire}")
        yield _Field(number, wire, value)


def _packed_varints(data: memoryview) -> list[int]:
    values, pos = [], 0
    while pos < len(data):
        value, pos = _varint(data, pos)
        values.append(value)
    return values


def _tensor(message: memoryview) -> tuple[str, np.ndarray] | None:
    dims: list[int] = []
    dtype = name = None
    raw = floats = None
    for field in _fields(message):
        if field.number == 1:
            dims.extend(_packed_varints(field.value) if field.wire == 2 else [field.value])
        elif field.number == 2 and field.wire == 0:
            dtype = field.value
        elif field.number == 8 and field.wire == 2:
            name = bytes(field.value).decode("utf-8")
        elif field.number == 9 and field.wire == 2:
            raw = field.value
        elif field.number == 4 and field.wire == 2:
            floats = field.value
    if name is None or dtype not in _DTYPES:
        return None
    if raw is not None:
        array = np.frombuffer(raw, dtype=_DTYPES[dtype])
    elif floats is not None and dtype == FLOAT:
        array = np.frombuffer(floats, dtype="<f4")
    else:
        return None
    count = int(np.prod(dims)) if dims else 1
    if array.size != count:
        raise OnnxFormatError(f"initializer '{name}' holds {array.size} values for shape {tuple(dims)}")
    return name, array.reshape(dims).astype(np.float32)


def read_initializers(data: bytes, wanted: set[str] | None = None) -> dict[str, np.ndarray]:
    """Float initializers {name: float32 array} of an ONNX model's graph (only `wanted` names if given)."""
    view = memoryview(data)
    graphs = [f.value for f in _fields(view) if f.number == 7 and f.wire == 2]
    if not graphs:
        raise OnnxFormatError("no graph in the model")
    out: dict[str, np.ndarray] = {}
    for field in _fields(graphs[0]):
        if field.number != 5 or field.wire != 2:
            continue
        if wanted is not None and not _names_wanted(field.value, wanted):
            continue
        tensor = _tensor(field.value)
        if tensor is not None:
            out[tensor[0]] = tensor[1]
    return out


def _names_wanted(message: memoryview, wanted: set[str]) -> bool:
    """Cheap pre-check of a tensor's name before decoding its (large) data."""
    for field in _fields(message):
        if field.number == 8 and field.wire == 2:
            return bytes(field.value).decode("utf-8") in wanted
    return False


def encode_initializers(tensors: dict[str, np.ndarray]) -> bytes:
    """A minimal ONNX ModelProto holding `tensors` as float initializers (for tests and fixtures)."""

    def key(number: int, wire: int) -> bytes:
        return _encode_varint(number << 3 | wire)

    def delimited(number: int, payload: bytes) -> bytes:
        return key(number, 2) + _encode_varint(len(payload)) + payload

    graph = b""
    for name, array in tensors.items():
        array = np.ascontiguousarray(array, dtype="<f4")
        dims = b"".join(_encode_varint(d) for d in array.shape)
        tensor = delimited(1, dims) + key(2, 0) + _encode_varint(FLOAT) + delimited(8, name.encode()) + delimited(9, array.tobytes())
        graph += delimited(5, tensor)
    return key(1, 0) + _encode_varint(7) + delimited(7, graph)


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


