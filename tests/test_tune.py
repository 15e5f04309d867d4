"""A settings search (`ffnops infer -m`) and `ffnops tune`, which keeps its best options with the
model, on the registered oracle network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from commands import ffnops
from mlflow.tracking import MlflowClient

from ffnops.errors import FfnopsError
from ffnops.ffn.model_settings import INFERENCE_OPTIONS
from ffnops.ffn.options import InferenceOptions
from ffnops.ffn.oracle import OracleFFN
from ffnops.sample_data import sample_path
from ffnops.tracking.mlflow_tracking import register_model
from ffnops.tracking.search import EFFECTIVE, logged_options

LABELS = f"h5://{sample_path('fib25_crop.h5')}#labels"


def test_a_search_then_tune_registers_the_best_options(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(client.create_experiment("models", f"{tmp_path}/artifacts"))
    settings = {"fov_size": [17, 17, 17], "deltas": [4, 4, 4], "image_mean": 0.0}
    settings |= {"image_stddev": 1.0, "move_threshold": 0.9}
    register_model(uri, run.info.run_id, OracleFFN((17, 17, 17), (4, 4, 4)), "oracle", settings)
    common = (
        f"image={LABELS}",
        f"groundtruth={LABELS}",
        "bbox=0:48,0:48,0:48",
        "inference.seed_policy=grid",
        "evaluation.skeletonize=false",
        "viewer.publish=false",
        f"tracking.tracking_uri={uri}",
        "tracking.run_name=val-box",
    )
    # Two values of min_segment_size: 60000 voxels rejects every object of this 48^3 box.
    proc = ffnops(
        "infer",
        "-m",
        "model=models:/oracle/1",
        *common,
        "inference.min_segment_size=200,60000",
        "output=zarr://${hydra:runtime.output_dir}/seg.zarr",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # A dry run ranks (here by total VOI, which every scored run logs) and registers nothing.
    proc = ffnops(
        "tune", "models:/oracle/1", "evaluation=val-box", "metric=eval/voi", "dry_run=true",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "eval/voi" in proc.stdout
    by_voi = [float(line.split()[2]) for line in proc.stdout.splitlines() if line[:1] in ("1", "2")]
    assert len(by_voi) == 2 and by_voi[0] <= by_voi[1]
    assert len(client.search_model_versions("name = 'oracle'")) == 1
    proc = ffnops("tune", "models:/oracle/1", "evaluation=val-box", "alias=tuned", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 runs named 'val-box'" in proc.stdout
    ranking = [line.split() for line in proc.stdout.splitlines() if line[:1] in ("1", "2")]
    assert [row[:2] for row in ranking] == [["1", "200"], ["2", "60000"]]
    assert float(ranking[0][2]) < float(ranking[1][2])  # ranked by adapted Rand error
    tuned = client.get_model_version_by_alias("oracle", "tuned")
    assert str(tuned.version) == "2" and tuned.tags["ffnops.min_segment_size"] == "200"
    assert tuned.tags["ffnops.tuned_from"] == "1" and tuned.tags["ffnops.tuned_on"] == '"val-box"'
    assert tuned.tags["ffnops.parent_model"] == '"models:/oracle/1"'  # JSON, as training's
    assert tuned.tags["ffnops.seed_policy"] == '"grid"'  # every option the best run used
    artifacts = {a.path for a in client.list_artifacts(tuned.run_id)}
    assert {"search.csv", "search.png"} <= artifacts
    # Inference from the tuned version uses its options; the command line still wins.
    checks = {}
    for name, extra in (("check", ()), ("override", ("inference.min_segment_size=60000",))):
        proc = ffnops(
            "infer",
            "model=models:/oracle@tuned",
            *common[:3],
            "evaluation.skeletonize=false",
            "viewer.publish=false",
            f"tracking.tracking_uri={uri}",
            f"tracking.run_name={name}",
            f"output=zarr://{tmp_path}/{name}.zarr",
            *extra,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        (checks[name],) = client.search_runs(
            [client.get_experiment_by_name("inference").experiment_id],
            filter_string=f"attributes.run_name = '{name}'",
        )
    check = checks["check"]
    assert check.data.params["effective.min_segment_size"] == "200"
    assert check.data.params["effective.seed_policy"] == "grid"
    override = checks["override"].data.params
    assert override["effective.min_segment_size"] == "60000"  # the command line's
    assert override["effective.seed_policy"] == "grid"  # the version's
    best = client.get_run(json.loads(tuned.tags["ffnops.tuned_run"]))
    assert check.data.metrics["eval/adapted_rand_error"] == pytest.approx(
        best.data.metrics["eval/adapted_rand_error"]
    )  # the tuned version reproduces the search's best run


def test_a_run_older_than_an_option_is_a_trial_with_the_value_it_ran_with(tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("search", f"{tmp_path}/artifacts")
    defaults = InferenceOptions()
    logged = {k: getattr(defaults, k) for k in INFERENCE_OPTIONS if k != "reflect_faces"}
    logged["move_threshold"] = 0.8
    older = client.create_run(experiment)
    for key, value in logged.items():
        client.log_param(older.info.run_id, f"{EFFECTIVE}{key}", value)
    options = logged_options(client.get_run(older.info.run_id))
    assert options["reflect_faces"] is False
    assert options["move_threshold"] == 0.8
    assert options["seed_policy"] == defaults.seed_policy
    # A run lacking an option ffnops always logged is not an infer run.
    other = client.create_run(experiment)
    client.log_param(other.info.run_id, f"{EFFECTIVE}reflect_faces", "True")
    with pytest.raises(FfnopsError, match="not an ffnops infer run"):
        logged_options(client.get_run(other.info.run_id))
