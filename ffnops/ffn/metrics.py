"""Segmentation quality against ground truth: VOI split/merge, adapted Rand error, and counts of
false merges and splits. Label 0 of the ground truth is unlabelled and ignored (as in FFN papers).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
from skimage.metrics import adapted_rand_error, variation_of_information


@dataclass(frozen=True)
class SegmentationScores:
    """Lower is better for every error; counts are objects."""

    voi_split: float
    voi_merge: float
    adapted_rand_error: float
    false_merges: int
    false_splits: int
    objects: int
    groundtruth_objects: int

    @property
    def voi(self) -> float:
        """Total variation of information (split + merge), in bits."""
        return self.voi_split + self.voi_merge

    def as_dict(self) -> dict[str, float]:
        return {**{k: float(v) for k, v in asdict(self).items()}, "voi": self.voi}


def _overlaps(
    seg: npt.NDArray[np.integer], gt: npt.NDArray[np.integer], min_overlap: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(segment id, ground-truth id) pairs that share at least ``min_overlap`` voxels."""
    pairs = np.stack([seg.ravel(), gt.ravel()], axis=1)
    pairs = pairs[(pairs[:, 0] > 0) & (pairs[:, 1] > 0)]
    if pairs.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty
    unique, counts = np.unique(pairs, axis=0, return_counts=True)
    kept = unique[counts >= min_overlap]
    return kept[:, 0].astype(np.int64), kept[:, 1].astype(np.int64)


def score_segmentation(
    segmentation: npt.NDArray[np.integer],
    groundtruth: npt.NDArray[np.integer],
    min_overlap: int = 100,
) -> SegmentationScores:
    """Scores ``segmentation`` against ``groundtruth`` on the voxels where the latter is > 0.

    A false merge is a segment overlapping two or more ground-truth objects by at least
    ``min_overlap`` voxels each; a false split is a ground-truth object overlapped so by two or
    more segments.
    """
    if segmentation.shape != groundtruth.shape:
        raise ValueError(
            f"segmentation {segmentation.shape} and ground truth {groundtruth.shape} "
            "differ in shape"
        )
    labelled = groundtruth > 0
    seg = np.where(labelled, segmentation, 0).astype(np.int64)
    gt = groundtruth.astype(np.int64)
    arand, _, _ = adapted_rand_error(gt, seg, ignore_labels=(0,))
    # variation_of_information(gt, seg) returns (H(seg|gt), H(gt|seg)) = (split, merge).
    split, merge = variation_of_information(gt[labelled], seg[labelled])
    seg_ids, gt_ids = _overlaps(seg, gt, min_overlap)
    per_segment = np.unique(seg_ids, return_counts=True)[1]
    per_object = np.unique(gt_ids, return_counts=True)[1]
    return SegmentationScores(
        voi_split=float(split),
        voi_merge=float(merge),
        adapted_rand_error=float(arand),
        false_merges=int((per_segment > 1).sum()),
        false_splits=int((per_object > 1).sum()),
        objects=len(np.unique(seg[seg > 0])),
        groundtruth_objects=len(np.unique(gt[labelled])),
    )
