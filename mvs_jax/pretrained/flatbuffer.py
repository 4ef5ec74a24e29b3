"""A minimal FlatBuffers table reader: enough to walk a TFLite model without generated code.

FlatBuffers layout (flatbuffers.dev, "Internals"): the buffer starts with a uint32 offset to the
root table. A table starts with an int32 that, subtracted from the table's position, gives its
vtable: uint16 vtable size, uint16 table size, then one uint16 offset per field (0 = absent).
Reference fields (tables, vectors, strings) store a uint32 offset relative to their own position.
A vector or string starts with its uint32 element count. All numbers are little-endian.
"""

import struct

import numpy as np


class FlatBufferError(ValueError):
    """An offset or length points outside the buffer."""


class Table:
    """A view of one table inside a FlatBuffers buffer, read by field index (schema order)."""

    def __init__(self, buffer: bytes | memoryview, position: int):
        self.buffer = memoryview(buffer)
        self.position = position
        self._check(position, 4)
        vtable = position - struct.unpack_from("<i", self.buffer, position)[0]
        self._check(vtable, 4)
        self._vtable = vtable
        self._vtable_size = struct.unpack_from("<H", self.buffer, vtable)[0]
        self._check(vtable, self._vtable_size)

    def _check(self, position: int, size: int) -> None:
        if position < 0 or position + size > len(self.buffer):
            raise FlatBufferError(
                f"offset {position} (+{size} bytes) is outside the {len(self.buffer)}-byte buffer")

    def _field_position(self, index: int) -> int | None:
        entry = 4 + 2 * index
        if entry + 2 > self._vtable_size:
            return None
        offset = struct.unpack_from("<H", self.buffer, self._vtable + entry)[0]
        return self.position + offset if offset else None

    def scalar(self, index: int, fmt: str, default=0):
        """Read a scalar field with `struct` format `fmt` (e.g. "<i", "<B")."""
        position = self._field_position(index)
        if position is None:
            return default
        self._check(position, struct.calcsize(fmt))
        return struct.unpack_from(fmt, self.buffer, position)[0]

    def _target(self, index: int) -> int | None:
        position = self._field_position(index)
        if position is None:
            return None
        self._check(position, 4)
        return position + struct.unpack_from("<I", self.buffer, position)[0]

    def table(self, index: int) -> "Table | None":
        target = self._target(index)
        return None if target is None else Table(self.buffer, target)

    def _vector(self, index: int) -> tuple[int, int] | None:
        """Return (position of the first element, element count) or None."""
        target = self._target(index)
        if target is None:
            return None
        self._check(target, 4)
        return target + 4, struct.unpack_from("<I", self.buffer, target)[0]

    def string(self, index: int) -> str | None:
        vector = self._vector(index)
        if vector is None:
            return None
        start, length = vector
        self._check(start, length)
        return bytes(self.buffer[start:start + length]).decode("utf-8", errors="replace")

    def array(self, index: int, dtype: str) -> np.ndarray:
        """Read a vector of scalars as a NumPy array (empty when the field is absent)."""
        vector = self._vector(index)
        if vector is None:
            return np.zeros(0, dtype)
        start, length = vector
        itemsize = np.dtype(dtype).itemsize
        self._check(start, length * itemsize)
        return np.frombuffer(self.buffer, dtype, count=length, offset=start)

    def tables(self, index: int) -> list["Table"]:
        """Read a vector of tables."""
        vector = self._vector(index)
        if vector is None:
            return []
        start, length = vector
        self._check(start, 4 * length)
        result = []
        for i in range(length):
            element = start + 4 * i
            result.append(Table(self.buffer, element + struct.unpack_from("<I", self.buffer,
                                                                          element)[0]))
        return result


def root_table(buffer: bytes | memoryview) -> Table:
    if len(buffer) < 8:
        raise FlatBufferError(f"a {len(buffer)}-byte buffer is too short for a FlatBuffer")
    return Table(buffer, struct.unpack_from("<I", buffer, 0)[0])
