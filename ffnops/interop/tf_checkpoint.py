"""Reads TensorFlow 1 checkpoints (``.index`` + ``.data-*``) without TensorFlow.

The ``.index`` file is a LevelDB-style sorted table: key = variable name, value = a
``BundleEntryProto`` (dtype, shape, shard, offset, size). Each variable's bytes lie contiguously
in ``<prefix>.data-<shard>-of-<n>``, little-endian. Only uncompressed tables are read, which is
what TensorFlow writes for checkpoints. The first key ("") holds the bundle header.

Both checksums TensorFlow writes are verified, so a flipped bit is refused rather than imported:
each table block ends in a masked CRC32C of its bytes and type (LevelDB's block trailer), and each
``BundleEntryProto`` carries the masked CRC32C of its tensor's bytes (TensorFlow's
``tensorflow/core/util/tensor_bundle/tensor_bundle.cc`` writes and checks the same two).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import numpy as np
import numpy.typing as npt

_TABLE_MAGIC = 0xDB4775248B80FB57
_MASK_DELTA = 0xA282EAD8
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 9: np.int64, 10: np.bool_}


class CheckpointError(ValueError):
    """The files are not a TensorFlow checkpoint this reader understands (names the file)."""


@dataclass(frozen=True)
class TensorEntry:
    """Where a variable lives: dtype, shape, shard, byte offset and size."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int | None  # unmasked CRC32C of the tensor's bytes; None where the index has none


def _unmask(masked: int) -> int:
    """LevelDB's and TensorFlow's stored CRCs are masked (rotated and offset); undo it."""
    rotated = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of a protobuf message: varints and length-delimited bytes."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            out.append((number, data[pos : pos + length]))
            pos += length
        elif wire == 5:
            out.append((number, struct.unpack_from("<I", data, pos)[0]))
            pos += 4
        elif wire == 1:
            out.append((number, struct.unpack_from("<Q", data, pos)[0]))
            pos += 8
        else:
            raise CheckpointError(f"unsupported protobuf wire type {wire}")
    return out


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """Key/value pairs of one table block (keys are prefix-compressed)."""
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * restarts
    entries, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + value_len]))
        pos += value_len
    return entries


def _read_block(data: bytes, handle: bytes, path: Path) -> bytes:
    """A block's bytes, after checking its trailer: compression type (0) and masked CRC32C."""
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    if offset + size + 5 > len(data):
        raise CheckpointError(f"{path}: table block at byte {offset} runs past the end (truncated)")
    if data[offset + size] != 0:  # the trailer's compression type
        raise CheckpointError(f"{path}: compressed table blocks are not supported")
    (stored,) = struct.unpack_from("<I", data, offset + size + 1)
    if google_crc32c.value(data[offset : offset + size + 1]) != _unmask(stored):
        raise CheckpointError(
            f"{path}: table block at byte {offset} fails its CRC32C check (the file is corrupt)"
        )
    return data[offset : offset + size]


def read_index(prefix: str | Path) -> dict[str, TensorEntry]:
    """Every variable of a checkpoint, from ``<prefix>.index``."""
    path = Path(f"{prefix}.index")
    if not path.is_file():
        raise CheckpointError(f"checkpoint index not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror}") from None
    try:
        return _parse_index(data, path)
    except (IndexError, KeyError, struct.error, UnicodeDecodeError):
        raise CheckpointError(f"{path}: malformed index table (truncated or corrupt)") from None


def _parse_index(data: bytes, path: Path) -> dict[str, TensorEntry]:
    if len(data) < 48 or struct.unpack_from("<Q", data, len(data) - 8)[0] != _TABLE_MAGIC:
        raise CheckpointError(f"{path} is not a TensorFlow checkpoint index (no table magic)")
    footer = data[-48:]
    _, pos = _varint(footer, 0)  # metaindex handle: offset, size
    _, pos = _varint(footer, pos)
    index_start = pos
    _, pos = _varint(footer, pos)
    _, pos = _varint(footer, pos)
    index_block = _read_block(data, footer[index_start:pos], path)
    entries: dict[str, TensorEntry] = {}
    for _, handle in _block_entries(index_block):
        for key, value in _block_entries(_read_block(data, handle, path)):
            if not key:
                continue  # the bundle header
            fields = dict(_fields(value))
            shape_fields = _fields(fields.get(2, b""))  # type: ignore[arg-type]
            shape = tuple(int(dict(_fields(dim))[1]) if dim else 0 for _, dim in shape_fields)  # type: ignore[arg-type]
            dtype = _DTYPES.get(int(fields.get(1, 0)))  # type: ignore[arg-type]
            if dtype is None:
                continue  # types ffnops never needs (strings, resources)
            entries[key.decode()] = TensorEntry(
                key.decode(),
                np.dtype(dtype),
                shape,
                int(fields.get(3, 0)),  # type: ignore[arg-type]
                int(fields.get(4, 0)),
                int(fields.get(5, 0)),  # type: ignore[arg-type]
                _unmask(int(fields[6])) if 6 in fields else None,  # type: ignore[arg-type]
            )
    return entries


def read_checkpoint(prefix: str | Path) -> dict[str, npt.NDArray[np.generic]]:
    """All numeric variables of a checkpoint as numpy arrays, by name."""
    entries = read_index(prefix)
    shards = {e.shard for e in entries.values()}
    count = max(shards, default=0) + 1
    arrays = {}
    for shard in sorted(shards):
        path = Path(f"{prefix}.data-{shard:05d}-of-{count:05d}")
        if not path.is_file():
            raise CheckpointError(f"checkpoint data not found: {path}")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise CheckpointError(f"cannot read {path}: {e.strerror}") from None
        for entry in (e for e in entries.values() if e.shard == shard):
            expected = entry.dtype.itemsize * int(np.prod(entry.shape, dtype=np.int64))
            if entry.size != expected or entry.offset + entry.size > len(data):
                raise CheckpointError(
                    f"{path}: variable {entry.name} should hold {expected} bytes at "
                    f"{entry.offset}, the index says {entry.size} (file has {len(data)})"
                )
            chunk = data[entry.offset : entry.offset + entry.size]
            if entry.crc32c is not None and google_crc32c.value(chunk) != entry.crc32c:
                raise CheckpointError(
                    f"{path}: variable {entry.name} fails its CRC32C check (the file is corrupt)"
                )
            raw = np.frombuffer(
                data, entry.dtype.newbyteorder("<"), expected // entry.dtype.itemsize, entry.offset
            )
            arrays[entry.name] = raw.reshape(entry.shape).astype(entry.dtype)
    return arrays
