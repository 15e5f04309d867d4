"""Partitions and balanced coordinates against brute-force references written here."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ffnops.ffn.coordinates import balanced_coordinates
from ffnops.ffn.partitions import EXCLUDED, box_sum, clear_dust, compute_partitions

THRESHOLDS = (0.1, 0.3, 0.5, 0.7, 0.9)


def brute_force_partitions(labels, thresholds, radius, min_size, mask=None):
    """The spec's definition, one voxel at a time."""
    ids, counts = np.unique(labels, return_counts=True)
    dust = {i for i, c in zip(ids, counts) if i != 0 and c < min_size}
    labels = np.where(np.isin(labels, list(dust)), 0, labels)
    out = np.full(labels.shape, EXCLUDED, np.uint8)
    rz, ry, rx = radius
    for z, y, x in itertools.product(*(range(r, n - r) for r, n in zip(radius, labels.shape))):
        cube = (slice(z - rz, z + rz + 1), slice(y - ry, y + ry + 1), slice(x - rx, x + rx + 1))
        if mask is not None and mask[cube].any():
            continue
        label = labels[z, y, x]
        if label == 0:
            out[z, y, x] = 0
            continue
        fraction = (labels[cube] == label).sum() / labels[cube].size
        below = [i for i, t in enumerate(thresholds) if fraction < t]
        out[z, y, x] = below[0] + 1 if below else len(thresholds) + 1
    return out


def blobs(shape, n_labels, seed):
    """Labels with large and tiny objects: nearest of random centres, some ids made huge."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 1, (n_labels, 3)) * shape
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), -1)
    nearest = np.argmin(((grid[..., None, :] - centres) ** 2).sum(-1), -1)
    ids = rng.choice(2**40, n_labels, replace=False).astype(np.uint64)
    ids[0] = 0
    return ids[nearest]


@pytest.mark.parametrize("seed, radius", [(0, (1, 2, 2)), (1, (2, 1, 3)), (2, (0, 2, 1))])
def test_partitions_match_brute_force(seed: int, radius: tuple[int, int, int]) -> None:
    labels = blobs((12, 13, 14), 9, seed)
    expected = brute_force_partitions(labels, THRESHOLDS, radius, min_size=20)
    actual = compute_partitions(labels, THRESHOLDS, radius, min_size=20)
    np.testing.assert_array_equal(actual, expected)
    assert len(np.unique(actual)) >= 4  # the case is not trivial


def test_partitions_honour_the_mask() -> None:
    labels = blobs((10, 11, 12), 5, 3)
    mask = np.zeros(labels.shape, bool)
    mask[5, 5, 5] = True
    expected = brute_force_partitions(labels, THRESHOLDS, (1, 1, 1), 1, mask)
    np.testing.assert_array_equal(compute_partitions(labels, THRESHOLDS, 1, 1, mask), expected)
    assert (expected[4:7, 4:7, 4:7] == EXCLUDED).all()


def test_box_sum_and_dust() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((7, 8, 9)) > 0.5
    sums = box_sum(mask, (3, 2, 4))
    assert sums.shape == (5, 7, 6)
    assert sums[2, 3, 1] == mask[2:5, 3:5, 1:5].sum()
    labels = np.array([[[0, 1, 1, 2, 3, 3, 3]]])
    np.testing.assert_array_equal(clear_dust(labels, 2), [[[0, 1, 1, 0, 3, 3, 3]]])


def test_coordinates_are_balanced_and_inside_the_margin() -> None:
    labels = {f"v{i}": blobs((20, 22, 24), 12, i) for i in range(2)}
    parts = {k: compute_partitions(v, THRESHOLDS, 2, 10) for k, v in labels.items()}
    table = balanced_coordinates(parts, margin=(3, 4, 5), seed=7)
    counts = table.counts()
    present = set()
    for p in parts.values():
        present |= set(np.unique(p[3:-3, 4:-4, 5:-5]).tolist()) - {EXCLUDED}
    assert set(counts) == present and len(present) >= 4
    assert max(counts.values()) <= 1.1 * min(counts.values())
    assert (table.zyx >= (3, 4, 5)).all() and (
        table.zyx < np.subtract((20, 22, 24), (3, 4, 5))
    ).all()
    for k, name in enumerate(table.names):  # every record really is of its partition
        sel = table.volume == k
        z, y, x = table.zyx[sel].T
        np.testing.assert_array_equal(parts[name][z, y, x], table.partition[sel])
    again = balanced_coordinates(parts, margin=(3, 4, 5), seed=7)
    np.testing.assert_array_equal(again.zyx, table.zyx)  # seeded: reproducible


def test_margin_that_leaves_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no voxel inside margin"):
        balanced_coordinates({"a": np.zeros((5, 5, 5), np.uint8)}, margin=3)
