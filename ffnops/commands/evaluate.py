"""``ffnops evaluate seg=URI gt=URI``: score a segmentation against ground truth.

Prints VOI split/merge, adapted Rand error (scikit-image) and counts of false merges and splits;
with ``run_id`` the scores are logged to that MLflow run as ``eval/*`` metrics.
"""

from __future__ import annotations

import mlflow
import numpy as np
from omegaconf import DictConfig

from ffnops.data.dataset import LABEL_DTYPES
from ffnops.errors import FfnopsError
from ffnops.ffn.geometry import as_vec3
from ffnops.ffn.metrics import score_segmentation
from ffnops.volume import BBox
from ffnops.volumes import open_volume


def run(cfg: DictConfig) -> None:
    with (
        open_volume(cfg.seg, dtypes=LABEL_DTYPES) as seg,
        open_volume(cfg.gt, dtypes=LABEL_DTYPES) as gt,
    ):
        # Align by offsets: seg voxel i is gt voxel i + (seg.offset - gt.offset).
        shift = [a - b for a, b in zip(seg.offset, gt.offset, strict=True)]
        seg_box = BBox.parse(cfg.bbox) if cfg.bbox else BBox.from_shape(seg.shape)
        gt_box = BBox(
            as_vec3([a + d for a, d in zip(seg_box.start, shift, strict=True)]), seg_box.size
        )
        if not gt_box.inside(gt.shape):
            raise FfnopsError(
                f"seg {cfg.seg} [{seg_box}] (offset {seg.offset}) maps to [{gt_box}] of gt "
                f"{cfg.gt}, which is not inside its shape {gt.shape} (offset {gt.offset})"
            )
        scores = score_segmentation(
            np.asarray(seg.read(seg_box)), np.asarray(gt.read(gt_box)), cfg.min_overlap
        )
    for key, value in scores.as_dict().items():
        print(f"{key:<20} {value:.4f}")
    if cfg.run_id:
        mlflow.set_tracking_uri(cfg.tracking.tracking_uri)
        with mlflow.start_run(run_id=cfg.run_id):
            mlflow.log_metrics({f"eval/{k}": v for k, v in scores.as_dict().items()})
        print(f"logged to MLflow run {cfg.run_id}")
