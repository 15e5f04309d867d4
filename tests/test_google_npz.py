"""The Google-compatible output: file layout, keys, dtypes and probability quantisation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ffnops.errors import VolumeExistsError
from ffnops.segmentation import SeedOrigin, SegmentationResult
from ffnops.volumes import write_segmentation


def test_npz_has_googles_layout_keys_and_dtypes(tmp_path: Path) -> None:
    labels = np.zeros((6, 7, 8), np.int32)
    labels[1:4, 1:4, 1:4] = 3
    labels[0, 0, 0] = -1  # a rejected-seed marker is saved as 0, as Google does
    probabilities = np.full(labels.shape, np.nan, np.float32)
    probabilities[labels > 0] = 0.8
    probabilities[1, 1, 1] = 1.0
    result = SegmentationResult(
        labels,
        offset=(10, 20, 30),
        origins={3: SeedOrigin((2, 2, 2), 5, 0.25)},
        counters={"network_calls": 5},
        probabilities=probabilities,
        settings={"move_threshold": 0.9},
    )
    written = write_segmentation(result, f"npz://{tmp_path}")
    path = tmp_path / "30" / "20" / "seg-30_20_10.npz"  # <x>/<y>/seg-<x>_<y>_<z>
    assert written == str(path)
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == {"segmentation", "origins", "request", "counters", "overlaps"}
        assert data["segmentation"].dtype == np.uint8 and data["segmentation"][0, 0, 0] == 0
        np.testing.assert_array_equal(data["segmentation"], np.maximum(labels, 0))
        origin = data["origins"][0]
        assert (origin["id"], origin["z"], origin["iters"]) == (3, 2, 5)
        assert json.loads(str(data["counters"])) == {"network_calls": 5}
        assert json.loads(str(data["request"]))["move_threshold"] == 0.9
    with np.load(tmp_path / "30" / "20" / "seg-30_20_10.prob", allow_pickle=False) as prob:
        q = prob["qprob"]
    assert q.dtype == np.uint8
    assert q[0, 0, 0] == 0 and q[1, 1, 1] == 255  # NaN -> 0, p = 1 -> 255
    assert q[2, 2, 2] == np.digitize(0.8, np.linspace(0, 1, 255))
    with pytest.raises(VolumeExistsError):
        write_segmentation(result, f"npz://{tmp_path}")


def test_ids_above_255_get_a_wider_type(tmp_path: Path) -> None:
    labels = np.full((2, 2, 2), 300, np.int64)
    write_segmentation(SegmentationResult(labels), f"npz://{tmp_path}")
    with np.load(tmp_path / "0" / "0" / "seg-0_0_0.npz") as data:
        assert data["segmentation"].dtype == np.uint16
