"""Training from the command line on the bundled FIB-25 crop, into a real sqlite MLflow store."""

from __future__ import annotations

import functools
import itertools
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from commands import ffnops
from mlflow.tracking import MlflowClient

from ffnops.data.coordinate_file import load_coordinates
from ffnops.data.dataset import Dataset
from ffnops.data.examples import Augmentation
from ffnops.ffn.model import ConvStack3DFFNModel
from ffnops.ffn.training_moves import TrainingGeometry
from ffnops.sample_data import sample_path
from ffnops.tracking.registry import load_registered_model
from ffnops.training.datamodule import FFNDataModule
from ffnops.training.module import FFNTrainingModule

SAMPLE = sample_path("fib25_crop.h5")
QUICK = [
    "model=tiny",
    "optimizer=adam",
    "data.max_val_examples=4",
    "data.num_workers=0",
    "trainer.val_check_interval=10",
    "trainer.enable_model_summary=false",
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Partitions and coordinates of the sample, made with the CLI as a user would."""
    path = tmp_path_factory.mktemp("train")
    proc = ffnops("partitions", "lom_radius=[8,8,8]", "min_size=1000", cwd=path)
    assert proc.returncode == 0, proc.stderr
    proc = ffnops("coordinates", "margin=[16,16,16]", "max_per_partition=300", cwd=path)
    assert proc.returncode == 0, proc.stderr
    assert "14 partitions x 300" in proc.stdout
    return path


def runs(path: Path, experiment: str) -> list[mlflow.entities.Run]:
    client = MlflowClient(tracking_uri=f"sqlite:///{path}/mlflow.db")
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def test_train_logs_and_registers_a_loadable_model(workdir: Path) -> None:
    proc = ffnops(
        "train",
        *QUICK,
        "trainer.max_steps=20",
        "training.log_images_every_n_steps=10",
        "tracking.alias=champion",
        "tracking.experiment_name=registry",
        cwd=workdir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "registered models:/ffn@champion" in proc.stdout
    assert "train: 100%" in proc.stderr and "step/s" in proc.stderr  # the progress bar
    (run,) = runs(workdir, "registry")
    assert run.data.params["model.depth"] == "2"
    assert run.data.params["optimizer._target_"] == "torch.optim.Adam"
    assert {"train/loss", "val/f1", "val/precision", "val/recall"} <= set(run.data.metrics)
    assert run.data.tags["ffnops.data.sample.image"].endswith("fib25_crop.h5#image")
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir}/mlflow.db")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "pictures", "checkpoints"} <= artifacts
    pictures = client.list_artifacts(run.info.run_id, "pictures")
    assert [p.path for p in pictures] == [
        "pictures/step_00000010.png",
        "pictures/step_00000020.png",
    ]
    local = client.download_artifacts(run.info.run_id, pictures[0].path, str(workdir))
    assert Path(local).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    version = client.get_model_version_by_alias("ffn", "champion")
    assert version.tags["ffnops.fov_size"] == "[17, 17, 17]"
    assert version.tags["ffnops.move_threshold"] == "0.9"
    assert version.tags["ffnops.fov_policy"] == '"fixed"'  # JSON values
    model = load_registered_model(f"sqlite:///{workdir}/mlflow.db", "models:/ffn@champion").model
    assert isinstance(model, ConvStack3DFFNModel) and model.fov_size == (17, 17, 17)
    assert model(torch.zeros(1, 2, 17, 17, 17)).shape == (1, 1, 17, 17, 17)


def test_a_cosine_schedule_warms_up_then_decays_to_min_lr(workdir: Path) -> None:
    proc = ffnops(
        "train", *QUICK, "optimizer.lr=1e-3", "trainer.max_steps=12", "trainer.log_every_n_steps=1",
        "training.lr_schedule.name=cosine", "training.lr_schedule.warmup_steps=4",
        "training.lr_schedule.min_lr=1e-4", "tracking.experiment_name=schedule", cwd=workdir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = runs(workdir, "schedule")
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir}/mlflow.db")
    history = client.get_metric_history(run.info.run_id, "lr-Adam")
    lrs = [m.value for m in sorted(history, key=lambda m: m.step)]
    assert len(lrs) >= 10
    peak = int(np.argmax(lrs))
    assert lrs[0] < 0.3e-3 and lrs[peak] == pytest.approx(1e-3, rel=0.05)
    assert all(a < b for a, b in itertools.pairwise(lrs[: peak + 1]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[peak:]))
    assert lrs[-1] < 0.3e-3 and lrs[-1] >= 1e-4


def test_fine_tuning_starts_from_a_registered_model(workdir: Path) -> None:
    common = [*QUICK, "tracking.experiment_name=finetune", "trainer.val_check_interval=1"]
    proc = ffnops("train", *common, "trainer.max_steps=3", "tracking.alias=parent", cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # lr 0: the fine-tuned weights must be exactly the parent's if they were loaded
    proc = ffnops(
        "train",
        *common,
        "trainer.max_steps=1",
        "optimizer.lr=0",
        "model.init_from=models:/ffn@parent",
        "tracking.alias=child",
        cwd=workdir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "initialised from models:/ffn@parent" in proc.stdout
    store = f"sqlite:///{workdir}/mlflow.db"
    parent = load_registered_model(store, "models:/ffn@parent").model.state_dict()
    child = load_registered_model(store, "models:/ffn@child").model.state_dict()
    assert all(torch.equal(parent[k], child[k]) for k in parent)
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir}/mlflow.db")
    parent_version = client.get_model_version_by_alias("ffn", "parent").version
    version = client.get_model_version_by_alias("ffn", "child")
    assert version.tags["ffnops.parent_model"] == f'"models:/ffn/{parent_version}"'
    run = client.get_run(version.run_id)
    assert run.data.tags["ffnops.parent_model_uri"] == "models:/ffn@parent"
    # a different architecture is refused before any training, naming what differs
    proc = ffnops(
        "train", *common, "model=convstack_3d", "model.init_from=models:/ffn@parent", cwd=workdir
    )
    assert proc.returncode == 2
    assert "fov_size: registered (17, 17, 17), model= asks (33, 33, 33)" in proc.stderr


def test_segment_validation_registers_the_best_step(workdir: Path) -> None:
    """Training on z in [10, 90) of the sample, validated by segmenting [100:140, 30:90, 30:90]
    with 8 voxels of context around it, the best step chosen by total VOI."""
    proc = ffnops(
        "partitions", "lom_radius=[8,8,8]", "min_size=1000", "bbox=10:90,0:128,0:128",
        "output=h5://upper.h5#p", cwd=workdir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    proc = ffnops(
        "coordinates", "volumes=[sample:h5://upper.h5#p]", "margin=[16,16,16]",
        "max_per_partition=100", "output=upper.npz", cwd=workdir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # Positions are the sample's voxels: the partitions' box starts at z = 10.
    z = load_coordinates(workdir / "upper.npz").zyx[:, 0]
    assert z.min() >= 10 + 16 and z.max() < 90 - 16
    proc = ffnops(
        "train",
        *QUICK,
        "data.coordinates=upper.npz",
        "trainer.max_steps=4",
        "training.last_checkpoint_every_n_steps=2",
        "training.validation.box=100:140,30:90,30:90",
        "training.validation.context=[8,8,8]",
        "training.validation.every_n_steps=2",
        "training.validation.inference.min_segment_size=100",
        "training.validation.metric=voi",
        "tracking.experiment_name=selection",
        "tracking.model_name=selected",
        "paths.output_dir=selection_out",
        cwd=workdir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for step in (0, 2, 4):  # the starting weights, every 2 steps, the last
        assert f"validation at step {step} on sample[100:140,30:90,30:90]" in proc.stdout
    (run,) = runs(workdir, "selection")
    uri = f"sqlite:///{workdir}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    history = {
        name: {m.step: m.value for m in client.get_metric_history(run.info.run_id, f"val/{name}")}
        for name in ("voi", "voi_split", "voi_merge", "adapted_rand_error")
    }
    scores = history["voi"]
    assert sorted(scores) == [0, 2, 4] and sorted(history["adapted_rand_error"]) == [0, 2, 4]
    for step, voi in scores.items():
        assert voi == pytest.approx(history["voi_split"][step] + history["voi_merge"][step])
    version = client.get_model_version("selected", "1")
    best_step = min(scores, key=lambda k: (scores[k], k))
    assert version.tags["ffnops.selected_step"] == str(best_step)
    assert float(version.tags["ffnops.validation_voi"]) == pytest.approx(
        scores[best_step], rel=1e-5
    )
    # The registered weights are that step's: segmenting the box again gives its score.
    from ffnops.ffn.options import InferenceOptions
    from ffnops.training.segment_validation import SegmentValidation, ValidationBox
    from ffnops.volume import BBox
    from ffnops.volumes import open_volume

    box, segmented = BBox.parse("100:140,30:90,30:90"), BBox.parse("92:148,22:98,22:98")
    with open_volume(f"h5://{SAMPLE}#image") as image, open_volume(f"h5://{SAMPLE}#labels") as gt:
        raw, labels = image.read(segmented).astype(np.float32), gt.read(box)
    model = load_registered_model(uri, "models:/selected/1").model
    again = SegmentValidation(
        ValidationBox((raw - 128) / 33, labels, "again", box.shifted(segmented.start)),
        model.fov_size,
        model.deltas,
        InferenceOptions(min_segment_size=100),
        every_n_steps=1,
    ).segment(model)[0]
    assert again.voi == pytest.approx(scores[best_step], abs=1e-6)
    # The selection is in the checkpoint a resume continues from.
    (last,) = (workdir / "selection_out").rglob("last.ckpt")
    state = torch.load(last, weights_only=False)["callbacks"]
    (kept,) = [v for k, v in state.items() if "SegmentValidation" in k]
    assert kept["value"] == pytest.approx(scores[kept["step"]]) and kept["weights"]


def test_short_training_lowers_the_loss(workdir: Path) -> None:
    class Losses(pl.Callback):
        def __init__(self) -> None:
            self.values: list[float] = []

        def on_train_batch_end(self, trainer, module, outputs, batch, index) -> None:  # type: ignore[no-untyped-def]
            self.values.append(float(outputs["loss"]))

    pl.seed_everything(0)
    datasets = {"sample": Dataset("sample", f"h5://{SAMPLE}#image", f"h5://{SAMPLE}#labels")}
    geometry = TrainingGeometry((17, 17, 17), (4, 4, 4))
    data = FFNDataModule(
        str(workdir / "coordinates.npz"),
        datasets,
        geometry.patch_size,
        Augmentation(),
        val_fraction=0,
        num_workers=0,
    )
    module = FFNTrainingModule(
        ConvStack3DFFNModel(17, 4, depth=2, features=8),
        functools.partial(torch.optim.Adam, lr=3e-3),
        geometry,
    )
    losses = Losses()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=150,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[losses],
        limit_val_batches=0,
        gradient_clip_val=0.7,
        gradient_clip_algorithm="value",
    )
    trainer.fit(module, data)
    values = np.asarray(losses.values)
    assert len(values) == 150
    assert values[-25:].mean() < 0.8 * values[:25].mean()


def test_kill_and_resume_continues_from_the_last_step(workdir: Path) -> None:
    args = [
        *QUICK,
        "trainer.val_check_interval=100000",
        "training.last_checkpoint_every_n_steps=5",
        "tracking.experiment_name=resume",
        "paths.output_dir=resume_out",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "ffnops", "train", *args, "trainer.max_steps=100000"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = None
    deadline = time.time() + 600  # a bound for a loaded machine, not a speed check
    try:
        while time.time() < deadline:
            found = list((workdir / "resume_out" / "train").glob("*/checkpoints/last.ckpt"))
            if found and torch.load(found[0], weights_only=False)["global_step"] >= 10:
                last = found[0]
                break
            time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert last is not None, "no checkpoint appeared"
    step = torch.load(last, weights_only=False)["global_step"]
    proc = ffnops(
        "train",
        *args,
        f"trainer.max_steps={step + 20}",
        f"resume={last.parent.parent}",
        cwd=workdir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"after {step + 20} steps" in proc.stdout
    (run,) = runs(workdir, "resume")  # the same MLflow run continued
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir}/mlflow.db")
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    # metrics are logged every 10 steps: the resumed run logged past the checkpoint's step
    assert step < max(steps) <= step + 20


def children(pid: int) -> set[int]:
    """The PIDs of a process's children (DataLoader workers are forked ones)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found |= {int(p) for p in task.read_text().split()}
    return found


def test_kill_before_the_first_checkpoint_then_resume(workdir: Path) -> None:
    """kill -9 before any checkpoint: the DataLoader worker dies with its parent, resume=latest
    says it starts from step 0, a contradicting override is refused, the run registers one
    version, and a finished run is not resumed again."""
    args = [
        *QUICK,
        "data.num_workers=1",
        "trainer.val_check_interval=100000",
        "training.last_checkpoint_every_n_steps=100000",
        "tracking.experiment_name=killed",
        "tracking.model_name=killed",
        "paths.output_dir=killed_out",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "ffnops", "train", *args, "trainer.max_steps=100000"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: set[int] = set()
    deadline = time.time() + 600  # a bound for a loaded machine, not a speed check
    try:
        while time.time() < deadline and not workers:
            if list((workdir / "killed_out" / "train").glob("*/ffnops_run.json")):
                workers = children(process.pid)
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert workers, "the run never started its DataLoader worker"
    deadline = time.time() + 30
    while time.time() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.2)
    assert not any(Path(f"/proc/{w}").exists() for w in workers), "a worker outlived its parent"

    proc = ffnops("train", *args, "resume=latest", "model.depth=3", cwd=workdir)
    assert proc.returncode == 2
    assert "model.depth: the run has 2, the command line 3" in proc.stderr
    proc = ffnops("train", *args, "trainer.max_steps=4", "resume=latest", cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no checkpoint yet, from step 0" in proc.stdout and "after 4 steps" in proc.stdout
    versions = MlflowClient(f"sqlite:///{workdir}/mlflow.db").search_model_versions("name='killed'")
    assert len(versions) == 1
    proc = ffnops("train", *args, "resume=latest", cwd=workdir)
    assert proc.returncode == 2 and "no unfinished run" in proc.stderr
    assert "finished" in proc.stderr


def test_ddp_sim_trains_in_two_processes(workdir: Path) -> None:
    proc = ffnops(
        "train",
        *QUICK,
        "trainer=ddp_sim",
        "trainer.max_steps=6",
        "tracking.experiment_name=ddp",
        cwd=workdir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Starting with 2 processes" in proc.stdout + proc.stderr
    assert "after 6 steps" in proc.stdout
    (run,) = runs(workdir, "ddp")
    assert run.data.params["trainer.devices"] == "2"


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["data.volumes.sample.labels=h5://{sample}#image_missing"], "no dataset 'image_missing'"),
        (
            ["+dataset@data.volumes.other=sample", "~data.volumes.sample"],
            "names volume(s) ['sample']",
        ),
        (["model.fov_size=[201,201,201]"], "smaller than the training patch"),
        (
            ["tracking.tracking_uri=http://127.0.0.1:9"],
            "tracking URI http://127.0.0.1:9 is unreachable",
        ),
        (["data.coordinates=nothing.npz"], "coordinate file not found: nothing.npz"),
        (
            ["training.lr_schedule.name=step"],
            "training.lr_schedule.name='step': expected one of constant, linear, cosine",
        ),
        (
            ["training.lr_schedule.warmup_steps=2"],
            "training.lr_schedule.warmup_steps=2: expected 0 up to trainer.max_steps - 1 (1)",
        ),
    ],
)
def test_bad_training_input_gives_one_line(
    workdir: Path, overrides: list[str], expected: str
) -> None:
    overrides = [o.format(sample=SAMPLE) for o in overrides]
    proc = ffnops("train", *QUICK, "trainer.max_steps=2", *overrides, cwd=workdir)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr


def test_coordinates_inside_the_margin_are_refused(workdir: Path) -> None:
    proc = ffnops("coordinates", "margin=[2,2,2]", "output=thin.npz", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    proc = ffnops("train", *QUICK, "data.coordinates=thin.npz", cwd=workdir)
    assert proc.returncode == 2
    assert "patches leave it; rebuild the coordinates with margin >= [12, 12, 12]" in proc.stderr


def test_partitions_of_only_dust_is_an_error(workdir: Path) -> None:
    proc = ffnops("partitions", "min_size=100000000", "output=h5://dust.h5#p", cwd=workdir)
    assert proc.returncode == 2
    assert "no object voxel got a partition" in proc.stderr


def test_multirun_makes_one_run_per_combination(workdir: Path) -> None:
    proc = ffnops(
        "train",
        "-m",
        *QUICK,
        "model.depth=2,3",
        "optimizer.lr=1e-3,3e-4",
        "trainer.max_steps=2",
        "tracking.experiment_name=sweep",
        cwd=workdir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    combos = {
        (r.data.params["model.depth"], r.data.params["optimizer.lr"])
        for r in runs(workdir, "sweep")
    }
    assert combos == {("2", "0.001"), ("2", "0.0003"), ("3", "0.001"), ("3", "0.0003")}
