"""Read the variables of a TensorFlow V2 checkpoint (tensor bundle) without TensorFlow.

A checkpoint `prefix` is `prefix.index`, a LevelDB-format table that maps each variable name
to a BundleEntryProto (dtype, shape, shard, offset and size), and `prefix.data-SSSSS-of-NNNNN`
files with the raw little-endian tensor bytes. The table layout follows LevelDB's
`table_format.md`: data blocks of prefix-compressed entries, an index block that points to
them, and a 48-byte footer. The empty key maps to a BundleHeaderProto (number of shards,
endianness). Field numbers come from TensorFlow's `tensor_bundle.proto`.

NOTE: Only uncompressed tables are read. TensorFlow writes them uncompressed since release 1.2;
older checkpoints may have Snappy-compressed blocks and are rejected with a message. Block
checksums are not verified, but every offset and size is checked against the file sizes.
Partitioned variables (saved as slices) and V1 checkpoints are rejected too.
"""

import struct
from pathlib import Path

import numpy as np

from mvs_jax.pretrained import protobuf
from mvs_jax.pretrained.protobuf import LENGTH_DELIMITED, VARINT
from mvs_jax.pretrained.tf_graph import TF_DTYPES, GraphDefError, decode_shape

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5  # One compression-type byte and a masked CRC32C.


class CheckpointError(ValueError):
    """The files are not a TensorFlow V2 checkpoint that this reader can decode."""


def index_path(path: str | Path) -> Path:
    """Return the `.index` file of a checkpoint given its prefix, index or data file."""
    path = Path(path)
    if path.suffix == ".index":
        return path
    if ".data-" in path.name:
        return path.with_name(path.name.split(".data-")[0] + ".index")
    return path.with_name(path.name + ".index")


def _block_handle(data: bytes | memoryview, position: int) -> tuple[int, int, int]:
    """Decode a BlockHandle (varint offset, varint size); return (offset, size, position)."""
    offset, position = protobuf.read_varint(data, position)
    size, position = protobuf.read_varint(data, position)
    return offset, size, position


def _read_block(table: bytes, offset: int, size: int, path: Path) -> memoryview:
    end = offset + size + BLOCK_TRAILER_SIZE
    if end > len(table):
        raise CheckpointError(
            f"{path}: block at offset {offset} with {size} bytes runs past the end of the "
            f"{len(table)}-byte file; the file is truncated or corrupt.")
    compression = table[offset + size]
    if compression == 1:
        raise CheckpointError(
            f"{path}: the index uses Snappy-compressed blocks (written by TensorFlow before "
            "1.2), which this reader does not decode; re-save the checkpoint with a newer "
            "TensorFlow or export a frozen graph.")
    if compression != 0:
        raise CheckpointError(f"{path}: unknown block compression type {compression}.")
    return memoryview(table)[offset:offset + size]


def _block_entries(block: memoryview, path: Path) -> list[tuple[bytes, memoryview]]:
    """Decode the prefix-compressed (key, value) entries of one block."""
    if len(block) < 4:
        raise CheckpointError(f"{path}: a {len(block)}-byte block is too short.")
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise CheckpointError(f"{path}: block claims {num_restarts} restart points.")
    entries = []
    key = b""
    position = 0
    while position < limit:
        shared, position = protobuf.read_varint(block, position)
        unshared, position = protobuf.read_varint(block, position)
        value_size, position = protobuf.read_varint(block, position)
        if shared > len(key) or position + unshared + value_size > limit:
            raise CheckpointError(f"{path}: corrupt block entry at byte {position}.")
        key = key[:shared] + bytes(block[position:position + unshared])
        position += unshared
        entries.append((key, block[position:position + value_size]))
        position += value_size
    return entries


def read_table(path: Path) -> list[tuple[bytes, memoryview]]:
    """Return every (key, value) entry of a LevelDB-format table file, in key order."""
    table = path.read_bytes()
    if len(table) < FOOTER_SIZE:
        raise CheckpointError(f"{path}: {len(table)} bytes is too short for a table footer.")
    footer = memoryview(table)[len(table) - FOOTER_SIZE:]
    magic = struct.unpack_from("<Q", footer, FOOTER_SIZE - 8)[0]
    if magic != TABLE_MAGIC:
        raise CheckpointError(
            f"{path} is not a TensorFlow checkpoint index: the footer magic is {magic:#018x}, "
            f"expected {TABLE_MAGIC:#018x}.")
    try:
        _, _, position = _block_handle(footer, 0)  # The metaindex block is empty in bundles.
        index_offset, index_size, _ = _block_handle(footer, position)
        entries = []
        for _, handle in _block_entries(_read_block(table, index_offset, index_size, path),
                                        path):
            offset, size, _ = _block_handle(handle, 0)
            entries.extend(_block_entries(_read_block(table, offset, size, path), path))
    except protobuf.ProtobufDecodeError as error:
        raise CheckpointError(f"{path}: corrupt table: {error}") from error
    return entries


def _decode_header(value: memoryview) -> tuple[int, str]:
    num_shards = 1
    byte_order = "<"
    for number, wire_type, field in protobuf.iter_fields(value):
        if number == 1 and wire_type == VARINT:
            num_shards = field
        elif number == 2 and wire_type == VARINT:
            byte_order = ">" if field == 1 else "<"  # Endianness: LITTLE = 0, BIG = 1.
    return num_shards, byte_order


def _decode_entry(value: memoryview) -> dict:
    entry = {"dtype": 0, "shape": (), "shard_id": 0, "offset": 0, "size": 0, "sliced": False}
    for number, wire_type, field in protobuf.iter_fields(value):
        if number == 1 and wire_type == VARINT:
            entry["dtype"] = field
        elif number == 2 and wire_type == LENGTH_DELIMITED:
            entry["shape"] = decode_shape(field)
        elif number in (3, 4, 5) and wire_type == VARINT:
            entry[{3: "shard_id", 4: "offset", 5: "size"}[number]] = field
        elif number == 7:
            entry["sliced"] = True
    return entry


def read_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """Return the numeric variables of a V2 checkpoint as {name: array}.

    `path` is the checkpoint prefix (as TensorFlow prints it) or its `.index` file. Variables
    of a dtype without a NumPy equivalent (strings) are left out.
    """
    index = index_path(path)
    if not index.is_file():
        raise CheckpointError(f"checkpoint index {index} not found; pass the checkpoint prefix.")
    prefix = index.with_suffix("")
    entries = read_table(index)
    if not entries or entries[0][0] != b"":
        raise CheckpointError(f"{index}: the first entry is not the bundle header.")

    try:
        num_shards, byte_order = _decode_header(entries[0][1])
        variables = {}
        shards: dict[int, bytes] = {}
        for key, value in entries[1:]:
            name = key.decode("utf-8")
            entry = _decode_entry(value)
            if entry["sliced"]:
                raise CheckpointError(
                    f"{index}: variable {name!r} is partitioned into slices, which this "
                    "reader does not assemble.")
            if entry["dtype"] not in TF_DTYPES:
                continue
            shard = entry["shard_id"]
            if shard not in shards:
                data_path = Path(f"{prefix}.data-{shard:05d}-of-{num_shards:05d}")
                if not data_path.is_file():
                    raise CheckpointError(f"checkpoint data file {data_path} not found.")
                shards[shard] = data_path.read_bytes()
            variables[name] = _tensor(name, entry, shards[shard], byte_order, index)
    except (protobuf.ProtobufDecodeError, GraphDefError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{index}: corrupt bundle entry: {error}") from error
    return variables


def _tensor(name: str, entry: dict, shard: bytes, byte_order: str, index: Path) -> np.ndarray:
    dtype = TF_DTYPES[entry["dtype"]].newbyteorder(byte_order)
    count = int(np.prod(entry["shape"], dtype=np.int64))
    if entry["size"] != count * dtype.itemsize or entry["offset"] + entry["size"] > len(shard):
        raise CheckpointError(
            f"{index}: variable {name!r} of shape {entry['shape']} ({dtype}) claims "
            f"{entry['size']} bytes at offset {entry['offset']} of a {len(shard)}-byte data "
            f"file; expected {count * dtype.itemsize} bytes inside the file.")
    array = np.frombuffer(shard, dtype, count=count, offset=entry["offset"])
    return array.astype(dtype.newbyteorder("=")).reshape(entry["shape"])
