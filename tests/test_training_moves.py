"""FOV geometry, movement rules and examples of the training pipeline (google/ffn's train.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ffnops.data.examples import Augmentation, apply_augmentation
from ffnops.ffn.logit import logit
from ffnops.ffn.movement import face_max_candidates
from ffnops.ffn.training_moves import (
    TrainingGeometry,
    fixed_policy,
    fixed_shifts,
    initial_canvas,
    max_pred_moves_policy,
    soften_labels,
)


def test_fib25_geometry_matches_the_reference() -> None:
    fixed = TrainingGeometry((33, 33, 33), (8, 8, 8), "fixed", 1)
    assert fixed.patch_size == (49, 49, 49) and fixed.eval_size == (49, 49, 49)
    moving = TrainingGeometry((33, 33, 33), (8, 8, 8), "max_pred_moves", 1)
    assert moving.patch_size == (65, 65, 65) and moving.eval_size == (49, 49, 49)
    assert moving.max_radius == (16, 16, 16)
    with pytest.raises(ValueError, match="fixed policy supports fov_moves=1"):
        TrainingGeometry((33, 33, 33), (8, 8, 8), "fixed", 2)


def test_reference_logits_are_float32_rounded() -> None:
    assert logit(0.9) == 2.1972243785858154
    assert logit(0.95) == 2.9444386959075928
    assert logit(0.05) == -2.944438934326172


def test_fixed_shifts_are_the_26_neighbours_shuffled_once() -> None:
    shifts = fixed_shifts((8, 8, 8), shuffle=True, seed=3)
    assert len(shifts) == 26 == len(set(shifts)) and (0, 0, 0) not in shifts
    assert all(abs(c) in (0, 8) for s in shifts for c in s)
    assert shifts == fixed_shifts((8, 8, 8), shuffle=True, seed=3)
    assert shifts != fixed_shifts((8, 8, 8), shuffle=False)


def test_fixed_policy_checks_each_shift_after_the_previous_step() -> None:
    canvas = initial_canvas((9, 9, 9), 0.05)
    shifts = [(0, 0, 2), (0, 2, 0)]
    moves = fixed_policy(canvas, shifts, logit(0.9))
    assert next(moves) == (0, 0, 0)
    canvas[4, 4, 6] = 5.0  # the "network" made the first shift's target an object voxel
    assert next(moves) == (0, 0, 2)
    with pytest.raises(StopIteration):  # (0, 2, 0) is still below the threshold
        next(moves)


def test_face_max_candidates_find_the_best_voxel_of_each_face() -> None:
    logits = torch.full((9, 9, 9), -5.0)
    logits[4, 4, 7] = 3.0  # on the +x face (centre 4, delta 3), in-face offset (0, 0)
    logits[1, 6, 2] = 4.0  # on the -z face, in-face offset (y + 2, x - 2)
    logits[4, 1, 5] = 1.0  # on the -y face but below the threshold
    candidates = face_max_candidates(logits, (3, 3, 3), threshold=2.0)
    assert candidates == [(4.0, (-3, 2, -2)), (3.0, (0, 0, 3))]


def test_max_pred_moves_stays_on_the_true_object() -> None:
    geometry = TrainingGeometry((5, 5, 5), (2, 2, 2), "max_pred_moves", 1)
    shape = geometry.patch_size
    labels = np.zeros(shape, np.uint64)
    labels[:, 5:8, :] = 7  # a slab through the centre (6, 6, 6), along z and x
    soft = torch.from_numpy(soften_labels(labels))
    canvas = initial_canvas(shape, 0.05)
    canvas[:] = torch.where(soft > 0.5, 4.0, -4.0)  # a perfect network
    moves = list(max_pred_moves_policy(canvas, soft, geometry, logit(0.9)))
    assert moves[0] == (0, 0, 0) and len(moves) > 1
    centre = [n // 2 for n in shape]
    for move in moves:
        assert all(abs(m) <= r for m, r in zip(move, geometry.max_radius))
        assert soft[tuple(c + m for c, m in zip(centre, move))] > 0.5
    assert len({tuple((m + 1) // 2 for m in move) for move in moves}) == len(moves)


def test_soft_labels_and_augmentation_keep_the_centre() -> None:
    labels = np.zeros((5, 5, 5), np.uint64)
    labels[2, 2, 2:] = 9
    soft = soften_labels(labels)
    assert soft[2, 2, 2] == np.float32(0.95) and soft[0, 0, 0] == np.float32(0.05)
    assert soften_labels(np.zeros((3, 3, 3), np.uint64)).max() == np.float32(0.05)
    array = np.arange(125).reshape(5, 5, 5)
    out = apply_augmentation(array, [0, 2, 1], [0, 2])
    assert out[2, 2, 2] == array[2, 2, 2]
    np.testing.assert_array_equal(out, np.flip(array.transpose(0, 2, 1), axis=(0, 2)))
    draws = [Augmentation().draw(np.random.default_rng(s)) for s in range(64)]
    assert {tuple(o) for o, _ in draws} == {(0, 1, 2), (0, 2, 1)}  # only y and x swap
    assert Augmentation(enabled=False).draw(np.random.default_rng(0)) == ([0, 1, 2], [])
