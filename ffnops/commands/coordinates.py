"""``ffnops coordinates volumes=[name:URI,...] output=FILE``: balanced training coordinates.

Each ``name:URI`` pair names a partition volume (from ``ffnops partitions``); the name is how the
training config refers to that volume's image and labels (``data.volumes.<name>``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from ffnops.config.checks import vec3_setting
from ffnops.data.coordinate_file import save_coordinates
from ffnops.errors import FfnopsError
from ffnops.ffn.coordinates import balanced_coordinates
from ffnops.outputs import claim_output
from ffnops.volumes import open_volume


def parse_volume(item: str) -> tuple[str, str]:
    """``"train:h5://p.h5#partitions"`` -> ("train", "h5://p.h5#partitions")."""
    name, sep, uri = str(item).partition(":")
    if not sep or not name or "/" in name or not uri or uri.startswith("//"):
        raise FfnopsError(
            f"volumes entry {item!r} must be name:URI (e.g. sample:h5://partitions.h5#partitions)"
        )
    return name, uri


def run(cfg: DictConfig) -> None:
    output = Path(cfg.output)
    margin = vec3_setting(cfg.margin, "margin", minimum=0)
    entries = [parse_volume(item) for item in cfg.volumes]
    names = [name for name, _ in entries]
    if len(set(names)) < len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise FfnopsError(f"volume names {twice} are given twice in volumes=")
    for _, uri in entries:
        open_volume(uri, dtypes=["uint8"]).close()
    with claim_output(str(output), cfg.overwrite, 1_000_000):
        partitions: dict[str, np.ndarray] = {}
        offsets: dict[str, tuple[int, ...]] = {}
        for name, uri in entries:
            with open_volume(uri) as volume:
                partitions[name] = volume.read()
                offsets[name] = tuple(int(o) for o in volume.offset)
        try:
            table = balanced_coordinates(partitions, list(margin), cfg.seed, cfg.max_per_partition)
        except ValueError as exc:
            raise FfnopsError(str(exc)) from None
        # Positions in the volume's voxels: `ffnops partitions bbox=` writes only its box, at
        # that box's offset.
        shift = np.asarray([offsets[n] for n in table.names], np.int32).reshape(-1, 3)
        table = replace(table, zyx=(table.zyx + shift[table.volume]).astype(np.int32))
        table.meta["sources"] = dict(entries)
        save_coordinates(table, output)
    counts = table.counts()
    print(
        f"wrote {output}: {len(table)} coordinates from {len(partitions)} volume(s), "
        f"{len(counts)} partitions x {max(counts.values())}"
    )
