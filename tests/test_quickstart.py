"""`ffnops quickstart`: bundled data and Google's model to two scored, registered versions.

The default run uses a small unseen box and one fine-tuning step (about two CPU minutes); the
README's full quickstart, killed and started again, is slow-marked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

SMALL = [
    "train.max_steps=1",
    "train.batch_size=1",
    "quickstart.val_box=80:108,40:88,40:88",
    "quickstart.eval_box=124:160,36:92,36:92",
]


def quickstart(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ffnops", "quickstart", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=1800,
    )


def test_quickstart_registers_scores_and_crowns_a_champion(tmp_path: Path) -> None:
    proc = quickstart(*SMALL, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    name = "fib25_quickstart"
    baseline = client.get_model_version_by_alias(name, "baseline")
    finetuned = client.get_model_version_by_alias(name, "finetuned")
    champion = client.get_model_version_by_alias(name, "champion")
    assert (str(baseline.version), str(finetuned.version)) == ("1", "2")
    assert str(champion.version) in ("1", "2")
    assert finetuned.tags["ffnops.parent_model"] == '"models:/fib25_quickstart/1"'
    experiment = client.get_experiment_by_name("quickstart")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.info.run_name == "quickstart"]
    children = {r.info.run_name for r in runs if r.data.tags.get("mlflow.parentRunId")}
    assert {"partitions", "coordinates", "infer-baseline", "infer-finetuned"} <= children
    infers = [r for r in runs if r.info.run_name in ("infer-baseline", "infer-finetuned")]
    assert len(infers) == 2
    for run in infers:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert 0 <= run.data.metrics["eval/adapted_rand_error"] <= 1
        assert 0 <= run.data.metrics["eval/erl_nm"] <= run.data.metrics["eval/groundtruth_erl_nm"]
        assert run.data.tags["neuroglancer_url"].startswith("https://")
    # The recipe's optimizer (train.optimizer, train.lr), not `ffnops train`'s default SGD at 1e-3
    (train,) = [r for r in runs if "optimizer._target_" in r.data.params]
    assert train.data.params["optimizer._target_"] == "torch.optim.Adam"
    assert float(train.data.params["optimizer.lr"]) == 1e-5
    # The fine-tuned weights are the best of the validated steps, the starting ones included:
    # if those won, both versions segment the evaluation box alike and the baseline keeps it.
    assert finetuned.tags["ffnops.selected_step"] in ("0", "1")
    scores = {r.info.run_name: r.data.metrics["eval/adapted_rand_error"] for r in infers}
    if finetuned.tags["ffnops.selected_step"] == "0":
        assert scores["infer-finetuned"] == scores["infer-baseline"]
    assert "the baseline on the unseen box: ARAND" in proc.stdout
    best = min(infers, key=lambda r: (scores[r.info.run_name], r.info.run_name != "infer-baseline"))
    assert best.data.tags["ffnops.model_version"] == str(champion.version)
    assert parent.data.tags["champion"].startswith(f"models:/{name}/{champion.version}")
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in proc.stdout
    assert "ffnops view " in proc.stdout and "ARAND" in proc.stdout and "ERL (um)" in proc.stdout
    # Agglomeration of the champion's segmentation, tried on the validation box, kept for the
    # evaluation box only when it won there; either way the run and the summary say which.
    label = "baseline" if str(champion.version) == "1" else "finetuned"
    (trial,) = [r for r in runs if r.info.run_name == f"agglomerate-{label}-validation"]
    assert trial.data.tags["mlflow.parentRunId"] == parent.info.run_id
    before, after = trial.data.metrics["eval_input/erl_nm"], trial.data.metrics["eval/erl_nm"]
    rise = trial.data.metrics["eval/voi_merge"] - trial.data.metrics["eval_input/voi_merge"]
    won = after > before and rise <= 0.05
    assert parent.data.tags["agglomeration"] == ("kept" if won else "not kept")
    applied = [r for r in runs if r.info.run_name == f"agglomerate-{label}"]
    assert len(applied) == int(won)
    assert "tried on the validation box" in proc.stdout
    assert ("a win, so applied" if won else "not a win there") in proc.stdout

    # a second quickstart in the same folder reuses the store and skips every step
    again = quickstart(*SMALL, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("skipped") == 8 + int(won)  # the agglomeration steps too
    assert len(client.search_model_versions(f"name = '{name}'")) == 2
    assert client.get_model_version_by_alias(name, "champion").version == champion.version

    # agglomerate.overrides reach the command: with no thresholds every tried pair joins
    loose = quickstart(
        *SMALL, "agglomerate.overrides=[merge_iou=0.0,min_recovery=0.0]", cwd=tmp_path
    )
    assert loose.returncode == 0, loose.stderr[-3000:]
    runs = client.search_runs([experiment.experiment_id])
    tried = [r for r in runs if r.info.run_name == f"agglomerate-{label}-validation"]
    (new,) = [r for r in tried if r.info.run_id != trial.info.run_id]
    assert new.data.params["merge_iou"] == "0.0"
    assert new.data.metrics["pairs_joined"] == new.data.metrics["pairs"] > 0
    # agglomerate.enabled=false stops after the crowning: no agglomeration step, no summary line
    off = quickstart(*SMALL, "agglomerate.enabled=false", cwd=tmp_path)
    assert off.returncode == 0, off.stderr[-3000:]
    assert "tried on the validation box" not in off.stdout
    assert off.stdout.count("skipped") == 6


def test_read_only_folder_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = "/proc/quickstart"  # root may write anywhere else
    else:
        (tmp_path / "ro").mkdir(mode=0o500)
        target = str(tmp_path / "ro" / "quickstart")
    proc = quickstart(f"quickstart.output_dir={target}", cwd=tmp_path)
    assert proc.returncode == 2
    assert f"cannot write in {target}" in proc.stderr


@pytest.mark.slow  # the README's quickstart, twice: about 20 minutes on 2 AVX2 cores
def test_killed_quickstart_finishes_with_the_same_result(tmp_path: Path) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir()
    killed.mkdir()
    assert quickstart(cwd=whole).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "ffnops", "quickstart"],
        cwd=killed,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # kill it in the middle of fine-tuning
        if line.startswith("== train:"):
            break
    time.sleep(90)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert quickstart(cwd=killed).returncode == 0
    scores = []
    for folder in (whole, killed):
        client = MlflowClient(tracking_uri=f"sqlite:///{folder}/mlflow.db")
        experiment = client.get_experiment_by_name("quickstart")
        runs = client.search_runs(
            [experiment.experiment_id], filter_string="attributes.status = 'FINISHED'"
        )
        scores.append(
            sorted(
                (r.info.run_name, r.data.metrics["eval/adapted_rand_error"])
                for r in runs
                if r.info.run_name.startswith("infer-")
            )
        )
    assert scores[0] == scores[1]
