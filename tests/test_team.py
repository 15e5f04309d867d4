"""Team mode against a real ``mlflow server`` started by ``ffnops server`` (docs/team.md):
PostgreSQL store, artifacts served through the server, basic-auth, users with permissions.

One server for the module; admin, ``alice`` (works: she owns the experiments she creates) and
``bob`` (granted READ on alice's inference experiment, nothing else) sign in to it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy
from commands import ffnops, free_port
from mlflow.exceptions import MlflowException
from mlflow.server.auth.client import AuthServiceClient
from mlflow.tracking import MlflowClient
from servers import ADMIN, REQUIRE_ENV, TeamServer, postgres, postgres_bin, team_server

from ffnops.errors import FfnopsError
from ffnops.ffn.model import ConvStack3DFFNModel
from ffnops.ffn.oracle import OracleFFN
from ffnops.sample_data import sample_path
from ffnops.tracking.mlflow_tracking import (
    MODEL_FORMAT_TAG,
    check_tracking_uri,
    register_model,
    server_refusal,
)
from ffnops.tracking.promotion import promote
from ffnops.tracking.registry import load_registered_model
from ffnops.volumes import open_volume

SAMPLE = sample_path("fib25_crop.h5")
LABELS = f"h5://{SAMPLE}#labels"
ALICE = ("alice", "alice-password-123")
BOB = ("bob", "bob-password-1234")
GATE_OFF = {"evaluation": None, "metric": "eval/adapted_rand_error", "reason": None, "force": True}
ORACLE_SETTINGS = {
    "fov_size": [17, 17, 17],
    "deltas": [4, 4, 4],
    "image_mean": 0.0,
    "image_stddev": 1.0,
    "pad_value": 0.05,
    "init_activation": 0.95,
    "move_threshold": 0.9,
}


@contextmanager
def signed_in(user: tuple[str, str]) -> Iterator[None]:
    """This test process's MLflow client signed in as ``user`` (restored afterwards)."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = user
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamServer]:
    folder = tmp_path_factory.mktemp("team")
    if postgres_bin() is None:
        assert os.environ.get(REQUIRE_ENV) != "require", "PostgreSQL is required here"
        stores = (f"sqlite:///{folder}/mlflow.db", f"sqlite:///{folder}/auth.db")
        with team_server(folder, *stores) as running:
            yield running
        return
    with (
        postgres() as cluster,
        team_server(folder, f"{cluster}/mlflow", f"{cluster}/mlflow_auth") as running,
    ):
        yield running


@pytest.fixture(scope="module")
def team(server: TeamServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Users alice and bob, and the oracle registered by the admin as models:/oracle@truth."""
    with signed_in(ADMIN):
        auth = AuthServiceClient(server.url)
        auth.create_user(*ALICE)
        auth.create_user(*BOB)
        client = MlflowClient(server.url)
        run = client.create_run(client.create_experiment("models"))
        register_model(server.url, run.info.run_id, OracleFFN(17, 4), "oracle", ORACLE_SETTINGS)
        client.set_registered_model_alias("oracle", "truth", "1")
        client.set_terminated(run.info.run_id)
    return tmp_path_factory.mktemp("work")


def refused_in_one_line(proc: subprocess.CompletedProcess[str]) -> bool:
    """Exit status 2, one error line, no traceback (MLflow's download bars may come before)."""
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    return proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr


def on_server(server: TeamServer, *args: str) -> list[str]:
    return [*args, "tracking=server", f"tracking.tracking_uri={server.url}"]


def infer_args(server: TeamServer, output: Path, *extra: str) -> list[str]:
    return on_server(
        server,
        "infer",
        "model=models:/oracle@truth",
        f"image={LABELS}",
        f"output=zarr://{output}",
        f"groundtruth={LABELS}",
        "bbox=0:48,0:48,0:48",
        "inference.min_segment_size=100",
        "inference.seed_policy=grid",
        *extra,
    )


@pytest.fixture(scope="module")
def inferred(server: TeamServer, team: Path) -> str:
    """alice's inference run from models:/oracle@truth, published, scored ("gate-eval")."""
    args = infer_args(server, team / "seg.zarr", "tracking.run_name=gate-eval")
    proc = ffnops(*args, cwd=team, env=server.env(*ALICE))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with signed_in(ALICE):
        client = MlflowClient(server.url)
        experiment = client.get_experiment_by_name("inference")
        (run,) = client.search_runs([experiment.experiment_id])
    return str(run.info.run_id)


def test_the_store_is_the_database_it_was_given(server: TeamServer, inferred: str) -> None:
    if not server.store_uri.startswith("postgresql://"):
        pytest.skip("PostgreSQL is not installed here: the server ran on sqlite")
    engine = sqlalchemy.create_engine(server.store_uri)
    with engine.connect() as db:
        runs = db.execute(sqlalchemy.text("select run_uuid from runs")).scalars().all()
        versions = db.execute(sqlalchemy.text("select name from model_versions")).scalars().all()
    assert inferred in runs and "oracle" in versions


def test_infer_from_an_alias_logs_everything_through_the_server(
    server: TeamServer, team: Path, inferred: str
) -> None:
    with signed_in(ALICE):
        client = MlflowClient(server.url)
        run = client.get_run(inferred)
        names = {a.path for a in client.list_artifacts(inferred)}
        views = {a.path for a in client.list_artifacts(inferred, "neuroglancer")}
    assert run.data.tags["ffnops.model_version"] == "1"
    assert run.data.metrics["eval/adapted_rand_error"] < 0.05  # the oracle on its own labels
    assert {"segmentation_overlay.png", "neuroglancer_state.json", "evaluation"} <= names
    assert {"neuroglancer/image", "neuroglancer/segmentation"} <= views
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # uploaded to the server ...
    stored = list(server.artifacts.rglob(f"{inferred}/artifacts/segmentation_overlay.png"))
    assert len(stored) == 1 and stored[0].read_bytes()[:4] == b"\x89PNG"  # ... which stores it
    assert not (team / "mlruns").exists() and not (team / "mlartifacts").exists()
    with open_volume(f"zarr://{team / 'seg.zarr'}") as volume:
        assert len(np.unique(volume.read())) >= 3


def test_evaluate_and_view_read_the_run_from_the_server(
    server: TeamServer, team: Path, inferred: str
) -> None:
    seg = f"zarr://{team / 'seg.zarr'}"
    proc = ffnops(
        *on_server(server, "evaluate", f"seg={seg}", f"gt={LABELS}", "bbox=0:48,0:48,0:48"),
        cwd=team,
        env=server.env(*ALICE),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with signed_in(ALICE):
        client = MlflowClient(server.url)
        (run,) = client.search_runs([client.get_experiment_by_name("evaluation").experiment_id])
    assert run.data.metrics["eval/adapted_rand_error"] < 0.05
    cache = team / "view-cache"
    view = ("view", inferred, "timeout_s=1", f"viewer.port={free_port()}")
    view += (f"viewer.cache_dir={cache}",)
    proc = ffnops(
        *on_server(server, *view),
        cwd=team,
        env=server.env(*BOB),  # reading is what the default permission (READ) allows
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "#!" in proc.stdout  # a neuroglancer link with its state
    # The run's layers were downloaded into this process's folder of viewer.cache_dir, which it
    # removed when it stopped serving.
    assert f"({cache}/" in proc.stdout, proc.stdout
    assert cache.is_dir() and not any(cache.iterdir())


def test_import_and_train_register_safe_models_on_the_server(
    server: TeamServer, team: Path
) -> None:
    env = server.env(*ALICE)
    proc = ffnops(
        *on_server(server, "import-checkpoint", "google", "model_name=google", "alias=baseline"),
        cwd=team,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for step in (
        ["partitions", "lom_radius=[8,8,8]", "min_size=1000"],
        ["coordinates", "margin=[16,16,16]", "max_per_partition=50"],
    ):
        assert ffnops(*step, cwd=team).returncode == 0
    train = on_server(
        server,
        "train",
        "model=tiny",
        "data.max_val_examples=2",
        "data.num_workers=0",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "trainer.enable_model_summary=false",
        "tracking.model_name=tiny",
        "tracking.alias=candidate",
    )
    proc = ffnops(*train, cwd=team, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with signed_in(ALICE):
        google = load_registered_model(server.url, "models:/google@baseline")
        tiny = load_registered_model(server.url, "models:/tiny@candidate")
        version = MlflowClient(server.url).get_model_version("tiny", tiny.version)
    assert isinstance(google.model, ConvStack3DFFNModel) and google.model.depth == 12
    assert isinstance(tiny.model, ConvStack3DFFNModel) and tiny.settings.fov_size == (17, 17, 17)
    assert version.tags[MODEL_FORMAT_TAG] == "ffnops-network/1"
    assert len(list(server.artifacts.rglob("weights.safetensors"))) >= 3  # oracle, google, tiny
    assert not (team / "mlruns").exists()


def test_refusals_are_one_line_naming_the_server(
    server: TeamServer, team: Path, inferred: str
) -> None:
    listing = on_server(server, "models", "oracle")
    proc = ffnops(*listing, cwd=team, env=server.env(None, None))
    assert refused_in_one_line(proc), proc.stderr
    assert server.url in proc.stderr and "no user" in proc.stderr
    with signed_in((ALICE[0], "not-her-password")), pytest.raises(FfnopsError) as wrong:
        check_tracking_uri(server.url)  # what every command checks before its work
    assert "refused the credentials of user 'alice'" in str(wrong.value)
    # bob holds READ on alice's inference experiment: he cannot log a run to it
    with signed_in(ALICE):
        experiment = MlflowClient(server.url).get_experiment_by_name("inference")
        AuthServiceClient(server.url).grant_user_permission(
            "bob", "experiment", experiment.experiment_id, "READ"
        )
    proc = ffnops(*infer_args(server, team / "bob.zarr"), cwd=team, env=server.env(*BOB))
    assert refused_in_one_line(proc), proc.stderr
    assert "refused user 'bob' permission" in proc.stderr and "runs/create" in proc.stderr
    # nor move an alias of the admin's model (READ on it, the default)
    with signed_in(BOB):
        with pytest.raises(MlflowException) as refused:
            promote(server.url, "models:/oracle/1", "x", **GATE_OFF)
        message = server_refusal(refused.value, server.url)
    assert message is not None and "refused user 'bob' permission" in message
    assert "registered-models/alias" in message
    down = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(FfnopsError, match=f"{down} is unreachable"):
        check_tracking_uri(down)


def test_promote_on_the_server_records_who_and_gates_a_worse_version(
    server: TeamServer, team: Path, inferred: str
) -> None:
    with signed_in(ADMIN):
        client = MlflowClient(server.url)
        run = client.create_run(client.get_experiment_by_name("models").experiment_id)
        worse = ConvStack3DFFNModel(17, 4, depth=1, features=2)  # random weights
        register_model(server.url, run.info.run_id, worse, "oracle", ORACLE_SETTINGS)
        client.set_registered_model_alias("oracle", "candidate", "2")
        client.set_terminated(run.info.run_id)
        # version 2's score on the same evaluation, as its `ffnops infer` run would log it
        tags = {"ffnops.model_name": "oracle", "ffnops.model_version": "2"}
        experiment = client.get_experiment_by_name("inference").experiment_id
        scored = client.create_run(experiment, run_name="gate-eval", tags=tags)
        client.log_metric(scored.info.run_id, "eval/adapted_rand_error", 0.5)
        client.set_terminated(scored.info.run_id)
    env = server.env(*ADMIN)
    gate = ["evaluation=gate-eval", "reason=oracle is exact"]
    command = on_server(server, "promote", "models:/oracle/1", "champion", *gate)
    proc = ffnops(*command, cwd=team, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    command[1] = "models:/oracle/2"
    proc = ffnops(*command, cwd=team, env=env)
    assert proc.returncode == 2 and "worse than the holder's" in proc.stderr, proc.stderr
    with signed_in(ADMIN):
        client = MlflowClient(server.url)
        assert client.get_model_version_by_alias("oracle", "champion").version == "1"
        tags = client.get_model_version("oracle", "1").tags
    assert tags["ffnops.promoted.champion.by"] == "admin"
    assert tags["ffnops.promoted.champion.from_version"] == "none"
    assert tags["ffnops.promoted.champion.reason"] == "oracle is exact"
    assert "eval/adapted_rand_error=" in tags["ffnops.promoted.champion.score"]


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({"MLFLOW_FLASK_SERVER_SECRET_KEY": ""}, [], "MLFLOW_FLASK_SERVER_SECRET_KEY is not set"),
        ({"MLFLOW_AUTH_ADMIN_PASSWORD": "short"}, [], "at least 12 characters"),
        ({}, ["backend_store_uri=file:///tmp/runs"], "expected a database URI"),
        ({}, ["backend_store_uri=postgresql://postgres@127.0.0.1:{port}/mlflow"], "cannot connect"),
    ],
)
def test_the_server_checks_its_secrets_and_stores_before_starting(
    tmp_path: Path, env: dict[str, str], args: list[str], message: str
) -> None:
    environ = {
        **os.environ,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "key",
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1],
        **env,
    }
    args = [a.format(port=free_port()) for a in args]
    proc = ffnops("server", *args, f"port={free_port()}", cwd=tmp_path, env=environ)
    assert refused_in_one_line(proc) and message in proc.stderr, proc.stderr


@pytest.mark.slow
def test_the_quickstart_runs_against_the_server(server: TeamServer, team: Path) -> None:
    folder = team / "quickstart"
    folder.mkdir()
    small = ["train.max_steps=1", "train.batch_size=1", "quickstart.eval_box=120:160,36:92,36:92"]
    proc = ffnops(
        *on_server(server, "quickstart", *small), cwd=folder, env=server.env(*ALICE), timeout=1800
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"{server.url} (the team's MLflow UI)" in proc.stdout
    with signed_in(ALICE):
        client = MlflowClient(server.url)
        champion = client.get_model_version_by_alias("fib25_quickstart", "champion")
        runs = client.search_runs([client.get_experiment_by_name("quickstart").experiment_id])
    assert champion.tags[MODEL_FORMAT_TAG] == "ffnops-network/1"
    assert {"infer-baseline", "infer-finetuned"} <= {r.info.run_name for r in runs}
    assert not (folder / "mlruns").exists() and not (folder / "mlflow.db").exists()


def test_the_server_settings_reach_mlflow_and_its_auth_config(tmp_path: Path) -> None:
    environ = {
        **os.environ,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "key",
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1],
    }
    settings = [
        f"backend_store_uri=sqlite:///{tmp_path}/m.db",
        f"auth_database_uri=sqlite:///{tmp_path}/a.db",
        f"artifacts_destination={tmp_path}/art",
        f"state_dir={tmp_path}/state",
        f"port={free_port()}",
        "workers=3",
        "default_permission=NO_PERMISSIONS",
        "admin_username=boss",
        "allowed_hosts=[mlflow:5000,lab.example:443]",
    ]
    proc = ffnops("server", *settings, "dry_run=true", cwd=tmp_path, env=environ)
    assert proc.returncode == 0, proc.stderr[-2000:]
    command = proc.stdout.strip().splitlines()[-1].split()
    assert command[1:3] == ["server", "--backend-store-uri"] and "--serve-artifacts" in command
    for flag, value in (
        ("--workers", "3"),
        ("--allowed-hosts", "mlflow:5000,lab.example:443"),
        ("--artifacts-destination", f"{tmp_path}/art"),
        ("--app-name", "basic-auth"),
        ("--host", "127.0.0.1"),
    ):
        assert command[command.index(flag) + 1] == value
    auth = (tmp_path / "state" / "basic_auth.ini").read_text()
    assert "default_permission = NO_PERMISSIONS" in auth and "admin_username = boss" in auth
    assert f"database_uri = sqlite:///{tmp_path}/a.db" in auth and ADMIN[1] not in auth
    assert (tmp_path / "art").is_dir()
