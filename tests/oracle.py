"""The oracle network (it floods exactly the labels it is given as its image) in a real sqlite
MLflow store, for the tests of blockwise inference."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from ffnops.ffn.oracle import OracleFFN
from ffnops.tracking.mlflow_tracking import register_model


def register_oracle(path: Path) -> str:
    """A sqlite store in ``path`` holding the oracle (FOV 17, deltas 4) as
    models:/oracle@truth; returns its URI."""
    uri = f"sqlite:///{path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(client.create_experiment("models", f"{path}/artifacts"))
    settings = {
        "fov_size": [17, 17, 17],
        "deltas": [4, 4, 4],
        "image_mean": 0.0,
        "image_stddev": 1.0,
    }
    register_model(uri, run.info.run_id, OracleFFN(17, 4), "oracle", settings, alias="truth")
    return uri
