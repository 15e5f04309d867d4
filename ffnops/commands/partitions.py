"""``ffnops partitions labels=URI output=URI``: Google's compute_partitions over any volume format.

The label volume (or ``bbox`` of it) is read into memory; the output has the same shape, uint8.
"""

from __future__ import annotations

import numpy as np
from omegaconf import DictConfig
from tqdm import tqdm

from ffnops.config.checks import vec3_setting
from ffnops.data.dataset import LABEL_DTYPES
from ffnops.errors import FfnopsError
from ffnops.ffn.partitions import compute_partitions, partition_counts
from ffnops.outputs import claim_output
from ffnops.volume import VolumeSpec
from ffnops.volumes import box_of, create_volume, open_volume


def run(cfg: DictConfig) -> None:
    lom_radius = vec3_setting(cfg.lom_radius, "lom_radius", minimum=0)
    thresholds = [float(t) for t in cfg.thresholds]
    if not thresholds or any(not 0 < t < 1 for t in thresholds):
        raise FfnopsError(
            f"thresholds={thresholds}: expected one or more fractions between 0 and 1 "
            "(google/ffn's compute_partitions.py)"
        )
    with open_volume(cfg.labels, dtypes=LABEL_DTYPES) as volume:
        box = box_of(volume, cfg.bbox)
        shape, voxel_size, offset = volume.shape, volume.voxel_size, volume.offset
    mask_volume = open_volume(cfg.mask) if cfg.mask else None
    if mask_volume is not None:
        mask_volume.close()
        if mask_volume.shape != shape:
            raise FfnopsError(
                f"mask {cfg.mask} has shape {mask_volume.shape}, labels {cfg.labels} have "
                f"{shape}; they must cover the same voxels"
            )
    with claim_output(cfg.output, cfg.overwrite, box.num_voxels):
        with open_volume(cfg.labels) as volume:
            labels = np.asarray(
                volume.read(box), dtype=np.int64 if volume.dtype.kind == "i" else None
            )
        mask = None
        if cfg.mask:
            with open_volume(cfg.mask) as masks:
                mask = np.asarray(masks.read(box)) > 0
        try:
            partitions = compute_partitions(
                labels,
                thresholds,
                list(lom_radius),
                cfg.min_size,
                mask=mask,
                id_whitelist=cfg.id_whitelist,
                progress=lambda ids: tqdm(ids, desc="partitions", unit="label"),
            )
        except ValueError as exc:
            raise FfnopsError(f"{cfg.labels}: {exc}") from None
        counts = partition_counts(partitions)
        if not any(v not in (0, 255) for v in counts):
            raise FfnopsError(
                f"{cfg.labels}: no object voxel got a partition (all objects smaller than "
                f"min_size={cfg.min_size}, or the volume is not larger than 2 x lom_radius); "
                "nothing was written"
            )
        spec = VolumeSpec(
            shape=partitions.shape,  # type: ignore[arg-type]
            dtype="uint8",
            voxel_size=voxel_size,
            offset=tuple(o + s for o, s in zip(offset, box.start, strict=True)),  # type: ignore[arg-type]
        )
        with create_volume(cfg.output, spec, overwrite=cfg.overwrite) as out:
            out.write((0, 0, 0), partitions)
    print(f"wrote {cfg.output}: shape {partitions.shape} (z, y, x)")
    print("partition  voxels")
    for value, count in counts.items():
        note = " (excluded)" if value == 255 else " (background)" if value == 0 else ""
        print(f"{value:>9}  {count}{note}")
