"""``ffnops agglomerate`` (docs/agglomeration.md): the oracle network rejoins an object the input
splits and keeps every true boundary, in this process and on daisy's workers alike."""

from __future__ import annotations

import csv
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from commands import ffnops as run_ffnops
from mlflow.tracking import MlflowClient
from oracle import register_oracle

from ffnops.agglomeration.resegmentation import PairScore, ResegmentationSettings, find_contacts
from ffnops.sample_data.synthetic import synthetic_volume
from ffnops.volume import BBox
from ffnops.volumes import open_volume, write_array

ffnops = partial(run_ffnops, timeout=600)
SHAPE = (96, 96, 96)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Labels as the oracle's image, and a segmentation of them with the largest cell cut in
    two at its median z (id 99)."""
    path = tmp_path_factory.mktemp("agglomerate")
    uri = register_oracle(path)
    _, labels = synthetic_volume(SHAPE, objects=12, seed=3)
    labels = labels.astype(np.uint32)
    ids, sizes = np.unique(labels[labels > 0], return_counts=True)
    largest = int(ids[sizes.argmax()])
    cut = int(np.median(np.nonzero(labels == largest)[0]))
    split = labels.copy()
    split[(labels == largest) & (np.arange(SHAPE[0])[:, None, None] >= cut)] = 99
    write_array(f"zarr://{path}/labels.zarr", labels, chunks=(32, 32, 32))
    write_array(f"zarr://{path}/split.zarr", split, chunks=(32, 32, 32))
    write_array(f"zarr://{path}/part.zarr", split[24:72], offset=(24, 0, 0))  # as infer bbox=
    write_array(f"zarr://{path}/outside.zarr", split[:48], offset=(64, 0, 0))
    write_array(f"zarr://{path}/coarse.zarr", split, voxel_size=(2.0, 2.0, 2.0))
    return {"path": path, "uri": uri, "labels": labels, "largest": largest}


def agglomerate_args(world: dict[str, object], output: str, *extra: str) -> list[str]:
    return [
        "agglomerate",
        "model=models:/oracle@truth",
        f"image=zarr://{world['path']}/labels.zarr",
        f"seg=zarr://{world['path']}/split.zarr",
        f"output=zarr://{world['path']}/{output}",
        f"tracking.tracking_uri={world['uri']}",
        "radius=[16,16,16]",
        "analysis_radius=[12,12,12]",
        *extra,
    ]


def read(world: dict[str, object], name: str) -> np.ndarray:
    with open_volume(f"zarr://{world['path']}/{name}") as volume:
        return np.asarray(volume.read())


def test_a_split_object_is_rejoined_and_true_boundaries_are_kept(world: dict[str, object]) -> None:
    path = Path(str(world["path"]))
    results = {}
    for name, executor in (("local", "executor=cpu"), ("daisy", "executor=daisy")):
        args = agglomerate_args(world, f"{name}.zarr", executor, "executor.block_size=[48,48,48]")
        proc = ffnops(*args, cwd=path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[name] = read(world, f"{name}.zarr")
    np.testing.assert_array_equal(results["daisy"], results["local"])
    labels: np.ndarray = world["labels"]  # type: ignore[assignment]
    result = results["local"]
    np.testing.assert_array_equal(result, labels)  # the cut joined, nothing else
    assert "12 objects from 13; 1 of" in proc.stdout
    client = MlflowClient(tracking_uri=world["uri"])  # type: ignore[arg-type]
    (run, *_) = client.search_runs(
        [client.get_experiment_by_name("agglomeration").experiment_id],
        f"tags.`ffnops.output` = 'zarr://{path}/daisy.zarr'",
    )
    assert run.data.metrics["pairs_joined"] == 1 and run.data.metrics["pairs"] >= 20
    assert 0 < run.data.metrics["network_share"] <= 1
    table = client.download_artifacts(run.info.run_id, "pairs.csv", str(path))
    with open(table) as f:
        rows = list(csv.DictReader(f))
    (joined,) = [r for r in rows if r["joined"] == "1"]
    assert {int(joined["a"]), int(joined["b"])} == {int(world["largest"]), 99}  # type: ignore[call-overload]
    assert float(joined["iou"]) > 0.95
    assert max(float(r["iou"]) for r in rows if r["joined"] == "0") < 0.2


def test_a_segmentation_without_contacts_is_written_unchanged(world: dict[str, object]) -> None:
    path = Path(str(world["path"]))
    lonely = np.zeros(SHAPE, np.uint32)
    lonely[20:40, 20:40, 20:40] = 7
    write_array(f"zarr://{path}/lonely.zarr", lonely)
    args = agglomerate_args(world, "lonely_out.zarr", f"seg=zarr://{path}/lonely.zarr")
    proc = ffnops(*args, cwd=path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no two objects that touch" in proc.stdout
    np.testing.assert_array_equal(read(world, "lonely_out.zarr"), lonely)


def test_a_part_of_the_image_is_agglomerated_and_scored_before_and_after(
    world: dict[str, object],
) -> None:
    """A segmentation of part of the image (as ``infer bbox=`` writes one) is placed by its
    offset; with ``groundtruth=`` the run holds the input's scores and the output's."""
    path = Path(str(world["path"]))
    args = agglomerate_args(
        world, "part_out.zarr", f"seg=zarr://{path}/part.zarr",
        f"groundtruth=zarr://{path}/labels.zarr", "eval_bbox=32:64,0:96,0:96",
    )  # fmt: skip
    proc = ffnops(*args, cwd=path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open_volume(f"zarr://{path}/part_out.zarr") as volume:
        assert tuple(volume.offset) == (24, 0, 0)
        result = np.asarray(volume.read())
    labels: np.ndarray = world["labels"]  # type: ignore[assignment]
    np.testing.assert_array_equal(result, labels[24:72])
    client = MlflowClient(tracking_uri=world["uri"])  # type: ignore[arg-type]
    (run, *_) = client.search_runs(
        [client.get_experiment_by_name("agglomeration").experiment_id],
        f"tags.`ffnops.output` = 'zarr://{path}/part_out.zarr'",
    )
    metrics = run.data.metrics
    assert metrics["eval_input/voi_split"] > 0.05  # the cut, seen in the input ...
    assert metrics["eval/voi_split"] < 1e-6  # ... and gone from the output
    assert metrics["eval/adapted_rand_error"] < metrics["eval_input/adapted_rand_error"]
    assert "scored against" in proc.stdout and "[32:64,0:96,0:96]" in proc.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("seg=zarr://{path}/outside.zarr",), "covers [64:112,0:96,0:96] of image="),
        (("seg=zarr://{path}/coarse.zarr",), "they must be the same grid"),
        (("seg=zarr://{path}/part.zarr", "bbox=0:96,0:96,0:96"), "reaches outside seg="),
        (("eval_bbox=0:10,0:10,0:10",), "needs groundtruth=URI"),
        (("radius=[4,4,4]",), "cannot hold the model's FOV [17, 17, 17]"),
        (("output=zarr://{path}/split.zarr",), "already exists"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    world: dict[str, object], extra: tuple[str, ...], message: str
) -> None:
    path = Path(str(world["path"]))
    before = sorted(p.name for p in path.iterdir())
    args = agglomerate_args(world, "never.zarr", *(e.format(path=path) for e in extra))
    proc = ffnops(*args, cwd=path)
    assert proc.returncode != 0
    (line,) = proc.stderr.strip().splitlines()
    assert message in line
    assert sorted(p.name for p in path.iterdir()) == before


def test_blocks_count_every_contact_face_once() -> None:
    """A block reads one voxel beyond its far faces, to see the faces to its next block; with
    ``within`` it counts only faces whose first voxel is its own, so the sums over blocks are the
    whole volume's whatever the blocks."""
    _, labels = synthetic_volume((40, 40, 40), objects=8, seed=1)
    whole = {(c.a, c.b): c.faces for c in find_contacts(labels, (0, 0, 0))}
    assert len(whole) >= 5
    summed: dict[tuple[int, int], int] = {}
    for box in BBox.from_shape(labels.shape).blocks((16, 20, 40)):
        stop = [min(e + 1, n) for e, n in zip(box.stop, labels.shape, strict=True)]
        grown = labels[tuple(slice(a, b) for a, b in zip(box.start, stop, strict=True))]
        for c in find_contacts(grown, box.start, within=box.size):
            summed[(c.a, c.b)] = summed.get((c.a, c.b), 0) + c.faces
    assert summed == whole


def test_the_join_thresholds_and_the_contact_filter_decide_what_is_tried_and_joined(
    world: dict[str, object],
) -> None:
    score = PairScore(1, 2, 50, (0, 0, 0), True, iou=0.85, recovered_a=0.7, recovered_b=0.65)
    assert score.joins(ResegmentationSettings())
    assert not score.joins(ResegmentationSettings(merge_iou=0.9))
    assert not score.joins(ResegmentationSettings(min_recovery=0.7))
    assert not replace(score, tried=False).joins(ResegmentationSettings())
    # No contact has a million faces: nothing is tried, the input comes out unchanged.
    path = Path(str(world["path"]))
    args = agglomerate_args(world, "untried.zarr", "min_contact=1000000")
    proc = ffnops(*args, cwd=path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "0 of 0 resegmented pairs joined" in proc.stdout
    np.testing.assert_array_equal(read(world, "untried.zarr"), read(world, "split.zarr"))
