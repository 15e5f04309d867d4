"""Blockwise inference (docs/inference.md): the oracle network over a synthetic volume of 3x3x3
blocks, on real daisy worker processes, written as a real zarr volume, tracked in a real store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from commands import ffnops as run_ffnops
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from oracle import register_oracle
from skimage.metrics import adapted_rand_error

from ffnops.sample_data.synthetic import synthetic_volume
from ffnops.volumes import open_volume, write_array

SHAPE = (96, 96, 96)
BLOCK = "[32,32,32]"  # 3 x 3 x 3 blocks
ffnops = partial(run_ffnops, timeout=900)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The oracle as models:/oracle@truth and synthetic labels (cells that cross block faces)."""
    path = tmp_path_factory.mktemp("blockwise")
    uri = register_oracle(path)
    _, labels = synthetic_volume(SHAPE, objects=12, seed=3)
    write_array(f"zarr://{path}/labels.zarr", labels, chunks=(32, 32, 32))
    return {"path": path, "uri": uri, "labels": labels}


def infer_args(world: dict[str, object], output: str, *extra: str) -> list[str]:
    return [
        "infer",
        "model=models:/oracle@truth",
        f"image=zarr://{world['path']}/labels.zarr",
        f"output=zarr://{world['path']}/{output}",
        f"tracking.tracking_uri={world['uri']}",
        "inference.seed_policy=grid",
        "inference.min_segment_size=100",
        "viewer.publish=false",
        *extra,
    ]


def read(world: dict[str, object], output: str) -> np.ndarray:
    with open_volume(f"zarr://{world['path']}/{output}") as volume:
        return np.asarray(volume.read())


def on_both_executors(world: dict[str, object], name: str, *extra: str) -> np.ndarray:
    """The job in 3 x 3 x 3 blocks in this process (``executor=cpu``) and on daisy's workers,
    into ``NAME_cpu.zarr`` and ``NAME_daisy.zarr``: identical; the result."""
    results = {}
    for executor in ("cpu", "daisy"):
        args = infer_args(
            world, f"{name}_{executor}.zarr", f"executor={executor}",
            f"executor.block_size={BLOCK}", *extra,
        )  # fmt: skip
        proc = ffnops(*args, cwd=world["path"])  # type: ignore[arg-type]
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[executor] = read(world, f"{name}_{executor}.zarr")
    np.testing.assert_array_equal(results["daisy"], results["cpu"])
    return results["daisy"]


def assert_like_the_labels(labels: np.ndarray, result: np.ndarray, local: np.ndarray) -> None:
    """The outer 3 voxels of the box are left partly unlabelled by one canvas too (FOV centres
    stay a radius inside the box, and floods seldom reach its faces): scored inside them, and
    on the whole box no worse than one canvas."""
    inside = (slice(3, -3),) * 3
    assert adapted_rand_error(labels[inside], result[inside].astype(np.uint32))[0] < 0.01
    whole = adapted_rand_error(labels, result.astype(np.uint32))[0]
    assert whole <= adapted_rand_error(labels, local.astype(np.uint32))[0] + 1e-3


def run_of(world: dict[str, object], output: str) -> Run:
    """The inference run that wrote ``output`` (in the world's folder)."""
    client = MlflowClient(tracking_uri=world["uri"])  # type: ignore[arg-type]
    (run,) = client.search_runs(
        [client.get_experiment_by_name("inference").experiment_id],
        f"tags.`ffnops.output` = 'zarr://{world['path']}/{output}'",
    )
    return run


@pytest.fixture(scope="module")
def local(world: dict[str, object]) -> np.ndarray:
    proc = ffnops(*infer_args(world, "local.zarr"), cwd=world["path"])  # type: ignore[arg-type]
    assert proc.returncode == 0, proc.stderr[-3000:]
    return read(world, "local.zarr")


@pytest.fixture(scope="module")
def stitched(world: dict[str, object]) -> np.ndarray:
    """3 x 3 x 3 blocks on 2 daisy workers, scored against the labels."""
    extra = (
        "executor=daisy",
        f"executor.block_size={BLOCK}",
        "executor.workers=2",
        f"groundtruth=zarr://{world['path']}/labels.zarr",
        "viewer.publish=true",
    )
    proc = ffnops(*infer_args(world, "stitched.zarr", *extra), cwd=world["path"])  # type: ignore[arg-type]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "27 blocks [3, 3, 3]" in proc.stdout
    return read(world, "stitched.zarr")


def test_stitched_oracle_matches_the_labels_with_one_id_per_object(
    world: dict[str, object], stitched: np.ndarray, local: np.ndarray
) -> None:
    labels: np.ndarray = world["labels"]  # type: ignore[assignment]
    assert_like_the_labels(labels, stitched, local)
    crossing = 0
    for label in np.unique(labels):
        where = labels == label
        ids, counts = np.unique(stitched[where & (stitched > 0)], return_counts=True)
        spans = [np.unique(np.nonzero(where)[axis] // 32) for axis in range(3)]
        if max(len(s) for s in spans) > 1:
            crossing += 1
            assert ids[counts.argmax()] > 0 and counts.max() >= 0.99 * counts.sum(), label
    assert crossing >= 10  # most cells cross a block face or corner


def test_the_blockwise_run_is_one_mlflow_run_with_its_layout_and_progress(
    world: dict[str, object], stitched: np.ndarray
) -> None:
    client = MlflowClient(tracking_uri=world["uri"])  # type: ignore[arg-type]
    run = run_of(world, "stitched.zarr")
    assert run.info.status == "FINISHED"
    assert run.data.params["blockwise.blocks"] == "27"
    assert run.data.params["blockwise.context"] == "[16, 16, 16]"  # FOV radius 8 + overlap 8
    assert run.data.params["executor.workers"] == "2"
    history = client.get_metric_history(run.info.run_id, "progress/segment_blocks_done")
    assert history[-1].value == 27
    assert client.get_metric_history(run.info.run_id, "progress/voxels_per_s")
    assert run.data.metrics["objects"] == len(np.unique(stitched)) - 1
    labels: np.ndarray = world["labels"]  # type: ignore[assignment]
    error, _, _ = adapted_rand_error(labels, stitched.astype(np.uint32))
    assert run.data.metrics["eval/adapted_rand_error"] == pytest.approx(error, abs=1e-6)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"objects.csv", "segmentation_overlay.png", "neuroglancer"} <= artifacts
    assert "neuroglancer_url" in run.data.tags
    # The workers meshed the output block by block; an object across blocks is one manifest of
    # fragments from several blocks.
    assert client.get_metric_history(run.info.run_id, "progress/mesh_blocks_done")[-1].value == 27
    assert run.data.metrics["mesh_objects"] == run.data.metrics["objects"]
    largest = int(np.bincount(stitched[stitched > 0].ravel()).argmax())
    manifest = client.download_artifacts(
        run.info.run_id, f"neuroglancer/segmentation/mesh/{largest}:0", str(world["path"])
    )
    names = json.loads(Path(manifest).read_text())["fragments"]
    assert len({name.split(":")[2] for name in names}) > 1  # fragments of several blocks
    table = client.download_artifacts(run.info.run_id, "objects.csv")
    rows = np.genfromtxt(table, delimiter=",", names=True, dtype=None)
    assert set(rows["global_id"]) == set(np.unique(stitched)) - {0}
    for row in rows:  # every global id leads back to a seed that lies in that object
        assert stitched[row["seed_z"], row["seed_y"], row["seed_x"]] == row["global_id"]


def test_one_daisy_block_equals_local_exactly(world: dict[str, object], local: np.ndarray) -> None:
    args = infer_args(world, "one_block.zarr", "executor=daisy", "executor.block_size=[96,96,96]")
    proc = ffnops(*args, cwd=world["path"])  # type: ignore[arg-type]
    assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_array_equal(read(world, "one_block.zarr"), local)


def test_batched_canvases_equal_unbatched_and_executors_agree(
    world: dict[str, object], stitched: np.ndarray
) -> None:
    for batch in (1, 4):
        args = infer_args(
            world,
            f"batch{batch}.zarr",
            f"executor.block_size={BLOCK}",
            f"executor.batch_size={batch}",
        )
        proc = ffnops(*args, cwd=world["path"])  # type: ignore[arg-type]
        assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_array_equal(read(world, "batch4.zarr"), read(world, "batch1.zarr"))
    np.testing.assert_array_equal(read(world, "batch1.zarr"), stitched)  # local == daisy


def test_blocks_in_waves_continue_their_neighbours_objects_on_either_executor(
    world: dict[str, object], local: np.ndarray
) -> None:
    """executor.continue_objects: blocks run in waves, each canvas continuing the objects its
    finished neighbours labelled; the same on daisy's workers as in this process, one id per
    cell, and every block counted in the progress."""
    waves = on_both_executors(world, "waves", "executor.continue_objects=true")
    labels: np.ndarray = world["labels"]  # type: ignore[assignment]
    assert_like_the_labels(labels, waves, local)
    client = MlflowClient(tracking_uri=world["uri"])  # type: ignore[arg-type]
    run = run_of(world, "waves_daisy.zarr")
    assert run.data.metrics["objects_continued"] >= 10  # most cells cross a face
    assert run.data.metrics["objects"] == len(np.unique(waves)) - 1
    history = client.get_metric_history(run.info.run_id, "progress/segment_blocks_done")
    values = [h.value for h in history]
    assert values == sorted(values) and values[0] >= 0 and values[-1] == 27


def test_blocks_seeding_their_context_flood_more_and_stitch_one_id_per_cell(
    world: dict[str, object], local: np.ndarray, stitched: np.ndarray
) -> None:
    """executor.seed_context: each block's canvas also floods from the seeds of its context;
    the same on daisy's workers as in this process, one id per cell, every fragment in the
    output, and more FOV steps than the same blocks seeded in their write boxes only."""
    context = on_both_executors(world, "context", "executor.seed_context=true")
    labels: np.ndarray = world["labels"]  # type: ignore[assignment]
    assert_like_the_labels(labels, context, local)
    run = run_of(world, "context_daisy.zarr")
    assert run.data.metrics["objects"] == len(np.unique(context)) - 1
    assert (
        run.data.metrics["network_calls"]
        > run_of(world, "stitched.zarr").data.metrics["network_calls"]
    )  # the same blocks, seeded in their write boxes only
    client = MlflowClient(tracking_uri=world["uri"])  # type: ignore[arg-type]
    path = Path(str(world["path"]))
    table = client.download_artifacts(run.info.run_id, "objects.csv", str(path))
    rows = np.genfromtxt(table, delimiter=",", names=True, dtype=None)
    assert set(rows["global_id"]) == set(np.unique(context)) - {0}  # no fragment left unwritten


def test_continuing_objects_needs_a_context_no_larger_than_a_block(
    world: dict[str, object],
) -> None:
    args = infer_args(
        world,
        "never.zarr",
        "executor.block_size=[17,17,17]",
        "executor.overlap=[12,12,12]",
        "executor.continue_objects=true",
    )
    proc = ffnops(*args, cwd=world["path"])  # type: ignore[arg-type]
    assert proc.returncode != 0
    (line,) = proc.stderr.strip().splitlines()
    assert "executor.continue_objects" in line and "[20, 20, 20]" in line
    assert not (Path(str(world["path"])) / "never.zarr").exists()


def _children(pid: int) -> list[int]:
    """Every descendant process of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        kids = [p for p, parent in parents.items() if parent == current]
        found.extend(kids)
        frontier.extend(kids)
    return found


def _workers(pid: int) -> list[int]:
    out = []
    for child in _children(pid):
        try:
            if b"daisy._subprocess_worker" in Path(f"/proc/{child}/cmdline").read_bytes():
                out.append(child)
        except OSError:
            continue
    return out


def _start(world: dict[str, object], output: str) -> tuple[subprocess.Popen[bytes], Path]:
    work = Path(str(world["path"])) / f"work-{output}"
    args = infer_args(
        world,
        output,
        "executor=daisy",
        f"executor.block_size={BLOCK}",
        "executor.workers=2",
        f"paths.output_dir={work}",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "ffnops", *args],
        cwd=str(world["path"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return process, work


def _wait_for_blocks(process: subprocess.Popen[bytes], work: Path, count: int) -> int:
    deadline = time.time() + 300
    done = 0
    while time.time() < deadline and process.poll() is None:
        done = len(list(work.glob("blockwise/*/blocks/*.npz")))
        if done >= count:
            break
        time.sleep(0.1)
    return done


def test_a_killed_job_resumes_with_an_identical_segmentation(
    world: dict[str, object], stitched: np.ndarray
) -> None:
    process, work = _start(world, "killed.zarr")
    try:
        done = _wait_for_blocks(process, work, 4)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the job and its workers, as a node failure
        process.wait()
    assert 4 <= done < 27, "the job was not killed mid-run"
    assert not (Path(str(world["path"])) / "killed.zarr").exists()  # nothing half-written
    args = infer_args(
        world,
        "killed.zarr",
        "executor=daisy",
        f"executor.block_size={BLOCK}",
        "executor.workers=2",
        f"paths.output_dir={work}",
    )
    proc = ffnops(*args, cwd=world["path"])  # type: ignore[arg-type]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "finished blocks are skipped" in proc.stdout
    np.testing.assert_array_equal(read(world, "killed.zarr"), stitched)
    assert not list(work.glob("blockwise/*"))  # the job's folder is gone once published


def test_a_killed_worker_is_replaced_and_the_result_is_identical(
    world: dict[str, object], stitched: np.ndarray
) -> None:
    process, work = _start(world, "worker_killed.zarr")
    killed = None
    try:
        _wait_for_blocks(process, work, 2)
        for _ in range(100):
            workers = _workers(process.pid)
            if workers:
                killed = workers[0]
                os.kill(killed, signal.SIGKILL)
                break
            time.sleep(0.05)
        assert process.wait(timeout=600) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert killed is not None, "no worker process was found to kill"
    np.testing.assert_array_equal(read(world, "worker_killed.zarr"), stitched)


@pytest.mark.slow  # about 90 s; benchmarks/blockwise.py --part memory measures the same
def test_a_workers_memory_does_not_grow_with_the_volume(tmp_path: Path) -> None:
    """Same 64^3 blocks over a 128^3 and a 256^3 volume: a worker (or the scheduler) that read
    the whole volume would hold 256^3 float32 (64 MiB) more for the image alone, plus the
    canvas's arrays."""
    uri = register_oracle(tmp_path)
    client = MlflowClient(tracking_uri=uri)
    peaks, schedulers = {}, {}
    for size in (128, 256):
        labels = np.zeros((size,) * 3, np.uint32)
        labels[40:90, 40:90, 40:90] = 1  # one object; the rest background (cheap seeds)
        write_array(f"zarr://{tmp_path}/v{size}.zarr", labels, chunks=(64, 64, 64))
        args = [
            "infer",
            "model=models:/oracle@truth",
            f"image=zarr://{tmp_path}/v{size}.zarr",
            f"output=zarr://{tmp_path}/s{size}.zarr",
            f"tracking.tracking_uri={uri}",
            "inference.seed_policy=grid",
            "+inference.seed_policy_args.step=32",
            "executor=daisy",
            "executor.block_size=[64,64,64]",
            "executor.workers=2",
            "viewer.publish=false",
            f"tracking.run_name=v{size}",
        ]
        proc = ffnops(*args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        (found,) = client.search_runs(
            [client.get_experiment_by_name("inference").experiment_id],
            f"attributes.run_name = 'v{size}'",
        )
        peaks[size] = found.data.metrics["peak_rss_mb_per_worker"]
        schedulers[size] = found.data.metrics["peak_rss_mb_scheduler"]
    assert peaks[256] < peaks[128] + 32, peaks
    assert schedulers[256] < schedulers[128] + 64, schedulers  # it holds no block either


# The bad blockwise inputs (block smaller than the FOV, overlap, workers, single-writer formats,
# an existing output, unknown executor, timeouts, retries, stitch settings) are cases of the
# bad-input battery, tests/test_bad_commands.py.


def test_workers_started_through_a_spawn_command_give_the_same_result(
    world: dict[str, object], stitched: np.ndarray
) -> None:
    """``executor.worker_command`` as a cluster's ``srun``: here a wrapper that logs and execs."""
    path = Path(str(world["path"]))
    log = path / "spawned.log"
    wrapper = path / "spawn.sh"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec "$@"\n')
    wrapper.chmod(0o755)
    extra = (
        "executor=daisy",
        f"executor.block_size={BLOCK}",
        "executor.workers=2",
        f"executor.worker_command=[{wrapper}]",
    )
    proc = ffnops(*infer_args(world, "spawned.zarr", *extra), cwd=path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_array_equal(read(world, "spawned.zarr"), stitched)
    check, *workers = log.read_text().splitlines()
    assert "-m ffnops.worker_check" in check  # one worker started before any work
    assert len(workers) >= 3 and all("-m ffnops_plugins.daisy_executor" in x for x in workers)


@pytest.mark.slow  # about 85 s; test_stitching.py tests the rules themselves by default
def test_the_stitching_thresholds_decide_what_is_joined_and_kept_blocks_restitch(
    world: dict[str, object], stitched: np.ndarray
) -> None:
    """No pair of fragments shares 10^9 voxels: one id per fragment. With the blocks kept, the
    same command with the default rule only restitches (no block is segmented again)."""
    path = Path(str(world["path"]))
    extra = ("executor=cpu", f"executor.block_size={BLOCK}", "executor.keep_blocks=true")
    never = "executor.stitch_min_voxels=1000000000"
    proc = ffnops(*infer_args(world, "unstitched.zarr", *extra, never), cwd=path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    unstitched = read(world, "unstitched.zarr")
    assert len(np.unique(unstitched)) > 2 * len(np.unique(stitched))  # one id per fragment
    assert ((unstitched > 0) == (stitched > 0)).all()  # the same voxels, only ids differ
    (blocks,) = path.glob("outputs/blockwise/*/blocks")
    assert sorted(p.name for p in blocks.parent.iterdir()) == ["blocks"]  # only the blocks kept
    before = {p: p.stat().st_mtime_ns for p in blocks.iterdir()}
    assert len(before) == 27

    proc = ffnops(*infer_args(world, "unstitched.zarr", *extra, "overwrite=true"), cwd=path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "finished blocks are skipped" in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in blocks.iterdir()} == before  # none segmented again
    np.testing.assert_array_equal(read(world, "unstitched.zarr"), stitched)


def _slow_block(marks: Path, blocks: list[object]) -> None:
    time.sleep(0.3)
    for block in blocks:
        (marks / str(block.index)).touch()  # type: ignore[attr-defined]


def _marked(marks: Path, block: object) -> bool:
    return (marks / str(block.index)).exists()  # type: ignore[attr-defined]


def test_daisy_reports_progress_while_blocks_finish(tmp_path: Path) -> None:
    """Progress reaches ffnops as blocks finish, not only at the start and the end (daisy's
    ``on_progress`` hook was once hidden by an attribute of the same name)."""
    from ffnops_plugins.daisy_executor import DaisyExecutor

    from ffnops.blocks import BlockLayout
    from ffnops.config.schemas import ExecutorConfig
    from ffnops.executor import BlockTask, TaskProgress
    from ffnops.volume import BBox

    marks = tmp_path / "marks"
    marks.mkdir()
    layout = BlockLayout(BBox.parse("0:30,0:30,0:30"), (10, 10, 10), (0, 0, 0))
    task = BlockTask(
        "segment", layout, partial(_slow_block, marks), partial(_marked, marks), tmp_path
    )
    seen: list[TaskProgress] = []
    DaisyExecutor(ExecutorConfig(workers=2)).run(task, seen.append)
    done = [p.done for p in seen]
    assert done[0] == 0 and done[-1] == 27
    assert any(0 < d < 27 for d in done), done
