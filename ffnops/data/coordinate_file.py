"""The coordinate file: a portable ``.npz`` replacing Google's TFRecord of training centres.

Keys: ``names`` (str, one per volume), ``volume`` (uint16 index into ``names``), ``zyx`` (int32
(N, 3), full-volume voxel coordinates, z, y, x), ``partition`` (uint8, the partition each record
was drawn for) and ``meta`` (a JSON string: margin, seed, partition sizes, sources). Google's
TFRecords held (x, y, z) centres and byte-string names.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ffnops.errors import FfnopsError
from ffnops.ffn.coordinates import CoordinateTable

REQUIRED_KEYS = ("names", "volume", "zyx", "partition")


def save_coordinates(table: CoordinateTable, path: str | Path) -> None:
    """Writes the table atomically (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    with open(tmp, "wb") as f:
        np.savez_compressed(
            f,
            names=np.asarray(table.names, dtype=str),
            volume=table.volume,
            zyx=table.zyx,
            partition=table.partition,
            meta=np.asarray(json.dumps(table.meta)),
        )
    tmp.replace(path)


def load_coordinates(path: str | Path) -> CoordinateTable:
    """Reads a coordinate file; a missing or foreign file is an error naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FfnopsError(f"coordinate file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in REQUIRED_KEYS if k not in data.files]
            if missing:
                raise FfnopsError(
                    f"{path}: not an ffnops coordinate file: missing {missing}, "
                    f"found {sorted(data.files)}"
                )
            meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
            table = CoordinateTable(
                tuple(str(n) for n in data["names"]),
                data["volume"].astype(np.uint16),
                data["zyx"].astype(np.int32),
                data["partition"].astype(np.uint8),
                meta,
            )
    except (OSError, ValueError) as exc:
        raise FfnopsError(f"{path}: cannot read coordinates ({exc})") from None
    if table.zyx.ndim != 2 or table.zyx.shape[1] != 3 or len(table.volume) != len(table.zyx):
        raise FfnopsError(f"{path}: zyx must have shape (N, 3) with N = len(volume)")
    return table
