"""The bad-input battery: every command, given input it cannot use, exits 2 with one line.

Each case runs the real command line (``ffnops.cli.main``, in this process so the battery stays
cheap) in a prepared workspace and asserts: exit code 2, exactly one line on stderr naming the
culprit, no traceback, and nothing new on disk (no Hydra run folder, no partial output, no lock,
no checkpoint, no MLflow store). One parametrized test per command family.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import mlflow
import numpy as np
import pytest

from ffnops.cli import main
from ffnops.data.coordinate_file import save_coordinates
from ffnops.ffn.coordinates import CoordinateTable
from ffnops.volumes import write_array

# (case id, command line, text the one line must hold); {ws} is the workspace folder.
Case = tuple[str, list[str], str]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, em_image: np.ndarray) -> Iterator[Path]:
    """A workspace with a store holding Google's imported model (and one whose files were
    deleted), an image, its labels, a segmentation, and a few broken files."""
    ws = tmp_path_factory.mktemp("battery")
    image = np.pad(em_image, ((4, 4), (0, 0), (0, 0)), mode="reflect")  # 40 x 40 x 48
    labels = (np.arange(image.size).reshape(image.shape) // 4000 + 1).astype(np.uint32)
    write_array(f"h5://{ws}/image.h5#raw", image)
    write_array(f"h5://{ws}/partitions.h5#af", (labels % 3).astype(np.uint8))
    write_array(f"zarr://{ws}/existing.zarr", labels)
    write_array(f"h5://{ws}/coarse.h5#stack", labels, voxel_size=(20.0, 20.0, 20.0))
    (ws / "bad.swc").write_text("# not numbers\n1 0 a b c\n")
    write_array(f"h5://{ws}/labels.h5#stack", labels)
    write_array(f"h5://{ws}/seg.h5#seg", labels)
    write_array(f"h5://{ws}/zeros.h5#stack", np.zeros_like(labels))
    write_array(f"h5://{ws}/other.h5#seg", labels[:, :20])
    write_array(f"h5://{ws}/nan.h5#raw", np.full(image.shape, np.nan, np.float32))
    with h5py.File(ws / "image.h5", "a") as f:
        f["raw2d"] = image[0]
    (ws / "exists.zarr").mkdir()
    (ws / "exists.zarr" / "notes.txt").write_text("a folder that is not a volume")
    (ws / "garbage.db").write_bytes(b"this is not an sqlite database" * 100)
    (ws / "bad.index").write_bytes(b"not a table" * 10)
    (ws / "unknown.pbtxt").write_text('image_mean: 128\nbogus_field: "x"\n')
    (ws / "coords.npz").write_bytes(b"not an npz")
    # Two training centres of the bundled sample (the train command's default dataset).
    zyx = np.array([[40, 64, 64], [60, 64, 64]], np.int32)
    table = CoordinateTable(("sample",), np.zeros(2, np.uint16), zyx, np.ones(2, np.uint8))
    save_coordinates(table, ws / "sample_coords.npz")
    uri = f"sqlite:///{ws}/mlflow.db"
    run(ws, ["import-checkpoint", "google", "model_name=google", "alias=baseline", f"tracking.tracking_uri={uri}"], 0)  # fmt: skip
    run(ws, ["import-checkpoint", "google", "model_name=gone", f"tracking.tracking_uri={uri}"], 0)
    files_of_gone = mlflow.MlflowClient(uri).get_model_version_download_uri("gone", "1")
    shutil.rmtree(Path(files_of_gone.removeprefix("file://")))
    yield ws


@contextmanager
def in_workspace(ws: Path) -> Iterator[None]:
    """In ``ws``, and afterwards the logging a command's Hydra set up is undone (its handlers
    write to this test's captured streams, which close when the test ends)."""
    cwd, handlers, level = os.getcwd(), list(logging.root.handlers), logging.root.level
    os.chdir(ws)
    try:
        yield
    finally:
        os.chdir(cwd)
        for handler in logging.root.handlers:
            if handler not in handlers:
                handler.close()
        logging.root.handlers, logging.root.level = handlers, level


def run(ws: Path, args: list[str], code: int) -> None:
    """Runs ``ffnops ARGS`` in ``ws`` and checks its exit code."""
    with in_workspace(ws), pytest.raises(SystemExit) as exit_info:
        main(args)
        raise SystemExit(0)
    assert exit_info.value.code == code, args


Refused = Callable[[list[str], str], None]


@pytest.fixture
def refused(ws: Path, capfd: pytest.CaptureFixture[str]) -> Refused:
    """Runs one case in the workspace and checks how it was refused."""
    return lambda args, expected: check(ws, capfd, args, expected)


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def check(ws: Path, capfd: pytest.CaptureFixture[str], args: list[str], expected: str) -> None:
    args = [a.replace("{ws}", str(ws)) for a in args]
    expected = expected.replace("{ws}", str(ws))
    tracked = args[0] in ("infer", "evaluate", "train", "import-checkpoint", "view", "models", "promote", "tune")  # fmt: skip
    if tracked and not any(a.startswith("tracking.tracking_uri=") for a in args):
        args.append(f"tracking.tracking_uri=sqlite:///{ws}/mlflow.db")
    before = files(ws)
    capfd.readouterr()
    with in_workspace(ws), pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit_info.value.code == 2, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert len(lines) == 1, err[-3000:]
    assert expected in lines[0], lines[0]
    assert files(ws) == before, files(ws) ^ before


IMAGE = "h5://{ws}/image.h5#raw"
IMG = f"image={IMAGE}"
OUT = "output=zarr://{ws}/out.zarr"
MODEL = "model=models:/google@baseline"
INFER = ["infer", MODEL, IMG, OUT]
SEG, GT = "seg=h5://{ws}/seg.h5#seg", "gt=h5://{ws}/labels.h5#stack"
LABELS, PARTS = "labels=h5://{ws}/labels.h5#stack", "v:h5://{ws}/partitions.h5#af"
STEP = "trainer.max_steps=1"
SAMPLE_COORDS = "data.coordinates={ws}/sample_coords.npz"
GARBAGE = "tracking.tracking_uri=sqlite:///{ws}/garbage.db"

INFO: list[Case] = [
    ("missing file", ["info", "uri=h5://{ws}/nope.h5#raw"], "file not found: {ws}/nope.h5"),
    ("unknown scheme", ["info", "uri=s4://bucket/vol"], "no installed plugin can open scheme s4"),
    ("missing dataset", ["info", "uri=h5://{ws}/image.h5#nope"], "no dataset 'nope'"),
    ("2-D dataset", ["info", "uri=h5://{ws}/image.h5#raw2d"], "expected a 3-D (z, y, x) volume"),
    ("not HDF5", ["info", "uri=h5://{ws}/garbage.db#raw"], "is not a readable HDF5 file"),
    ("bbox malformed", ["info", f"uri={IMAGE}", "stats=true", "bbox=0:10,5"], "not of the form"),
    ("bbox reversed", ["info", f"uri={IMAGE}", "stats=true", "bbox=10:0,0:5,0:5"], "stop before"),
    ("bbox empty", ["info", f"uri={IMAGE}", "stats=true", "bbox=3:3,0:5,0:5"], "box is empty"),
    ("bbox outside", ["info", f"uri={IMAGE}", "stats=true", "bbox=0:99,0:5,0:5"], "lies outside"),
    ("bbox without stats", ["info", f"uri={IMAGE}", "bbox=0:9,0:5,0:5"], "add stats=true"),
    ("unknown key", ["info", f"uri={IMAGE}", "stat=true"], "stat"),
    ("wrong type", ["info", f"uri={IMAGE}", "stats=maybe"], "stats"),
]

CONVERT: list[Case] = [
    ("source missing", ["convert", "src=h5://{ws}/n.h5#raw", "dst=zarr://{ws}/c.zarr"], "not found"),
    ("output is a folder", ["convert", f"src={IMAGE}", "dst=zarr://{ws}/exists.zarr"], "exists"),
    ("unknown kind", ["convert", f"src={IMAGE}", "dst=zarr://{ws}/c.zarr", "kind=mesh"], "kind"),
    ("chunks of two", ["convert", f"src={IMAGE}", "dst=zarr://{ws}/c.zarr", "chunks=[8,8]"], "chunks"),
    ("block of zero", ["convert", f"src={IMAGE}", "dst=zarr://{ws}/c.zarr", "block=[0,8,8]"], "block"),
    ("remote output", ["convert", f"src={IMAGE}", "dst=precomputed://http://127.0.0.1:9/s"], "local disk"),
    ("mesh of floats", ["mesh", "seg=h5://{ws}/nan.h5#raw", "output=precomputed://{ws}/m"], "found float32"),
    ("mesh output exists", ["mesh", "seg=h5://{ws}/seg.h5#seg", "output=precomputed://{ws}/exists.zarr"], "exists"),
    ("mesh into zarr", ["mesh", "seg=h5://{ws}/seg.h5#seg", "output=zarr://{ws}/m.zarr"], "precomputed:///DIR"),
    ("mesh remote", ["mesh", "seg=h5://{ws}/seg.h5#seg", "output=precomputed://http://127.0.0.1:9/s"], "local"),
    ("mesh block of zero", ["mesh", "seg=h5://{ws}/seg.h5#seg", "output=precomputed://{ws}/m", "block=[0,8,8]"], "block"),
    ("mesh seg missing", ["mesh", "seg=h5://{ws}/none.h5#seg", "output=precomputed://{ws}/m"], "not found"),
    ("skeletons of floats", ["skeletons", "seg=h5://{ws}/nan.h5#raw", "output=precomputed://{ws}/k"], "found float32"),
    ("skeletons output exists", ["skeletons", "seg=h5://{ws}/seg.h5#seg", "output=precomputed://{ws}/exists.zarr"], "exists"),
    ("skeletons into zarr", ["skeletons", "seg=h5://{ws}/seg.h5#seg", "output=zarr://{ws}/k.zarr"], "skeletons are files beside"),
    ("skeletons block of zero", ["skeletons", "seg=h5://{ws}/seg.h5#seg", "output=precomputed://{ws}/k", "block=[8,0,8]"], "block"),
]  # fmt: skip

INFER_CASES: list[Case] = [
    ("unknown model", ["infer", "model=models:/nope@champion", IMG, OUT], "not registered"),
    ("model files deleted", ["infer", "model=models:/gone/1", IMG, OUT], "models:/gone/1"),
    ("image missing", ["infer", MODEL, "image=h5://{ws}/nope.h5#raw", OUT], "file not found"),
    ("bbox reversed", [*INFER, "bbox=20:10,0:40,0:48"], "stop before its start"),
    ("bbox malformed", [*INFER, "bbox=0:10:5"], "not of the form"),
    ("bbox outside", [*INFER, "bbox=0:40,0:40,100:200"], "outside the volume"),
    ("box smaller than the FOV", [*INFER, "bbox=0:40,0:20,0:20"], "larger than the box"),
    ("output is a folder", ["infer", MODEL, IMG, "output=zarr://{ws}/exists.zarr"], "exists"),
    ("gpu without CUDA", [*INFER, "executor=gpu"], "no CUDA device"),
    ("batch size 0", [*INFER, "executor.batch_size=0"], "executor.batch_size"),
    ("stddev 0", [*INFER, "image_stddev=0"], "image_stddev=0"),
    ("NaN image", ["infer", MODEL, "image=h5://{ws}/nan.h5#raw", OUT, "image_mean=0"], "NaN"),
    ("corrupt store", [*INFER, GARBAGE], "garbage.db is not a readable SQLite database"),
    ("workers 0", [*INFER, "executor=daisy", "executor.workers=0"], "workers"),
    ("unknown executor key", [*INFER, "executor.bogus=1"], "bogus"),
    (
        "threshold not a probability",
        [*INFER, "inference.move_threshold=2"],
        "inference.move_threshold must be a probability",
    ),
    (
        "unknown seed order",
        [*INFER, "inference.seed_order=backwards"],
        "inference.seed_order must be one of forward, reverse",
    ),
    (
        "eval box outside the box",
        [
            *INFER,
            "groundtruth=h5://{ws}/labels.h5#stack",
            "bbox=0:40,0:40,0:40",
            "eval_bbox=20:60,0:40,0:40",
        ],
        "must be a non-empty part",
    ),
    (
        "eval box without ground truth",
        [*INFER, "eval_bbox=0:20,0:20,0:20"],
        "needs groundtruth=URI",
    ),
]

DAISY = [*INFER, "executor=daisy", "executor.block_size=[40,40,48]"]
BLOCKWISE: list[Case] = [
    ("block smaller than the FOV", [*INFER, "executor=daisy", "executor.block_size=[12,32,32]"], "smaller than the model's FOV"),
    ("overlap as large as the block", [*DAISY, "executor.overlap=[40,4,4]"], "must be smaller than executor.block_size"),
    ("no workers", [*DAISY, "executor.workers=0"], "executor.workers must be at least 1"),
    ("single-writer format", ["infer", MODEL, IMG, "output=h5://{ws}/seg2.h5#seg", "executor=daisy", "executor.block_size=[40,40,48]"], "this format takes one writer"),
    ("output exists", ["infer", MODEL, IMG, "output=zarr://{ws}/existing.zarr", "executor=daisy", "executor.block_size=[40,40,48]"], "already exists; pass overwrite=true"),
    ("unknown executor", [*INFER, "executor.name=slurm"], "no installed plugin offers it; executors: "),
    ("block timeout 0", [*DAISY, "executor.block_timeout_s=0"], "executor.block_timeout_s must be positive"),
    ("negative retries", [*DAISY, "executor.max_retries=-1"], "executor.max_retries must be >= 0"),
    ("unknown stitch fraction", [*DAISY, "executor.stitch_fraction_of=larger"], "must be one of smaller, each, got 'larger'"),
    ("stitch fraction above 1", [*DAISY, "executor.stitch_min_fraction=1.5"], "executor.stitch_min_fraction must be in [0, 1)"),
    ("unknown stitch disputes", [*DAISY, "executor.stitch_disputes=vote"], "executor.stitch_disputes must be one of owner, join, got 'vote'"),
    ("worker command not found", [*DAISY, "executor.worker_command=[srun-not-installed,-n1]"], "executor.worker_command=['srun-not-installed', '-n1']: 'srun-not-installed' is not a command on PATH"),
    ("scheduler address of another machine", [*DAISY, "executor.scheduler_host=192.0.2.1"], "executor.scheduler_host=192.0.2.1: not an address of this machine"),
    ("worker start timeout 0", [*DAISY, "executor.worker_start_timeout_s=0"], "executor.worker_start_timeout_s must be positive"),
    ("worker command that fails", [*DAISY, "executor.worker_command=[sh,-c,'echo srun: error: invalid partition specified >&2; exit 1']"], "the worker it started exited with status 1 before it answered: srun: error: invalid partition specified"),
    ("no worker within the limit", [*DAISY, "executor.worker_command=[sh,-c,'sleep 60']", "executor.worker_start_timeout_s=1"], "executor.worker_start_timeout_s=1: no worker started within 1 s"),
    ("batching one canvas", [*INFER, "executor.batch_size=4"], "set executor.block_size"),
    ("keeping blocks of one canvas", [*INFER, "executor.keep_blocks=true"], "executor.keep_blocks=true keeps"),
    ("continuing objects in one canvas", [*INFER, "executor.continue_objects=true"], "executor.continue_objects=true continues"),
    ("seeding the context of one canvas", [*INFER, "executor.seed_context=true"], "executor.seed_context=true seeds a block's context"),
]  # fmt: skip

EVALUATE: list[Case] = [
    ("segmentation missing", ["evaluate", "seg=h5://{ws}/nope.h5#seg", GT], "file not found"),
    ("ground truth missing", ["evaluate", SEG, "gt=h5://{ws}/nope.h5#stack"], "file not found"),
    ("all-zero ground truth", ["evaluate", SEG, "gt=h5://{ws}/zeros.h5#stack"], "all 0"),
    ("float segmentation", ["evaluate", "seg=h5://{ws}/nan.h5#raw", GT], "expected dtype"),
    ("unknown run", ["evaluate", SEG, GT, f"run_id={'0' * 32}"], "no such MLflow run"),
    ("skeletons missing", ["evaluate", SEG, GT, "skeletons={ws}/nope.swc"], "nope.swc"),
    ("bbox reversed", ["evaluate", SEG, GT, "bbox=9:1,0:4,0:4"], "stop before its start"),
    (
        "ground truth of other voxels",
        ["evaluate", SEG, "gt=h5://{ws}/coarse.h5#stack"],
        "has voxels of [20.0, 20.0, 20.0] nm",
    ),
    (
        "not an SWC file",
        ["evaluate", SEG, GT, "skeletons={ws}/bad.swc"],
        "bad.swc: not an SWC file",
    ),
]

TRAIN: list[Case] = [
    ("coordinates missing", ["train", "data.coordinates={ws}/nope.npz", STEP], "nope.npz"),
    ("coordinates not npz", ["train", "data.coordinates={ws}/coords.npz", STEP], "coords.npz"),
    ("resume missing", ["train", "resume={ws}/no-run", STEP], "no-run"),
    ("gpu without CUDA", ["train", "trainer=gpu", STEP], "no CUDA device"),
    ("batch size 0", ["train", "training.batch_size=0", STEP], "batch_size must be at least 1"),
    ("no steps", ["train", "trainer.max_steps=0"], "max_steps must be at least 1"),
    ("validation box where training is", ["train", SAMPLE_COORDS, STEP, "training.validation.box=50:100,0:128,0:128"], "2 training patches"),
    ("validation box smaller than the FOV", ["train", SAMPLE_COORDS, STEP, "training.validation.box=120:130,0:64,0:64"], "smaller than the model's FOV"),
    ("validation metric unknown", ["train", SAMPLE_COORDS, STEP, "training.validation.box=110:150,0:64,0:64", "training.validation.metric=f1"], "expected one of"),
    ("validation volume unknown", ["train", SAMPLE_COORDS, STEP, "training.validation.box=110:150,0:64,0:64", "training.validation.volume=other"], "not one of data.volumes"),
    ("validation settings without a box", ["train", SAMPLE_COORDS, STEP, "training.validation.every_n_steps=5"], "training.validation.box is not"),
]  # fmt: skip

IMPORT: list[Case] = [
    ("checkpoint missing", ["import-checkpoint", "{ws}/nope", "model_name=m"], "index not found"),
    ("not a checkpoint", ["import-checkpoint", "{ws}/bad", "model_name=m"], "not a TensorFlow"),
    ("depth contradicts", ["import-checkpoint", "google", "model_name=m", "depth=8"], "depth=8"),
    ("unknown request field", ["import-checkpoint", "google", "model_name=m", "request={ws}/unknown.pbtxt"], 'no field named "bogus_field"'),
    ("request missing", ["import-checkpoint", "google", "model_name=m", "request={ws}/n.pbtxt"], "n.pbtxt"),
]  # fmt: skip

DATA_PREP: list[Case] = [
    ("labels missing", ["partitions", "labels=h5://{ws}/n.h5#s", "output=h5://{ws}/p.h5#af"], "not found"),
    ("partition output exists", ["partitions", LABELS, "output=zarr://{ws}/exists.zarr"], "exists"),
    ("lom radius of two", ["partitions", LABELS, "output=h5://{ws}/p.h5#af", "lom_radius=[4,4]"], "lom_radius"),
    ("no thresholds", ["partitions", LABELS, "output=h5://{ws}/p.h5#af", "thresholds=[]"], "thresholds"),
    ("volume without a name", ["coordinates", "volumes=[h5://{ws}/partitions.h5#af]", "output={ws}/c.npz"], "name:URI"),
    ("negative margin", ["coordinates", f"volumes=[{PARTS}]", "output={ws}/c.npz", "margin=[-1,0,0]"], "margin"),
    ("labels as partitions", ["coordinates", "volumes=[v:h5://{ws}/labels.h5#stack]", "output={ws}/c.npz"], "uint8"),
    ("coordinates exist", ["coordinates", f"volumes=[{PARTS}]", "output={ws}/coords.npz"], "coords.npz exists"),
]  # fmt: skip

TRACKING: list[Case] = [
    ("view unknown run", ["view", "0" * 32, "timeout_s=1"], "no MLflow run"),
    ("view missing volume", ["view", "h5://{ws}/nope.h5#seg", "timeout_s=1"], "file not found"),
    ("models unknown", ["models", "nope"], "nope"),
    ("promote unknown version", ["promote", "models:/google/9", "champion"], "models:/google/9"),
    (
        "tune without a search",
        ["tune", "models:/google/1", "evaluation=val-box"],
        "no finished run named 'val-box'",
    ),
    (
        "tune unknown metric",
        ["tune", "models:/google/1", "evaluation=val-box", "metric=eval/bogus"],
        "metric='eval/bogus'",
    ),
    ("corrupt store", ["models", "google", GARBAGE], "garbage.db"),
    ("server without a secret", ["server", "dry_run=true"], "MLFLOW_FLASK_SERVER_SECRET_KEY"),
]

# Pipelines check their choices before their first step runs.
PIPELINES: list[Case] = [
    ("quickstart unknown optimizer", ["quickstart", "train.optimizer=nope"], "train.optimizer=nope"),
    ("quickstart unknown init", ["quickstart", "quickstart.init=nope"], "quickstart.init"),
    ("fib25 unknown init", ["fib25", "init=nope"], "init must be scratch or google"),
]  # fmt: skip


def ids(cases: list[Case]) -> list[str]:
    return [case[0] for case in cases]


@pytest.mark.parametrize(("name", "args", "expected"), INFO, ids=ids(INFO))
def test_info(refused: Refused, name: str, args: list[str], expected: str) -> None:
    refused(args, expected)


@pytest.mark.parametrize(("name", "args", "expected"), CONVERT, ids=ids(CONVERT))
def test_convert_mesh_and_skeletons(
    refused: Refused, name: str, args: list[str], expected: str
) -> None:
    refused(args, expected)


@pytest.mark.parametrize(("name", "args", "expected"), INFER_CASES, ids=ids(INFER_CASES))
def test_infer(refused: Refused, name: str, args: list[str], expected: str) -> None:
    refused(args, expected)


@pytest.mark.parametrize(("name", "args", "expected"), BLOCKWISE, ids=ids(BLOCKWISE))
def test_blockwise(refused: Refused, name: str, args: list[str], expected: str) -> None:
    refused(args, expected)


@pytest.mark.parametrize(("name", "args", "expected"), EVALUATE, ids=ids(EVALUATE))
def test_evaluate(refused: Refused, name: str, args: list[str], expected: str) -> None:
    refused(args, expected)


@pytest.mark.parametrize(("name", "args", "expected"), TRAIN, ids=ids(TRAIN))
def test_train(refused: Refused, name: str, args: list[str], expected: str) -> None:
    refused(args, expected)


@pytest.mark.parametrize(("name", "args", "expected"), IMPORT, ids=ids(IMPORT))
def test_import_checkpoint(refused: Refused, name: str, args: list[str], expected: str) -> None:
    refused(args, expected)


@pytest.mark.parametrize(("name", "args", "expected"), DATA_PREP, ids=ids(DATA_PREP))
def test_partitions_and_coordinates(
    refused: Refused, name: str, args: list[str], expected: str
) -> None:
    refused(args, expected)


@pytest.mark.parametrize(("name", "args", "expected"), TRACKING, ids=ids(TRACKING))
def test_view_models_and_server(
    refused: Refused, name: str, args: list[str], expected: str
) -> None:
    refused(args, expected)


@pytest.mark.parametrize(("name", "args", "expected"), PIPELINES, ids=ids(PIPELINES))
def test_pipelines(refused: Refused, name: str, args: list[str], expected: str) -> None:
    refused(args, expected)


def test_compiling_without_a_cpp_compiler(
    refused: Refused, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch.compile builds C++ kernels on a CPU: without a compiler it is refused up front."""
    from torch._inductor import config

    monkeypatch.setattr(config.cpp, "cxx", (None, "/nonexistent/g++"))  # what CXX=... sets
    args = [*INFER, "executor=cpu", "executor.compile=true"]
    refused(args, "executor.compile=true: torch.compile needs a C++ compiler")


def test_the_battery_is_large_enough() -> None:
    cases = [INFO, CONVERT, INFER_CASES, BLOCKWISE, EVALUATE, TRAIN, IMPORT, DATA_PREP, TRACKING]
    cases.append(PIPELINES)
    assert sum(map(len, cases)) >= 40


def test_a_store_locked_by_another_process_is_one_line(
    ws: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A store another process holds locked past SQLite's wait is named, not a traceback."""
    shutil.copy(ws / "mlflow.db", ws / "locked.db")
    holder = sqlite3.connect(ws / "locked.db")
    holder.execute("BEGIN EXCLUSIVE")  # as a command stopped mid-write holds it
    try:
        args = ["models", "google", "tracking.tracking_uri=sqlite:///{ws}/locked.db"]
        check(ws, capfd, args, "tracking store sqlite:///{ws}/locked.db is locked by another")
    finally:
        holder.rollback()
        holder.close()
        (ws / "locked.db").unlink()
