"""Evaluation metrics against values worked out by hand on tiny arrays."""

from __future__ import annotations

import numpy as np
import pytest

from ffnops.ffn.metrics import score_segmentation


def test_perfect_segmentation_scores_zero() -> None:
    gt = np.array([[[1, 1, 2, 2, 0]]])
    scores = score_segmentation(gt * 7, gt, min_overlap=1)  # ids differ, partition is the same
    assert scores.voi_split == 0 and scores.voi_merge == 0 and scores.adapted_rand_error == 0
    assert scores.false_merges == 0 and scores.false_splits == 0
    assert scores.objects == 2 and scores.groundtruth_objects == 2


def test_a_merge_costs_one_bit_of_merge_and_counts_once() -> None:
    gt = np.array([[[1, 1, 2, 2]]])
    seg = np.array([[[5, 5, 5, 5]]])
    scores = score_segmentation(seg, gt, min_overlap=1)
    # H(gt | seg) = 1 bit (two equal halves), H(seg | gt) = 0.
    assert scores.voi_merge == pytest.approx(1.0) and scores.voi_split == 0
    assert scores.false_merges == 1 and scores.false_splits == 0
    # Ordered voxel pairs in one object (self-pairs excluded): gt 2 * (2 * 1) = 4, seg 4 * 3 = 12,
    # both 4. Against the segmentation's pairs 4 / 12, against the truth's 4 / 4:
    # F = 2 * (1/3) * 1 / (1/3 + 1) = 0.5, so the error is 0.5.
    assert scores.adapted_rand_error == pytest.approx(0.5)


def test_a_split_costs_one_bit_of_split_and_unlabelled_voxels_are_ignored() -> None:
    gt = np.array([[[3, 3, 3, 3, 0, 0]]])
    seg = np.array([[[1, 1, 2, 2, 9, 9]]])
    scores = score_segmentation(seg, gt, min_overlap=2)
    assert scores.voi_split == pytest.approx(1.0) and scores.voi_merge == 0
    assert scores.voi == pytest.approx(1.0) and scores.as_dict()["voi"] == pytest.approx(1.0)
    assert scores.false_splits == 1 and scores.false_merges == 0
    assert scores.objects == 2  # segment 9 lies only on unlabelled voxels


def test_shapes_must_match() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        score_segmentation(np.zeros((2, 2, 2), int), np.zeros((2, 2, 3), int))
