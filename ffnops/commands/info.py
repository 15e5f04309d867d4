"""``ffnops info uri=URI``: a volume's metadata, no voxels read (``stats=true`` reads them)."""

from __future__ import annotations

import json

import numpy as np
from omegaconf import DictConfig

from ffnops.volume import BBox
from ffnops.volumes import open_volume


def run(cfg: DictConfig) -> None:
    with open_volume(cfg.uri) as volume:
        description = volume.describe()
        if cfg.stats:
            box = BBox.parse(cfg.bbox) if cfg.bbox else None
            data = volume.read(box)
            description["stats"] = {
                "bbox": str(box or BBox.from_shape(volume.shape)),
                "min": data.min().item(),
                "max": data.max().item(),
                "mean": float(data.mean()),
                "unique": int(np.unique(data).size) if data.dtype.kind in "iu" else None,
            }
    print(json.dumps(description, indent=2))
