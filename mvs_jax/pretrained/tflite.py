"""Read the operators and constant tensors of a TFLite model (`.tflite`) without TensorFlow.

Table and field indices follow TensorFlow Lite's `schema.fbs` (schema version 3, which every
TFLite file since 2018 uses and which only ever gains fields at the end). Quantized tensors are
dequantized as (q - zero_point) * scale, per tensor or per channel along `quantized_dimension`.
"""

import dataclasses
from pathlib import Path

import numpy as np

from mvs_jax.pretrained import flatbuffer

FILE_IDENTIFIER = b"TFL3"

# BuiltinOperator values used by MobileNet v1 models (schema.fbs).
BUILTIN_OPERATORS = {
    1: "AVERAGE_POOL_2D", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D", 6: "DEQUANTIZE",
    9: "FULLY_CONNECTED", 19: "RELU", 21: "RELU6", 22: "RESHAPE", 25: "SOFTMAX", 40: "MEAN",
    43: "SQUEEZE",
    114: "QUANTIZE",
}
# TensorType values with a NumPy equivalent.
TENSOR_TYPES = {
    0: np.dtype("<f4"), 1: np.dtype("<f2"), 2: np.dtype("<i4"), 3: np.dtype("u1"),
    4: np.dtype("<i8"), 6: np.dtype("?"), 7: np.dtype("<i2"), 9: np.dtype("i1"),
    10: np.dtype("<f8"),
}
PADDINGS = {0: "SAME", 1: "VALID"}
ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH"}


class TFLiteError(ValueError):
    """The file is not a TFLite model that this reader can decode."""


@dataclasses.dataclass(frozen=True)
class Tensor:
    """One tensor of the model's main subgraph; `data` is None for activations."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    data: np.ndarray | None  # Dequantized to float32 when `quantized`; raw values otherwise.
    quantized: bool
    scale: np.ndarray  # Quantization scales (empty for float tensors), also for activations.
    zero_point: np.ndarray


@dataclasses.dataclass(frozen=True)
class Operator:
    """One operator: its builtin name, input and output tensor indices, and parsed options."""

    index: int
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict


def _operator_names(model: flatbuffer.Table) -> list[str]:
    names = []
    for code in model.tables(1):  # Model.operator_codes
        custom = code.string(1)
        # builtin_code (field 3) replaced the int8 deprecated_builtin_code (field 0) when
        # operator numbers passed 127; readers take the larger of the two.
        builtin = max(code.scalar(0, "<b"), code.scalar(3, "<i"))
        names.append(f"CUSTOM:{custom}" if custom else
                     BUILTIN_OPERATORS.get(builtin, f"BUILTIN_{builtin}"))
    return names


def _conv_options(name: str, options: flatbuffer.Table | None) -> dict:
    """Parse Conv2DOptions or DepthwiseConv2DOptions (other operators get an empty dict)."""
    if options is None or name not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        return {}
    activation_field = 3 if name == "CONV_2D" else 4
    dilation_fields = (4, 5) if name == "CONV_2D" else (5, 6)
    parsed = {
        "padding": PADDINGS.get(options.scalar(0, "<b"), "UNKNOWN"),
        "strides": (options.scalar(2, "<i"), options.scalar(1, "<i")),
        "activation": ACTIVATIONS.get(options.scalar(activation_field, "<b"), "UNKNOWN"),
        "dilation": (options.scalar(dilation_fields[1], "<i", 1),
                     options.scalar(dilation_fields[0], "<i", 1)),
    }
    if name == "DEPTHWISE_CONV_2D":
        parsed["depth_multiplier"] = options.scalar(3, "<i")
    return parsed


def _dequantize(raw: np.ndarray, quantization: flatbuffer.Table | None,
                name: str) -> tuple[np.ndarray, bool]:
    scale = quantization.array(2, "<f4") if quantization is not None else np.zeros(0)
    if raw.dtype.kind == "f" or scale.size == 0:
        return raw, False
    zero_point = quantization.array(3, "<i8")
    if zero_point.size == 0:
        zero_point = np.zeros_like(scale, np.int64)
    if zero_point.size != scale.size:
        raise TFLiteError(f"tensor {name!r}: {scale.size} scales but {zero_point.size} zero points")
    values = raw.astype(np.float64)
    if scale.size > 1:
        axis = quantization.scalar(6, "<i")  # quantized_dimension
        if axis >= raw.ndim or raw.shape[axis] != scale.size:
            raise TFLiteError(
                f"tensor {name!r} of shape {raw.shape} has {scale.size} per-channel scales "
                f"along dimension {axis}")
        broadcast = [1] * raw.ndim
        broadcast[axis] = scale.size
        scale = scale.reshape(broadcast)
        zero_point = zero_point.reshape(broadcast)
    return ((values - zero_point) * scale.astype(np.float64)).astype(np.float32), True


def _read_tensor(index: int, table: flatbuffer.Table, buffers: list[flatbuffer.Table],
                 data: memoryview) -> Tensor:
    name = table.string(3) or f"tensor_{index}"
    shape = tuple(int(d) for d in table.array(0, "<i4"))
    type_enum = table.scalar(1, "<b")
    dtype = TENSOR_TYPES.get(type_enum)
    buffer_index = table.scalar(2, "<I")
    if buffer_index >= len(buffers):
        raise TFLiteError(f"tensor {name!r} refers to buffer {buffer_index} of {len(buffers)}")

    buffer = buffers[buffer_index]
    raw_bytes = buffer.array(0, "u1")
    offset = buffer.scalar(1, "<Q")
    if raw_bytes.size == 0 and offset > 1:
        # Models over 2 GB keep buffers after the FlatBuffer, addressed by file offset and size.
        size = buffer.scalar(2, "<Q")
        raw_bytes = np.frombuffer(data, np.uint8, count=size, offset=offset)
    quantization = table.table(4)
    scale = quantization.array(2, "<f4") if quantization is not None else np.zeros(0, "<f4")
    zero_point = (quantization.array(3, "<i8") if quantization is not None
                  else np.zeros(0, "<i8"))
    if raw_bytes.size == 0 or dtype is None:
        return Tensor(index, name, shape, dtype, None, False, scale, zero_point)

    count = int(np.prod(shape, dtype=np.int64))
    if raw_bytes.size != count * dtype.itemsize:
        raise TFLiteError(
            f"tensor {name!r}: buffer has {raw_bytes.size} bytes, shape {shape} of {dtype} "
            f"needs {count * dtype.itemsize}")
    raw = raw_bytes.view(dtype).reshape(shape)
    values, quantized = _dequantize(raw, quantization, name)
    return Tensor(index, name, shape, dtype, values, quantized, scale, zero_point)


def read_model(path: str | Path) -> tuple[list[Tensor], list[Operator]]:
    """Return the tensors and operators (in execution order) of the model's first subgraph."""
    data = memoryview(Path(path).read_bytes())
    if len(data) < 8 or bytes(data[4:8]) != FILE_IDENTIFIER:
        raise TFLiteError(
            f"{path} is not a TFLite model: bytes 4..8 are {bytes(data[4:8])!r}, expected the "
            f"file identifier {FILE_IDENTIFIER!r}.")
    try:
        model = flatbuffer.root_table(data)
        subgraphs = model.tables(2)
        if not subgraphs:
            raise TFLiteError(f"{path} has no subgraph")
        subgraph = subgraphs[0]
        buffers = model.tables(4)
        tensors = [_read_tensor(i, table, buffers, data)
                   for i, table in enumerate(subgraph.tables(0))]
        names = _operator_names(model)
        operators = []
        for i, table in enumerate(subgraph.tables(3)):
            opcode = table.scalar(0, "<I")
            if opcode >= len(names):
                raise TFLiteError(f"operator {i} has opcode index {opcode} of {len(names)}")
            operators.append(Operator(
                i, names[opcode], tuple(int(t) for t in table.array(1, "<i4")),
                tuple(int(t) for t in table.array(2, "<i4")),
                _conv_options(names[opcode], table.table(4))))
    except flatbuffer.FlatBufferError as error:
        raise TFLiteError(f"{path} is a corrupt TFLite model: {error}") from error
    return tensors, operators
