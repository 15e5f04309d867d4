"""`ffnops infer` and `ffnops evaluate` from the command line, with a registered oracle network."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import neuroglancer
import numpy as np
import pytest
from commands import ffnops
from mlflow.tracking import MlflowClient

from ffnops.ffn.oracle import OracleFFN
from ffnops.sample_data import sample_path
from ffnops.tracking.mlflow_tracking import register_model
from ffnops.volume import BBox
from ffnops.volumes import open_volume, write_array

SAMPLE = sample_path("fib25_crop.h5")
LABELS = f"h5://{SAMPLE}#labels"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A sqlite store holding the oracle as models:/oracle@truth (FOV 17, deltas 4)."""
    path = tmp_path_factory.mktemp("infer")
    uri = f"sqlite:///{path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(client.create_experiment("models", f"{path}/artifacts"))
    settings = {
        "fov_size": [17, 17, 17],
        "deltas": [4, 4, 4],
        "image_mean": 0.0,
        "image_stddev": 1.0,
        "pad_value": 0.05,
        "init_activation": 0.95,
        "move_threshold": 0.9,
    }
    register_model(
        uri, run.info.run_id, OracleFFN((17, 17, 17), (4, 4, 4)), "oracle", settings, alias="truth"
    )
    return path, uri


def infer_args(uri: str, *extra: str) -> list[str]:
    return [
        "infer",
        "model=models:/oracle@truth",
        f"image={LABELS}",
        f"tracking.tracking_uri={uri}",
        "bbox=0:64,0:64,0:64",
        "inference.min_segment_size=100",
        *extra,
    ]


def test_infer_segments_writes_evaluates_and_logs(store: tuple[Path, str]) -> None:
    path, uri = store
    # Seeds on a grid: peaks of a label image are few (its only "edges" are object boundaries).
    extra = (
        f"output=zarr://{path}/seg.zarr",
        f"groundtruth={LABELS}",
        "inference.seed_policy=grid",
    )
    proc = ffnops(*infer_args(uri, *extra), cwd=path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "infer: 100%" in proc.stderr and "objects=" in proc.stderr  # the progress bar
    with open_volume(f"zarr://{path}/seg.zarr") as volume:
        seg = volume.read()
        assert volume.shape == (64, 64, 64)
    with open_volume(LABELS) as gt:
        labels = gt.read()[:64, :64, :64]
    assert len(np.unique(seg)) >= 5  # background and the 4 objects FOV centres can reach
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("inference").experiment_id])
    assert run.data.tags["ffnops.model_uri"] == "models:/oracle@truth"
    assert run.data.tags["ffnops.model_version"] == "1"
    assert run.data.params["effective.move_threshold"] == "0.9"
    assert run.data.metrics["objects"] == len(np.unique(seg)) - 1
    assert run.data.metrics["eval/adapted_rand_error"] < 0.1
    assert run.data.metrics["network_calls"] > 10
    # the run was open while the work ran, so the UI shows its real duration
    assert run.info.end_time - run.info.start_time >= 1000 * run.data.metrics["seconds"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {
        "segmentation_overlay.png", "neuroglancer", "neuroglancer_state.json", "evaluation",
    }  # fmt: skip
    views = {a.path for a in client.list_artifacts(run.info.run_id, "neuroglancer")}
    assert views == {"neuroglancer/image", "neuroglancer/segmentation", "neuroglancer/groundtruth"}
    assert 0 < run.data.metrics["eval/erl_nm"] <= run.data.metrics["eval/groundtruth_erl_nm"]
    state = neuroglancer.parse_url(run.data.tags["neuroglancer_url"])
    assert state.layers["segmentation"].source[0].url == (
        f"precomputed://http://127.0.0.1:8765/data/{run.info.run_id}/segmentation"
    )
    assert list(state.position) == [32.0, 32.0, 32.0]  # the box's centre
    assert state.layers["groundtruth"].source[0].url.endswith("/groundtruth")
    # evaluate agrees with the numbers infer logged
    proc = ffnops("evaluate", f"seg=zarr://{path}/seg.zarr", f"gt={LABELS}", cwd=path)
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.split()[:1] == ["adapted_rand_error"])
    assert float(line.split()[1]) == pytest.approx(
        run.data.metrics["eval/adapted_rand_error"], abs=1e-4
    )
    assert labels.shape == seg.shape


def test_eval_bbox_scores_a_part_of_the_segmented_box(store: tuple[Path, str]) -> None:
    """Segmented with context around it, scored on the part inside (as a whole-volume run)."""
    path, uri = store
    proc = ffnops(
        "infer",
        "model=models:/oracle@truth",
        f"image={LABELS}",
        f"tracking.tracking_uri={uri}",
        "bbox=8:56,8:56,8:56",
        "eval_bbox=16:40,16:40,16:40",  # volume voxels, like bbox
        "inference.min_segment_size=100",
        f"output=zarr://{path}/context.zarr",
        f"groundtruth={LABELS}",
        "inference.seed_policy=grid",
        "evaluation.skeletonize=false",
        "viewer.publish=false",
        "tracking.run_name=context",
        cwd=path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("inference").experiment_id],
        filter_string="attributes.run_name = 'context'",
    )
    assert run.data.tags["ffnops.eval_bbox"] == "8:32,8:32,8:32"  # within the segmented box
    # The output starts at the box (offset 8): its voxels 8:32 are the volume's 16:40.
    proc = ffnops(
        "evaluate", f"seg=zarr://{path}/context.zarr", f"gt={LABELS}", "bbox=8:32,8:32,8:32",
        "evaluation.skeletonize=false", f"tracking.tracking_uri={uri}", cwd=path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.split()[:1] == ["adapted_rand_error"])
    assert float(line.split()[1]) == pytest.approx(
        run.data.metrics["eval/adapted_rand_error"], abs=1e-4
    )


def test_unknown_alias_lists_registered_models(store: tuple[Path, str]) -> None:
    path, uri = store
    proc = ffnops(
        *infer_args(uri, "model=models:/oracle@champion", "output=zarr://x.zarr"), cwd=path
    )
    assert proc.returncode == 2
    assert "registered models: oracle (@truth)" in proc.stderr and "Traceback" not in proc.stderr


# Bad inference input (a box smaller than the FOV or outside the image, a missing image, ...)
# is part of the bad-input battery, tests/test_bad_commands.py.


def test_existing_output_is_refused_before_any_work(store: tuple[Path, str]) -> None:
    path, uri = store
    write_array(f"zarr://{path}/taken.zarr", np.ones((4, 4, 4), np.uint32))
    proc = ffnops(*infer_args(uri, f"output=zarr://{path}/taken.zarr"), cwd=path)
    assert proc.returncode == 2 and "already exists; pass overwrite=true" in proc.stderr
    assert "seed/s" not in proc.stderr  # refused before any seed was tried (no progress bar)
    with open_volume(f"zarr://{path}/taken.zarr") as volume:
        assert (volume.read() == 1).all()  # untouched


def test_kill_and_resume_gives_the_uninterrupted_result(store: tuple[Path, str]) -> None:
    path, uri = store
    common = (
        "inference.seed_policy=grid",
        "inference.checkpoint_interval_s=0.001",
        f"paths.output_dir={path}/resume",
    )
    reference = ffnops(*infer_args(uri, f"output=zarr://{path}/whole.zarr", *common), cwd=path)
    assert reference.returncode == 0, reference.stderr[-2000:]
    assert not list((path / "resume" / "checkpoints").glob("*.npz"))  # removed when done
    args = [
        sys.executable,
        "-m",
        "ffnops",
        *infer_args(uri, f"output=zarr://{path}/resumed.zarr", *common),
    ]
    process = subprocess.Popen(args, cwd=path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    seeds_done, before = 0, 0.0
    try:
        while time.time() < deadline and process.poll() is None:
            found = list((path / "resume" / "checkpoints").glob("infer-*.npz"))
            if found:
                with np.load(found[0]) as state:
                    seeds_done = int(state["seeds_done"])
                    before = float(state["seconds"])
                if seeds_done >= 20:
                    break
            time.sleep(0.2)
    finally:
        process.kill()
        process.wait()
    assert seeds_done >= 20, "no checkpoint written before the run ended"
    assert not (path / "resumed.zarr").exists()  # killed before the output was written
    proc = ffnops(*args[3:], cwd=path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "resuming from" in proc.stdout
    with (
        open_volume(f"zarr://{path}/whole.zarr") as whole,
        open_volume(f"zarr://{path}/resumed.zarr") as resumed,
    ):
        np.testing.assert_array_equal(resumed.read(), whole.read())
    # the killed start and the resumed end are one MLflow run, finished, with its progress
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("inference").experiment_id],
        f"tags.`ffnops.output` = 'zarr://{path}/resumed.zarr'",
    )
    assert [r.info.status for r in runs] == ["FINISHED"]
    assert client.get_metric_history(runs[0].info.run_id, "progress/seeds_done")
    # its time is the whole inference's: the killed part counts too
    assert runs[0].data.metrics["seconds"] > before > 0
    assert not list((path / "resume" / "checkpoints").iterdir())  # checkpoint and run id gone


def test_a_second_identical_infer_is_refused_while_the_first_runs(
    store: tuple[Path, str],
) -> None:
    """Two identical commands would share one checkpoint and one MLflow run: the second is
    refused at start by the output's lock, and the first finishes as if alone."""
    path, uri = store
    args = infer_args(uri, f"output=zarr://{path}/twice.zarr", f"paths.output_dir={path}/twice")
    first = subprocess.Popen(
        [sys.executable, "-m", "ffnops", *args], cwd=path, stdout=subprocess.PIPE, text=True
    )
    lock = path / ".twice.zarr.lock"
    deadline = time.time() + 300
    while time.time() < deadline and first.poll() is None and not lock.exists():
        time.sleep(0.1)
    assert lock.exists(), "the first command never took its lock"
    first.send_signal(signal.SIGSTOP)  # held mid-run, however fast this machine is
    try:
        second = ffnops(*args, cwd=path)
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=600) == 0
    assert second.returncode == 2
    assert f"is being written by another ffnops process (PID {first.pid}" in second.stderr
    assert not lock.exists()
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("inference").experiment_id],
        f"tags.`ffnops.output` = 'zarr://{path}/twice.zarr'",
    )
    assert [r.info.status for r in runs] == ["FINISHED"]


def test_corrupt_checkpoint_is_reported(tmp_path: Path) -> None:
    from ffnops.errors import FfnopsError
    from ffnops.ffn.canvas import Canvas
    from ffnops.ffn.options import InferenceOptions
    from ffnops.inference.runner import resume_from

    canvas = Canvas(np.zeros((20, 20, 20), np.float32), (9, 9, 9), (2, 2, 2), InferenceOptions())
    assert resume_from(tmp_path / "none.npz", canvas) == (0, 0.0)  # nothing to resume
    spoiled = tmp_path / "infer-x.npz"
    spoiled.write_bytes(b"garbage")
    with pytest.raises(
        FfnopsError, match=r"corrupt inference checkpoint .*delete it to start over"
    ):
        resume_from(spoiled, canvas)
    # A checkpoint cut short (a full disk, a copy interrupted) is the same named error.
    whole = tmp_path / "whole.npz"
    np.savez(whole, **canvas.state())
    truncated = tmp_path / "infer-y.npz"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(FfnopsError, match=r"corrupt inference checkpoint .*infer-y.npz"):
        resume_from(truncated, canvas)


def test_groundtruth_outside_the_box_fails_before_inference(store: tuple[Path, str]) -> None:
    path, uri = store
    with open_volume(LABELS) as gt:
        far, voxel_size = gt.read()[:32], gt.voxel_size
    write_array(
        f"zarr://{path}/far_gt.zarr", far, voxel_size=voxel_size, offset=(200, 0, 0), overwrite=True
    )
    proc = ffnops(
        *infer_args(
            uri, f"output=zarr://{path}/never.zarr", f"groundtruth=zarr://{path}/far_gt.zarr"
        ),
        cwd=path,
    )
    assert proc.returncode == 2
    assert "does not overlap the box [0:64,0:64,0:64]" in proc.stderr
    assert "it covers [200:232," in proc.stderr
    assert "seed/s" not in proc.stderr  # no progress bar: it failed before any work
    assert not (path / "never.zarr").exists()


def test_groundtruth_covering_part_of_the_box_is_scored_there(tmp_path: Path) -> None:
    """FIB-25's labels stop at z = 175 of its 250: the labelled part is scored, not refused."""
    from ffnops.commands.scoring import groundtruth_part

    with open_volume(LABELS) as gt:
        labels = gt.read()
    write_array(f"zarr://{tmp_path}/gt.zarr", labels[:40], offset=(10, 0, 0))
    part = groundtruth_part(
        f"zarr://{tmp_path}/gt.zarr", BBox((20, 0, 0), (64, 64, 64)), (0, 0, 0), (1, 1, 1)
    )
    assert str(part.in_box) == "0:30,0:64,0:64"  # box z 20..50 is where the labels are
    assert str(part.in_groundtruth) == "10:40,0:64,0:64"
    whole = groundtruth_part(
        f"zarr://{tmp_path}/gt.zarr", BBox((15, 0, 0), (8, 8, 8)), (0, 0, 0), (1, 1, 1)
    )
    assert str(whole.in_box) == "0:8,0:8,0:8" and str(whole.in_groundtruth) == "5:13,0:8,0:8"
