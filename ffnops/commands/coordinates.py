"""``ffnops coordinates volumes=[name:URI,...] output=FILE``: balanced training coordinates.

Each ``name:URI`` pair names a partition volume (from ``ffnops partitions``); the name is how the
training config refers to that volume's image and labels (``data.volumes.<name>``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from ffnops.data.coordinate_file import save_coordinates
from ffnops.errors import FfnopsError, VolumeExistsError
from ffnops.ffn.coordinates import balanced_coordinates
from ffnops.volumes import open_volume


def parse_volume(item: str) -> tuple[str, str]:
    """``"train:h5://p.h5#partitions"`` -> ("train", "h5://p.h5#partitions")."""
    name, sep, uri = str(item).partition(":")
    if not sep or not name or "/" in name or not uri:
        raise FfnopsError(
            f"volumes entry {item!r} must be name:URI (e.g. sample:h5://partitions.h5#partitions)"
        )
    return name, uri


def run(cfg: DictConfig) -> None:
    output = Path(cfg.output)
    if output.exists() and not cfg.overwrite:
        raise VolumeExistsError(f"{output} already exists; pass overwrite=true to replace it")
    partitions: dict[str, np.ndarray] = {}
    sources = {}
    for item in cfg.volumes:
        name, uri = parse_volume(item)
        if name in partitions:
            raise FfnopsError(f"volume name {name!r} is given twice in volumes=")
        with open_volume(uri, dtypes=["uint8"]) as volume:
            partitions[name] = volume.read()
        sources[name] = uri
    try:
        table = balanced_coordinates(partitions, list(cfg.margin), cfg.seed, cfg.max_per_partition)
    except ValueError as exc:
        raise FfnopsError(str(exc)) from None
    table.meta["sources"] = sources
    save_coordinates(table, output)
    counts = table.counts()
    print(
        f"wrote {output}: {len(table)} coordinates from {len(partitions)} volume(s), "
        f"{len(counts)} partitions x {max(counts.values())}"
    )
