"""``ffnops partitions labels=URI output=URI``: Google's compute_partitions over any volume format.

The label volume (or ``bbox`` of it) is read into memory; the output has the same shape, uint8.
"""

from __future__ import annotations

import numpy as np
from omegaconf import DictConfig
from tqdm import tqdm

from ffnops.data.dataset import LABEL_DTYPES
from ffnops.errors import FfnopsError
from ffnops.ffn.partitions import compute_partitions, partition_counts
from ffnops.volume import BBox, VolumeSpec
from ffnops.volumes import create_volume, open_volume


def run(cfg: DictConfig) -> None:
    with open_volume(cfg.labels, dtypes=LABEL_DTYPES) as volume:
        box = BBox.parse(cfg.bbox) if cfg.bbox else BBox.from_shape(volume.shape)
        labels = np.asarray(volume.read(box), dtype=np.int64 if volume.dtype.kind == "i" else None)
        voxel_size, offset = volume.voxel_size, volume.offset
    mask = None
    if cfg.mask:
        with open_volume(cfg.mask) as mask_volume:
            if mask_volume.shape != volume.shape:
                raise FfnopsError(
                    f"mask {cfg.mask} has shape {mask_volume.shape}, labels {cfg.labels} have "
                    f"{volume.shape}; they must cover the same voxels"
                )
            mask = np.asarray(mask_volume.read(box)) > 0
    try:
        partitions = compute_partitions(
            labels,
            cfg.thresholds,
            list(cfg.lom_radius),
            cfg.min_size,
            mask=mask,
            id_whitelist=cfg.id_whitelist,
            progress=lambda ids: tqdm(ids, desc="partitions", unit="label"),
        )
    except ValueError as exc:
        raise FfnopsError(f"{cfg.labels}: {exc}") from None
    spec = VolumeSpec(
        shape=partitions.shape,  # type: ignore[arg-type]
        dtype="uint8",
        voxel_size=voxel_size,
        offset=tuple(o + s for o, s in zip(offset, box.start, strict=True)),  # type: ignore[arg-type]
    )
    with create_volume(cfg.output, spec, overwrite=cfg.overwrite) as out:
        out.write((0, 0, 0), partitions)
    counts = partition_counts(partitions)
    print(f"wrote {cfg.output}: shape {partitions.shape} (z, y, x)")
    print("partition  voxels")
    for value, count in counts.items():
        note = " (excluded)" if value == 255 else " (background)" if value == 0 else ""
        print(f"{value:>9}  {count}{note}")
    if not any(v not in (0, 255) for v in counts):
        raise FfnopsError(
            f"{cfg.labels}: no object voxel got a partition (all objects smaller than "
            f"min_size={cfg.min_size}, or the volume is not larger than 2 x lom_radius)"
        )
