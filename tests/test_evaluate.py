"""``ffnops evaluate`` on the bundled FIB-25 crop: ERL, the error list with neuroglancer links
in an MLflow run, a ground truth that covers part of the segmentation, and bad input."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import neuroglancer
import numpy as np
import pytest
from browser import CAN_RENDER, RENDER_REASON, render
from commands import ffnops, free_port
from mlflow.tracking import MlflowClient

from ffnops.sample_data import sample_path
from ffnops.viewing.python_viewer import open_viewer
from ffnops.viewing.skeletons import read_skeleton
from ffnops.viewing.state import GROUNDTRUTH_LAYER
from ffnops.viewing.view_data import RUN_ARTIFACTS
from ffnops.volumes import open_volume, write_array

SAMPLE = sample_path("fib25_crop.h5")
IMAGE, LABELS = f"h5://{SAMPLE}#image", f"h5://{SAMPLE}#labels"
BOX = (slice(0, 64), slice(0, 96), slice(0, 96))


def the_two_largest(labels: np.ndarray) -> tuple[int, int]:
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    a, b = ids[np.argsort(counts)[-2:]]
    return int(a), int(b)


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The crop's labels as ground truth and, as the segmentation, the same labels with its two
    largest neurons merged; evaluated once into a fresh store."""
    path = tmp_path_factory.mktemp("evaluate")
    with open_volume(LABELS) as volume:
        truth = np.asarray(volume.read()).astype(np.uint32)[BOX]
        voxel_size = volume.voxel_size
    merged = the_two_largest(truth)
    seg = truth.copy()
    seg[seg == merged[1]] = merged[0]
    write_array(f"zarr://{path}/gt.zarr", truth, voxel_size=voxel_size)
    write_array(f"zarr://{path}/seg.zarr", seg, voxel_size=voxel_size)
    port = free_port()
    uri = f"sqlite:///{path}/mlflow.db"
    proc = ffnops(
        "evaluate", f"seg=zarr://{path}/seg.zarr", f"gt=zarr://{path}/gt.zarr", f"image={IMAGE}",
        f"tracking.tracking_uri={uri}", f"viewer.port={port}",
        "viewer.client_url=http://client.invalid", cwd=path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_experiment_by_name("evaluation").experiment_id]
    )
    return {
        "path": path,
        "uri": uri,
        "run": run,
        "merged": merged,
        "port": port,
        "stdout": proc.stdout,
        "truth": truth,
    }


def errors_table(scene: dict[str, object]) -> list[dict[str, str]]:
    client = MlflowClient(str(scene["uri"]))
    local = client.download_artifacts(
        scene["run"].info.run_id, "evaluation/errors.csv", str(scene["path"])
    )  # type: ignore[attr-defined]
    return list(csv.DictReader(io.StringIO(Path(local).read_text())))


def test_evaluate_reports_erl_and_puts_the_injected_merge_first(scene: dict[str, object]) -> None:
    metrics = scene["run"].data.metrics  # type: ignore[attr-defined]
    assert 0 < metrics["eval/erl_nm"] < metrics["eval/groundtruth_erl_nm"]
    assert metrics["eval/merged_skeletons"] == 2 and metrics["eval/merge_errors"] == 1
    assert metrics["eval/nerl"] == pytest.approx(
        metrics["eval/erl_nm"] / metrics["eval/groundtruth_erl_nm"]
    )
    assert "erl_nm" in str(scene["stdout"])
    first = errors_table(scene)[0]
    merged = scene["merged"]
    assert first["kind"] == "merge" and int(first["segment_id"]) == merged[0]  # type: ignore[index]
    assert {int(first["groundtruth_id"]), int(first["other_id"])} == set(merged)  # type: ignore[arg-type]
    artifacts = {
        a.path
        for a in MlflowClient(str(scene["uri"])).list_artifacts(
            scene["run"].info.run_id, "evaluation"
        )
    }  # type: ignore[attr-defined]
    assert {
        "evaluation/errors.csv",
        "evaluation/groundtruth_objects.csv",
        "evaluation/errors.png",
        "evaluation/errors.json",
    } <= artifacts


def test_an_error_link_opens_at_the_error_with_its_segments_selected(
    scene: dict[str, object],
) -> None:
    first = errors_table(scene)[0]
    state = neuroglancer.parse_url(first["neuroglancer_url"])
    z, y, x = (int(first[a]) for a in "zyx")
    assert list(state.position) == [x + 0.5, y + 0.5, z + 0.5]
    assert [int(s) for s in state.layers["segmentation"].segments] == [int(first["segment_id"])]
    shown = {int(s) for s in state.layers["groundtruth"].segments}
    assert shown == set(scene["merged"])  # type: ignore[arg-type]
    truth = scene["truth"]
    assert truth[z, y, x] in shown  # type: ignore[index]  # the view opens on one of the two


def test_a_groundtruth_covering_part_of_the_segmentation_is_scored_there(
    scene: dict[str, object], tmp_path: Path
) -> None:
    path = Path(str(scene["path"]))
    truth = np.asarray(scene["truth"])
    with open_volume(f"zarr://{path}/gt.zarr") as volume:
        voxel_size = volume.voxel_size
    write_array(
        f"zarr://{tmp_path}/part.zarr", truth[32:], voxel_size=voxel_size, offset=(32, 0, 0)
    )
    proc = ffnops(
        "evaluate", f"seg=zarr://{path}/seg.zarr", f"gt=zarr://{tmp_path}/part.zarr",
        f"tracking.tracking_uri=sqlite:///{tmp_path}/mlflow.db", "viewer.publish=false",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "covers [32:64,0:96,0:96] of the box [0:64,0:96,0:96]: scored there only" in proc.stdout


# Bad evaluate input (a ground truth of other voxels, an empty one, a bad SWC file, an unknown
# run, a reversed box) is part of the bad-input battery, tests/test_bad_commands.py.


@pytest.mark.skipif(not CAN_RENDER, reason=RENDER_REASON)
def test_an_error_link_renders_in_a_browser(scene: dict[str, object], tmp_path: Path) -> None:
    """``ffnops view RUN_ID`` serves the evaluation's copy; the first error's link opens."""
    # The link's own state, in neuroglancer's Python viewer (the public client it names is not
    # reachable offline); its data comes from the `ffnops view` server, as the link's, which
    # lets that client's origin read it as it would the configured `viewer.client_url`.
    state = neuroglancer.parse_url(errors_table(scene)[0]["neuroglancer_url"])
    viewer = open_viewer(state)
    view = subprocess.Popen(
        [sys.executable, "-m", "ffnops", "view", scene["run"].info.run_id,  # type: ignore[attr-defined]
         f"tracking.tracking_uri={scene['uri']}", f"viewer.port={scene['port']}", "timeout_s=300",
         f"viewer.client_url={viewer.get_viewer_url()}"],
        cwd=str(scene["path"]), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert view.stdout is not None
        deadline = time.monotonic() + 120
        for line in view.stdout:
            if line.startswith("offline viewer: ") or time.monotonic() > deadline:
                break
        rendered = render(viewer.get_viewer_url(), tmp_path)
    finally:
        view.terminate()
        view.wait(timeout=30)
    assert rendered.coloured > 0.05, f"the selected segment is not on screen; see {tmp_path}"
    assert rendered.distinct > 150, f"no EM texture on screen; see {tmp_path}"
    assert not rendered.errors, rendered.errors


def test_without_ground_truth_evaluate_logs_the_queue_of_likely_errors(
    scene: dict[str, object], tmp_path: Path
) -> None:
    path = Path(str(scene["path"]))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = ffnops(
        "evaluate", f"seg=zarr://{path}/seg.zarr", f"image={IMAGE}", f"tracking.tracking_uri={uri}",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "places to check without ground truth" in proc.stdout
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("evaluation").experiment_id])
    assert "eval/erl_nm" not in run.data.metrics and run.data.metrics["candidates/contact"] > 0
    local = client.download_artifacts(run.info.run_id, "evaluation/candidates.csv", str(tmp_path))
    rows = list(csv.DictReader(io.StringIO(Path(local).read_text())))
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    state = neuroglancer.parse_url(rows[0]["neuroglancer_url"])
    assert int(rows[0]["segment_id"]) in {int(s) for s in state.layers["segmentation"].segments}
    assert "groundtruth" not in [layer.name for layer in state.layers]


@pytest.mark.parametrize(
    "override, check",
    [
        pytest.param(
            "evaluation.skeletonize=false",
            lambda m, base: "eval/erl_nm" not in m,
            marks=pytest.mark.slow,
        ),
        # kimimaro's parameters are in nm too, so the skeletons change a little: not exactly 2x
        (
            "evaluation.voxel_size=[20,20,20]",
            lambda m, base: (
                1.5 < m["eval/groundtruth_erl_nm"] / base["eval/groundtruth_erl_nm"] < 2.5
            ),
        ),
        # only objects of at least 20,000 voxels are skeletonized: fewer skeletons, less length
        pytest.param(
            "evaluation.skeleton_dust_voxels=20000",
            lambda m, base: m["eval/skeleton_length_nm"] < base["eval/skeleton_length_nm"],
            marks=pytest.mark.slow,
        ),
    ],
)
def test_the_evaluation_keys_change_what_is_measured(
    scene: dict[str, object], tmp_path: Path, override: str, check: object
) -> None:
    path = Path(str(scene["path"]))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = ffnops(
        "evaluate", f"seg=zarr://{path}/seg.zarr", f"gt=zarr://{path}/gt.zarr",
        f"tracking.tracking_uri={uri}", "viewer.publish=false", override, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("evaluation").experiment_id])
    assert check(run.data.metrics, scene["run"].data.metrics)  # type: ignore[operator, attr-defined]


def test_the_ground_truth_layer_draws_the_skeletons_erl_was_scored_on(
    scene: dict[str, object], tmp_path: Path
) -> None:
    client = MlflowClient(str(scene["uri"]))
    run_id = scene["run"].info.run_id  # type: ignore[attr-defined]
    layer = Path(
        client.download_artifacts(run_id, f"{RUN_ARTIFACTS}/{GROUNDTRUTH_LAYER}", str(tmp_path))
    )
    assert json.loads((layer / "info").read_text())["skeletons"] == "skeletons"
    assert (
        json.loads((layer / "skeletons" / "info").read_text())["@type"] == "neuroglancer_skeletons"
    )
    truth = np.asarray(scene["truth"])
    with open_volume(LABELS) as volume:
        voxel_size = np.asarray(volume.voxel_size, np.float64)
    drawn = {int(p.name) for p in (layer / "skeletons").iterdir() if p.name != "info"}
    assert set(scene["merged"]) <= drawn  # type: ignore[arg-type]  # the two the merge joins
    for object_id in scene["merged"]:  # type: ignore[attr-defined]
        xyz = read_skeleton(layer, object_id)
        voxels = np.floor(xyz[:, ::-1] / voxel_size).astype(int)  # nm x y z -> voxel z y x
        inside = truth[tuple(np.clip(voxels, 0, np.array(truth.shape) - 1).T)] == object_id
        assert inside.mean() > 0.9, object_id  # the centre line lies in its own object
