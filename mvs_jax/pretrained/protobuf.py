"""A minimal protocol-buffer wire-format reader for the few messages the importers need.

Only the encoding rules are implemented (varints, fixed-width fields, length-delimited fields),
not schemas: callers pick the field numbers they need from the `.proto` definitions that they
cite. Unknown fields are skipped, as protobuf parsers do.
"""

import struct
from typing import Iterator

VARINT = 0
FIXED64 = 1
LENGTH_DELIMITED = 2
FIXED32 = 5
# Wire types 3 and 4 (groups) are deprecated and do not occur in the TensorFlow messages read here.


class ProtobufDecodeError(ValueError):
    """The bytes are not a valid protocol-buffer encoding."""


def read_varint(data: bytes | memoryview, position: int) -> tuple[int, int]:
    """Decode the base-128 varint at `position`; return (value, position after it)."""
    value = 0
    shift = 0
    while True:
        if position >= len(data):
            raise ProtobufDecodeError(f"truncated varint at byte {position}")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
        if shift >= 64:
            raise ProtobufDecodeError(f"varint longer than 10 bytes at byte {position}")


def iter_fields(data: bytes | memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """Yield (field number, wire type, value) for each field of one encoded message.

    A varint value is returned as an int and a fixed-width value as its unsigned integer (use
    `struct` to reinterpret it as a float). A length-delimited value is a memoryview into `data`,
    so nested messages and packed arrays are not copied.
    """
    data = memoryview(data)
    position = 0
    while position < len(data):
        key, position = read_varint(data, position)
        field_number, wire_type = key >> 3, key & 7
        if field_number == 0:
            raise ProtobufDecodeError(f"field number 0 at byte {position}")

        if wire_type == VARINT:
            value, position = read_varint(data, position)
        elif wire_type == FIXED64:
            end = position + 8
            if end > len(data):
                raise ProtobufDecodeError(f"truncated 64-bit field {field_number}")
            value = struct.unpack_from("<Q", data, position)[0]
            position = end
        elif wire_type == FIXED32:
            end = position + 4
            if end > len(data):
                raise ProtobufDecodeError(f"truncated 32-bit field {field_number}")
            value = struct.unpack_from("<I", data, position)[0]
            position = end
        elif wire_type == LENGTH_DELIMITED:
            length, position = read_varint(data, position)
            end = position + length
            if end > len(data):
                raise ProtobufDecodeError(
                    f"field {field_number} claims {length} bytes but only "
                    f"{len(data) - position} remain")
            value = data[position:end]
            position = end
        else:
            raise ProtobufDecodeError(
                f"unsupported wire type {wire_type} for field {field_number} at byte {position}")
        yield field_number, wire_type, value


def unpack_varints(data: memoryview) -> list[int]:
    """Decode a packed repeated varint field."""
    values = []
    position = 0
    while position < len(data):
        value, position = read_varint(data, position)
        values.append(value)
    return values


def to_signed64(value: int) -> int:
    """Reinterpret a varint decoded as unsigned as a two's-complement int64 (proto int32/int64)."""
    return value - (1 << 64) if value >= 1 << 63 else value
