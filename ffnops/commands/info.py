"""``ffnops info uri=URI``: a volume's metadata, no voxels read (``stats=true`` reads them)."""

from __future__ import annotations

import json

import numpy as np
from omegaconf import DictConfig

from ffnops.errors import FfnopsError
from ffnops.volumes import box_of, open_volume


def run(cfg: DictConfig) -> None:
    if cfg.bbox and not cfg.stats:
        raise FfnopsError(f"bbox={cfg.bbox} selects the box that stats=true reads; add stats=true")
    with open_volume(cfg.uri) as volume:
        box = box_of(volume, cfg.bbox)
        description = volume.describe()
        if cfg.stats:
            data = volume.read(box)
            description["stats"] = {
                "bbox": str(box),
                "min": data.min().item(),
                "max": data.max().item(),
                "mean": float(data.mean()),
                "unique": int(np.unique(data).size) if data.dtype.kind in "iu" else None,
            }
    print(json.dumps(description, indent=2))
