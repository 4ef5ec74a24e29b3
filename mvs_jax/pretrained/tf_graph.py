"""Read the constant tensors of a TensorFlow frozen GraphDef (`.pb`) without TensorFlow.

Field numbers come from TensorFlow's `graph.proto` (GraphDef.node = 1), `node_def.proto`
(NodeDef.name = 1, op = 2, attr = 5), `attr_value.proto` (AttrValue.tensor = 8),
`tensor.proto` and `tensor_shape.proto`; these numbers are part of the serialized format and
have not changed since TensorFlow 1.0.
"""

import struct
from pathlib import Path

import numpy as np

from mvs_jax.pretrained import protobuf
from mvs_jax.pretrained.protobuf import FIXED32, FIXED64, LENGTH_DELIMITED, VARINT

# TensorFlow DataType enum values (types.proto) with a fixed-width NumPy equivalent.
TF_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),   # DT_FLOAT
    2: np.dtype("<f8"),   # DT_DOUBLE
    3: np.dtype("<i4"),   # DT_INT32
    4: np.dtype("u1"),    # DT_UINT8
    5: np.dtype("<i2"),   # DT_INT16
    6: np.dtype("i1"),    # DT_INT8
    9: np.dtype("<i8"),   # DT_INT64
    10: np.dtype("?"),    # DT_BOOL
    19: np.dtype("<f2"),  # DT_HALF
}


class GraphDefError(ValueError):
    """The file is not a GraphDef that this reader can decode."""


def decode_shape(message: memoryview) -> tuple[int, ...]:
    """Decode a TensorShapeProto into a tuple; reject unknown ranks and dimensions."""
    dims = []
    for number, wire_type, value in protobuf.iter_fields(message):
        if number == 2 and wire_type == LENGTH_DELIMITED:  # TensorShapeProto.dim
            size = 0
            for dim_number, dim_wire, dim_value in protobuf.iter_fields(value):
                if dim_number == 1 and dim_wire == VARINT:  # Dim.size
                    size = protobuf.to_signed64(dim_value)
            dims.append(size)
        elif number == 3 and wire_type == VARINT and value:  # unknown_rank
            raise GraphDefError("tensor with unknown rank")
    if any(size < 0 for size in dims):
        raise GraphDefError(f"tensor with an unknown dimension: {dims}")
    return tuple(dims)


def _append_values(values: list, wire_type: int, value, kind: str) -> None:
    """Append one field of a repeated `*_val` list, packed or not."""
    if wire_type == LENGTH_DELIMITED:
        if kind == "float":
            values.extend(np.frombuffer(value, "<f4").tolist())
        elif kind == "double":
            values.extend(np.frombuffer(value, "<f8").tolist())
        else:
            values.extend(protobuf.to_signed64(v) for v in protobuf.unpack_varints(value))
    elif wire_type == FIXED32:
        values.append(struct.unpack("<f", struct.pack("<I", value))[0])
    elif wire_type == FIXED64:
        values.append(struct.unpack("<d", struct.pack("<Q", value))[0])
    else:
        values.append(protobuf.to_signed64(value))


# TensorProto field number -> kind of its repeated value list.
_VALUE_FIELDS = {5: "float", 6: "double", 7: "int", 10: "int", 11: "int", 13: "half"}


def decode_tensor(message: memoryview) -> np.ndarray:
    """Decode a TensorProto into an array; raise GraphDefError for unsupported dtypes."""
    dtype_enum = 0
    shape: tuple[int, ...] = ()
    content = None
    values: list = []
    for number, wire_type, value in protobuf.iter_fields(message):
        if number == 1 and wire_type == VARINT:
            dtype_enum = value
        elif number == 2 and wire_type == LENGTH_DELIMITED:
            shape = decode_shape(value)
        elif number == 4 and wire_type == LENGTH_DELIMITED:
            content = bytes(value)
        elif number in _VALUE_FIELDS:
            _append_values(values, wire_type, value, _VALUE_FIELDS[number])

    if dtype_enum not in TF_DTYPES:
        raise GraphDefError(f"unsupported TensorFlow dtype enum {dtype_enum}")
    dtype = TF_DTYPES[dtype_enum]
    count = int(np.prod(shape, dtype=np.int64))

    if content is not None:
        if len(content) != count * dtype.itemsize:
            raise GraphDefError(
                f"tensor_content has {len(content)} bytes, shape {shape} of {dtype} needs "
                f"{count * dtype.itemsize}")
        return np.frombuffer(content, dtype).reshape(shape).astype(dtype.newbyteorder("="))

    if dtype == np.float16:
        # half_val stores the IEEE half bits in int32 fields.
        values = np.asarray(values, np.uint16).view(np.float16).tolist()
    if len(values) > count:
        raise GraphDefError(f"{len(values)} values for shape {shape}")
    # TensorFlow repeats the last listed value to fill the shape (all zeros when none is listed).
    if values and len(values) < count:
        values = values + [values[-1]] * (count - len(values))
    array = np.asarray(values, dtype.newbyteorder("=")) if values else np.zeros(count, dtype)
    return array.reshape(shape)


def _read_node(message: memoryview) -> tuple[str, str, memoryview | None]:
    """Return (name, op, encoded TensorProto of the `value` attr or None)."""
    name = ""
    op = ""
    tensor = None
    for number, wire_type, value in protobuf.iter_fields(message):
        if wire_type != LENGTH_DELIMITED:
            continue
        if number == 1:
            name = bytes(value).decode("utf-8")
        elif number == 2:
            op = bytes(value).decode("utf-8")
        elif number == 5:  # map<string, AttrValue> entry: key = 1, value = 2.
            key = None
            attr = None
            for entry_number, entry_wire, entry_value in protobuf.iter_fields(value):
                if entry_wire != LENGTH_DELIMITED:
                    continue
                if entry_number == 1:
                    key = bytes(entry_value).decode("utf-8")
                elif entry_number == 2:
                    attr = entry_value
            if key == "value" and attr is not None:
                for attr_number, attr_wire, attr_value in protobuf.iter_fields(attr):
                    if attr_number == 8 and attr_wire == LENGTH_DELIMITED:  # AttrValue.tensor
                        tensor = attr_value
    return name, op, tensor


def read_graph_constants(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Return the Const nodes of a frozen GraphDef as {name: array}, and {node name: op}.

    Const nodes of a dtype without a NumPy equivalent (strings, resources) are left out of the
    first dictionary but not the second. Raises GraphDefError when the bytes do not decode as
    a GraphDef or hold no Const node.
    """
    data = Path(path).read_bytes()
    constants: dict[str, np.ndarray] = {}
    node_ops: dict[str, str] = {}
    try:
        for number, wire_type, value in protobuf.iter_fields(data):
            if number != 1:  # GraphDef.node; versions and the function library are skipped.
                continue
            if wire_type != LENGTH_DELIMITED:
                raise GraphDefError(f"GraphDef.node has wire type {wire_type}, expected 2")
            name, op, tensor = _read_node(value)
            node_ops[name] = op
            if op != "Const" or tensor is None:
                continue
            try:
                constants[name] = decode_tensor(tensor)
            except GraphDefError as error:
                if "unsupported TensorFlow dtype" not in str(error):
                    raise GraphDefError(f"Const node {name!r}: {error}") from error
    except (protobuf.ProtobufDecodeError, UnicodeDecodeError) as error:
        raise GraphDefError(f"{path} is not a valid GraphDef protobuf: {error}") from error
    if not constants:
        raise GraphDefError(
            f"{path} decodes as a protobuf but contains no Const node with numeric data "
            f"({len(node_ops)} nodes); expected a frozen GraphDef with weights as constants.")
    return constants, node_ops
