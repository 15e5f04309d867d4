"""One evaluation of a segmentation against a ground truth (docs/evaluation.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ffnops.errors import FfnopsError
from ffnops.evaluation.errors import GroundTruthObject, SegmentationError, find_errors
from ffnops.evaluation.run_length import RunLengths, expected_run_length, node_segments
from ffnops.evaluation.skeletons import Skeletons
from ffnops.ffn.metrics import SegmentationScores, score_segmentation


@dataclass(frozen=True)
class Evaluation:
    """What ``ffnops evaluate`` reports: scores, ERL (with skeletons), errors and objects."""

    scores: SegmentationScores
    run_lengths: RunLengths | None
    errors: list[SegmentationError]
    objects: list[GroundTruthObject]
    origin_voxels: tuple[int, int, int]  # where the scored arrays start in the volume
    voxel_size: tuple[float, float, float]  # nm (z, y, x)
    skeletons: Skeletons | None = None  # what ERL was scored on (nm in the volume's frame)

    def metrics(self) -> dict[str, float]:
        metrics = self.scores.as_dict()
        if self.run_lengths is not None:
            metrics.update(
                erl_nm=self.run_lengths.erl_nm,
                groundtruth_erl_nm=self.run_lengths.groundtruth_erl_nm,
                nerl=self.run_lengths.nerl,
                skeleton_length_nm=sum(r.length_nm for r in self.run_lengths.skeletons),
                merged_skeletons=float(sum(r.merged for r in self.run_lengths.skeletons)),
            )
        metrics["split_errors"] = float(sum(e.kind == "split" for e in self.errors))
        metrics["merge_errors"] = float(sum(e.kind == "merge" for e in self.errors))
        return metrics


def evaluate(
    segmentation: npt.NDArray[np.integer],
    groundtruth: npt.NDArray[np.integer],
    voxel_size: Sequence[float],
    origin_voxels: Sequence[int],
    min_overlap: int = 100,
    skeletons: Skeletons | None = None,
) -> Evaluation:
    """Scores ``segmentation`` on the voxels ``groundtruth`` labels; both arrays start at voxel
    ``origin_voxels`` of the volume, and ``skeletons`` are in its physical frame (nm)."""
    if not (groundtruth > 0).any():
        raise FfnopsError("the ground truth labels no voxel here (all 0): nothing to score")
    scores = score_segmentation(segmentation, groundtruth, min_overlap)
    run_lengths = None
    node_seg = node_gt = None
    if skeletons is not None:
        node_seg = node_segments(skeletons, segmentation, voxel_size, origin_voxels)
        node_gt = node_segments(skeletons, groundtruth, voxel_size, origin_voxels, "ground truth")
        run_lengths = expected_run_length(skeletons, node_seg)
    per_skeleton = (
        {r.object_id: r.run_length_nm for r in run_lengths.skeletons} if run_lengths else None
    )
    errors, objects = find_errors(
        segmentation, groundtruth, min_overlap, skeletons, node_seg, node_gt, per_skeleton
    )
    z, y, x = (int(o) for o in origin_voxels)
    vz, vy, vx = (float(v) for v in voxel_size)
    return Evaluation(scores, run_lengths, errors, objects, (z, y, x), (vz, vy, vx), skeletons)
