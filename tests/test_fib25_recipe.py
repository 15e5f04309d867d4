"""`ffnops fib25`: Google's recipe as four ffnops commands, with the published settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ffnops.sample_data import sample_path

SAMPLE = sample_path("fib25_crop.h5")


def fib25(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ffnops", "fib25", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_dry_run_shows_googles_settings_and_the_chosen_trainer(tmp_path: Path) -> None:
    proc = fib25("dry_run=true", "trainer=ddp", "trainer.devices=8", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    partitions, coordinates, train, infer = proc.stdout.strip().splitlines()
    assert "thresholds=[0.025,0.05,0.075,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9]" in partitions
    assert "lom_radius=[24,24,24]" in partitions and "min_size=10000" in partitions
    assert "bbox=0:110,0:250,0:250" in partitions
    assert "margin=[24,24,24]" in coordinates
    expected = ["model=convstack_3d", "trainer=ddp", "trainer.devices=8", "trainer.strategy=ddp"]
    expected += ["trainer.max_steps=1000000", "optimizer=sgd", "training.batch_size=4"]
    assert set(expected) <= set(train.split())
    # the protocol (docs/quality.md): a validation box chooses the weights, the evaluation box
    # is segmented with 16 voxels of context (cut at z, y, x = 0) and scored on itself
    assert "training.validation.box=125:175,0:125,125:250" in train.split()
    assert "training.validation.context=[16,16,16]" in train.split()
    assert "training.validation.every_n_steps=5000" in train.split()
    assert "inference=fib25" in infer.split() and "bbox=109:191,0:141,0:141" in infer.split()
    assert "eval_bbox=125:175,0:125,0:125" in infer.split()
    assert not (tmp_path / "fib25").exists()  # a dry run writes nothing
    assert not (tmp_path / "mlflow.db").exists()


def test_finetune_recipe_starts_from_googles_model(tmp_path: Path) -> None:
    proc = fib25("dry_run=true", "recipe=finetune", "trainer.max_steps=600", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    _, _, imported, train, _ = proc.stdout.strip().splitlines()
    assert imported.startswith("ffnops import-checkpoint google model_name=fib25 alias=google")
    expected = ["model.init_from=models:/fib25@google", "optimizer=adam", "optimizer.lr=1e-5"]
    expected += ["trainer.max_steps=600", "training.validation.every_n_steps=100"]
    assert set(expected) <= set(train.split())  # the command line's max_steps wins
    assert "optimizer=sgd" not in train.split()
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow  # about 80 s; the quickstart test runs the same pipeline steps by default
def test_recipe_runs_end_to_end_and_skips_finished_steps(tmp_path: Path) -> None:
    small = [
        f"data.image=h5://{SAMPLE}#image",
        f"data.labels=h5://{SAMPLE}#labels",
        "data.train_box=0:80,0:128,0:128",
        "data.val_box=84:110,30:90,30:90",
        "data.eval_box=116:160,30:90,30:90",
        "data.context=[8,8,8]",
        "validate_every_n_steps=2",
        "partitions=['lom_radius=[8,8,8]','min_size=1000']",  # each item is one argument
        "coordinates=['margin=[16,16,16]','max_per_partition=50']",
        "train=['model=tiny','data.num_workers=0','training.batch_size=2']",
        "trainer.max_steps=2",
        "trainer.limit_val_batches=0",
        "infer=['inference=fib25','inference.min_segment_size=10']",
    ]
    proc = fib25(*small, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    version = client.get_model_version_by_alias("fib25", "fib25")
    assert version.tags["ffnops.fov_size"] == "[17, 17, 17]"  # model=tiny reached the step
    assert version.tags["ffnops.selected_step"] in ("0", "2")  # chosen on data.val_box
    (run,) = client.search_runs([client.get_experiment_by_name("inference").experiment_id])
    assert "eval/adapted_rand_error" in run.data.metrics
    assert len(list((tmp_path / "fib25").glob("infer-*/segmentation/info"))) == 1
    assert run.data.tags["ffnops.model_uri"] == f"models:/fib25/{version.version}"  # pinned
    again = fib25(*small, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("skipped") == 4  # partitions, coordinates, train, infer
    assert len(client.search_model_versions("name='fib25'")) == 1  # trained once
