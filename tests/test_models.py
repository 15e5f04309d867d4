"""Safe model files, legacy pickles, promotion's gate and ``ffnops models`` on a sqlite store."""

from __future__ import annotations

import json
import os
import pickle
import warnings
from pathlib import Path

import mlflow
import pytest
import torch
from commands import ffnops
from mlflow.tracking import MlflowClient

from ffnops.errors import FfnopsError
from ffnops.ffn.model import ConvStack3DFFNModel
from ffnops.ffn.networks import Architecture, UnsafeModelFile, load_network, save_network
from ffnops.ffn.oracle import OracleFFN
from ffnops.tracking.mlflow_tracking import register_model
from ffnops.tracking.promotion import Score, gate, promote, version_rows
from ffnops.tracking.registry import PickledModelWarning, load_registered_model

SETTINGS = {"fov_size": [9, 9, 9], "deltas": [2, 2, 2], "image_mean": 128.0, "image_stddev": 33.0}


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, str]:
    """A sqlite store and the id of a run to register versions from."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("models", f"{tmp_path}/artifacts"))
    return uri, run.info.run_id


def small_model(seed: int = 0) -> ConvStack3DFFNModel:
    torch.manual_seed(seed)
    return ConvStack3DFFNModel((9, 9, 9), (2, 2, 2), depth=2, features=4)


def test_a_saved_network_is_rebuilt_with_the_same_weights(tmp_path: Path) -> None:
    model = small_model()
    architecture = save_network(model, tmp_path)
    assert architecture == Architecture(
        "ConvStack3DFFNModel",
        {"fov_size": [9, 9, 9], "deltas": [2, 2, 2], "depth": 2, "features": 4},
    )
    loaded = load_network(tmp_path)
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values())
    )
    x = torch.randn(1, 2, 9, 9, 9)
    assert torch.equal(model.eval()(x), loaded(x))
    save_network(OracleFFN(9, 2), tmp_path / "oracle")  # no weights: the architecture alone
    oracle = load_network(tmp_path / "oracle")
    assert isinstance(oracle, OracleFFN) and oracle.fov_size == (9, 9, 9)


def test_a_network_file_naming_other_code_is_refused(tmp_path: Path) -> None:
    save_network(small_model(), tmp_path)
    record = json.loads((tmp_path / "network.json").read_text())
    record.update(network="system", arguments={"command": "touch pwned"})
    (tmp_path / "network.json").write_text(json.dumps(record))
    with pytest.raises(UnsafeModelFile, match="'system' is not one of ffnops's networks"):
        load_network(tmp_path)
    (tmp_path / "weights.safetensors").write_bytes(b"not safetensors")
    record.update(
        network="ConvStack3DFFNModel",
        arguments={"fov_size": 9, "deltas": 2, "depth": 2, "features": 4},
    )
    (tmp_path / "network.json").write_text(json.dumps(record))
    with pytest.raises(UnsafeModelFile, match="weights do not load"):
        load_network(tmp_path)


def test_a_version_registers_as_safe_files_and_loads(store: tuple[str, str]) -> None:
    uri, run_id = store
    model = small_model()
    version = register_model(uri, run_id, model, "ffn", SETTINGS, alias="champion")
    assert version.tags["ffnops.model_format"] == "ffnops-network/1"
    files = {a.path for a in MlflowClient(uri).list_artifacts(run_id, "model")}
    assert files == {"model/network.json", "model/weights.safetensors"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no pickle warning for a safe version
        loaded = load_registered_model(uri, "models:/ffn@champion")
    assert loaded.settings.image_mean == 128.0
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), loaded.model.state_dict().values())
    )


def register_pickled(uri: str, run_id: str, model: torch.nn.Module, name: str) -> str:
    """A version as ffnops registered them before safe files: a whole pickled module."""
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pytorch.log_model(
            model, name="model", registered_model_name=name, serialization_format="pickle"
        )
    client = MlflowClient(uri)
    version = str(info.registered_model_version)
    for key, value in {"ffnops.fov_size": "[9, 9, 9]", "ffnops.deltas": "[2, 2, 2]"}.items():
        client.set_model_version_tag(name, version, key, value)
    return version


class Payload:
    """What a planted pickle does on load: run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_a_legacy_pickle_loads_with_a_warning_and_resaves(
    store: tuple[str, str], tmp_path: Path
) -> None:
    uri, run_id = store
    model = small_model(3)
    version = register_pickled(uri, run_id, model, "legacy")
    with pytest.warns(PickledModelWarning, match=f"ffnops models legacy resave={version}"):
        loaded = load_registered_model(uri, f"models:/legacy/{version}")
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), loaded.model.state_dict().values())
    )
    proc = ffnops(
        "models", "legacy", f"resave={version}", f"tracking.tracking_uri={uri}", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "registered models:/legacy/2" in proc.stdout
    table = proc.stdout.splitlines()
    assert any(line.startswith("1 ") and "pickle (legacy)" in line for line in table)
    assert any(line.startswith("2 ") and "ffnops-network/1" in line for line in table)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resaved = load_registered_model(uri, "models:/legacy/2")
    assert resaved.settings.fov_size == (9, 9, 9)
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), resaved.model.state_dict().values())
    )


def test_a_planted_pickle_payload_is_refused_not_run(
    store: tuple[str, str], tmp_path: Path
) -> None:
    uri, run_id = store
    marker = tmp_path / "pwned"
    files = tmp_path / "files"
    (files / "data").mkdir(parents=True)
    with (files / "data" / "model.pth").open("wb") as out:
        pickle.dump(Payload(marker), out)
    client = MlflowClient(uri)
    client.log_artifacts(run_id, str(files), "model")
    client.create_registered_model("planted")
    source = f"{client.get_run(run_id).info.artifact_uri}/model"
    client.create_model_version(
        "planted",
        source,
        run_id=run_id,
        tags={"ffnops.fov_size": "[9, 9, 9]", "ffnops.deltas": "[2, 2, 2]"},
    )
    with pytest.raises(FfnopsError, match="refused to unpickle"):
        load_registered_model(uri, "models:/planted/1")
    assert not marker.exists()


def scored_version(uri: str, run_id: str, seed: int, arand: float, evaluation: str) -> str:
    """A registered version and a finished inference run of it that logged ``arand``."""
    version = register_model(uri, run_id, small_model(seed), "ffn", SETTINGS).version
    client = MlflowClient(uri)
    found = client.get_experiment_by_name("inference")
    experiment = found.experiment_id if found else client.create_experiment("inference")
    tags = {
        "ffnops.model_name": "ffn",
        "ffnops.model_version": str(version),
        "mlflow.runName": evaluation,
    }
    run = client.create_run(experiment, tags=tags, run_name=evaluation)
    client.log_metric(run.info.run_id, "eval/adapted_rand_error", arand)
    client.set_terminated(run.info.run_id)
    return str(version)


def test_promotion_moves_the_alias_records_it_and_its_gate_refuses_a_worse_version(
    store: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, run_id = store
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "carol")
    first = scored_version(uri, run_id, 0, 0.30, "val")
    better = scored_version(uri, run_id, 1, 0.20, "val")
    worse = scored_version(uri, run_id, 2, 0.40, "val")
    unscored = str(register_model(uri, run_id, small_model(4), "ffn", SETTINGS).version)
    common = dict(evaluation="val", metric="eval/adapted_rand_error", reason=None, force=False)
    done = promote(uri, f"models:/ffn/{first}", "champion", **common)
    assert done.previous is None and done.score is not None and done.score.value == 0.30
    done = promote(uri, f"models:/ffn/{better}", "champion", **{**common, "reason": "lower ARAND"})
    assert done.previous == first and done.previous_score is not None
    client = MlflowClient(uri)
    tags = client.get_model_version("ffn", better).tags
    assert tags["ffnops.promoted.champion.by"] == "carol"
    assert tags["ffnops.promoted.champion.from_version"] == first
    assert tags["ffnops.promoted.champion.reason"] == "lower ARAND"
    assert "ffnops.demoted.champion.at" in client.get_model_version("ffn", first).tags
    with pytest.raises(FfnopsError, match=r"worse than the holder's 0\.2"):
        promote(uri, f"models:/ffn/{worse}", "champion", **common)
    with pytest.raises(FfnopsError, match="no finished run named 'val'"):
        promote(uri, f"models:/ffn/{unscored}", "champion", **common)
    with pytest.raises(FfnopsError, match="name the evaluation"):
        promote(uri, f"models:/ffn/{worse}", "champion", **{**common, "evaluation": None})
    assert str(client.get_model_version_by_alias("ffn", "champion").version) == better
    done = promote(uri, f"models:/ffn/{worse}", "champion", **{**common, "force": True})
    assert done.forced
    assert str(client.get_model_version_by_alias("ffn", "champion").version) == worse
    assert "worse" in client.get_model_version("ffn", worse).tags["ffnops.promoted.champion.forced"]
    rows = {r.version: r for r in version_rows(uri, "ffn", "eval/adapted_rand_error")}
    assert rows[worse].aliases == ("champion",) and rows[better].score is not None
    assert rows[better].score.value == 0.20 and rows[unscored].score is None
    # `ffnops models score=`: the column shows that metric (no run here logged eval/nerl)
    assert all(r.score is None for r in version_rows(uri, "ffn", "eval/nerl"))
    with pytest.raises(FfnopsError, match="metric='eval/speed'"):
        promote(uri, f"models:/ffn/{first}", "other", **{**common, "metric": "eval/speed"})


def test_the_gate_knows_which_way_is_better() -> None:
    low, high = Score("eval/nerl", 0.2, "a", "val"), Score("eval/nerl", 0.6, "b", "val")
    assert gate(high, low, "eval/nerl", "val") is None  # higher NERL is better
    assert "worse" in str(gate(low, high, "eval/nerl", "val"))
    arand = Score("eval/adapted_rand_error", 0.2, "a", "val")
    assert gate(arand, None, "eval/adapted_rand_error", "val") is None  # no score to beat
