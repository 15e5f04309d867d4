"""Hard examples (docs/training.md, "Hard examples"): the coordinates a segmentation gets wrong
are found as the error list defines its errors, and drawn ``weight`` times as often."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from commands import ffnops
from mlflow.tracking import MlflowClient

from ffnops.data.coordinate_file import save_coordinates
from ffnops.data.dataset import Dataset
from ffnops.data.examples import Augmentation
from ffnops.ffn.coordinates import CoordinateTable
from ffnops.sample_data import sample_path
from ffnops.training.datamodule import FFNDataModule
from ffnops.training.hard_examples import HardExamples, hard_coordinates
from ffnops.volumes import open_volume, write_array

SAMPLE = sample_path("fib25_crop.h5")


def table(centres: list[tuple[int, int, int]]) -> CoordinateTable:
    n = len(centres)
    return CoordinateTable(
        ("v",), np.zeros(n, np.uint16), np.asarray(centres, np.int32), np.zeros(n, np.uint8)
    )


def test_the_pieces_a_segmentation_gets_wrong_are_hard(tmp_path: Path) -> None:
    # Objects 1 (z < 4), 2 (z >= 4, x < 6) and 3 (z >= 4, x >= 6) in 8 x 8 x 8 voxels.
    truth = np.ones((8, 8, 8), np.uint32)
    truth[4:] = 2
    truth[4:, :, 6:] = 3
    # Segment 10 is 1's main segment, 11 a piece split off it; 20 holds 2 and merges 3; a row
    # of 2 is left unsegmented. Only z >= 1 is segmented (offset 1): z = 0 is outside.
    seg = np.full((8, 8, 8), 10, np.uint32)
    seg[:4, 5:] = 11
    seg[4:] = 20
    seg[7, 7, :6] = 0
    write_array(f"zarr://{tmp_path}/gt.zarr", truth)
    write_array(f"zarr://{tmp_path}/seg.zarr", seg[1:], offset=(1, 0, 0))
    datasets = {"v": Dataset("v", f"zarr://{tmp_path}/gt.zarr", f"zarr://{tmp_path}/gt.zarr")}
    centres = {
        (2, 1, 1): False,  # object 1 in its main segment
        (2, 6, 1): True,  # object 1's split-off piece
        (5, 1, 1): False,  # object 2 in its main segment, which merges 3
        (5, 1, 7): True,  # object 3, merged into 2's segment
        (7, 7, 1): True,  # object 2, unsegmented
        (0, 6, 1): False,  # in 11, but outside the segmentation's box
    }
    found = hard_coordinates(
        table(list(centres)), datasets, {"v": f"zarr://{tmp_path}/seg.zarr"}, 1
    )
    assert found.tolist() == list(centres.values())


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The bundled crop's labels as a segmentation that splits the object at the crop's centre
    (its half with x >= 64 cut off as a new segment), and coordinates on a grid."""
    path = tmp_path_factory.mktemp("hard")
    with h5py.File(SAMPLE) as f:
        labels = f["labels"][:]
    seg = labels.astype(np.uint64)
    centre = labels[80, 64, 64]
    half = np.zeros(labels.shape, bool)
    half[:, :, 64:] = True
    seg[(labels == centre) & half] = labels.max() + 1
    with open_volume(f"h5://{SAMPLE}#labels") as volume:
        voxel_size = volume.voxel_size
    write_array(f"zarr://{path}/seg.zarr", seg, voxel_size=voxel_size)
    zyx = [(z, y, x) for z in range(30, 130, 10) for y in range(30, 100, 10) for x in (40, 90)]
    coords = table(zyx)
    save_coordinates(
        CoordinateTable(("sample",), coords.volume, coords.zyx, coords.partition),
        path / "coords.npz",
    )
    hard = [bool(labels[c] == centre and c[2] >= 64) for c in zyx]
    return {"path": path, "hard": hard}


def test_hard_coordinates_are_drawn_weight_times_as_often(split: dict[str, object]) -> None:
    path = Path(str(split["path"]))
    datasets = {"sample": Dataset("sample", f"h5://{SAMPLE}#image", f"h5://{SAMPLE}#labels")}
    data = FFNDataModule(
        str(path / "coords.npz"), datasets, (17, 17, 17), Augmentation(), val_fraction=0,
        num_workers=0, seed=3,
        hard_examples=HardExamples({"sample": f"zarr://{path}/seg.zarr"}, 5.0),
    )  # fmt: skip
    data.setup("fit")
    assert data.train_weights is not None
    hard = data.train_weights == 5.0
    assert hard.tolist() == split["hard"]
    assert 0 < hard.sum() < len(hard)
    loader = data.train_dataloader()
    draws = np.concatenate([list(loader.sampler) for _ in range(200)])  # type: ignore[arg-type]
    share = hard[draws].mean()
    expected_share = 5 * hard.sum() / (5 * hard.sum() + (~hard).sum())
    assert share == pytest.approx(expected_share, abs=0.02)
    assert hard.mean() < expected_share - 0.05  # they are drawn more often than uniformly


def test_train_with_hard_examples_logs_them(split: dict[str, object]) -> None:
    path = Path(str(split["path"]))
    hard = list(split["hard"])  # type: ignore[call-overload]
    proc = ffnops(
        "train", "model=tiny", "optimizer=adam", "trainer.max_steps=2", "data.num_workers=0",
        "data.val_fraction=0", "trainer.limit_val_batches=0", f"data.coordinates={path}/coords.npz",
        f"+data.hard_examples.segmentation.sample=zarr://{path}/seg.zarr",
        "data.hard_examples.weight=3", f"tracking.tracking_uri=sqlite:///{path}/mlflow.db",
        cwd=path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        f"hard examples: {sum(hard)} of {len(hard)} training coordinates" in proc.stdout
        and "drawn 3 times as often" in proc.stdout
    )
    client = MlflowClient(tracking_uri=f"sqlite:///{path}/mlflow.db")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 1
    params = runs[0].data.params
    assert params["data.hard_examples.weight"] == "3.0"
    assert params["data.hard_examples.segmentation.sample"] == f"zarr://{path}/seg.zarr"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data.hard_examples.weight=3"], "data.hard_examples.weight=3.0 needs data.hard_examples"),
        (
            ["+data.hard_examples.segmentation.other=zarr:///nowhere.zarr"],
            "data.hard_examples.segmentation.other: not one of data.volumes (sample)",
        ),
        (["+data.hard_examples.segmentation.sample=zarr:///nowhere.zarr"], "/nowhere.zarr"),
        (
            [f"+data.hard_examples.segmentation.sample=h5://{SAMPLE}#labels",
             "data.hard_examples.weight=0"],
            "data.hard_examples.weight=0.0: must be above 0",
        ),
    ],
)  # fmt: skip
def test_bad_hard_examples_give_one_line(
    tmp_path: Path, overrides: list[str], expected: str
) -> None:
    proc = ffnops(
        "train", "model=tiny", "trainer.max_steps=1", "data.coordinates=missing.npz",
        *overrides, f"tracking.tracking_uri=sqlite:///{tmp_path}/mlflow.db", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
