"""The synthetic volume generator: requested size, dense labels, dark membranes, reproducible."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.segmentation import find_boundaries

from ffnops.sample_data.synthetic import synthetic_volume


def test_cells_fill_the_volume_and_membranes_are_dark() -> None:
    image, labels = synthetic_volume((24, 40, 56), objects=12, seed=3)
    assert image.shape == labels.shape == (24, 40, 56)
    assert image.dtype == np.uint8 and labels.dtype == np.uint32
    ids = np.unique(labels)
    assert ids[0] == 1 and len(ids) <= 12 and len(ids) >= 10  # dense: no 0, compact ids
    boundary = find_boundaries(labels, mode="inner")
    assert image[boundary].mean() < image[~boundary].mean() - 40
    again = synthetic_volume((24, 40, 56), objects=12, seed=3)
    assert np.array_equal(again[0], image) and np.array_equal(again[1], labels)
    other = synthetic_volume((24, 40, 56), objects=12, seed=4)[1]
    assert not np.array_equal(other, labels)


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="three positive sizes"):
        synthetic_volume((10, 10))
    with pytest.raises(ValueError, match="at least 1"):
        synthetic_volume((4, 4, 4), objects=0)
