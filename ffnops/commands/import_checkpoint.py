"""``ffnops import-checkpoint PATH model_name=NAME``: Google's FFN checkpoint as a registered model.

Reads the TF1 checkpoint without TensorFlow, maps its ConvStack3D variables onto the PyTorch
model and registers it in MLflow with the settings inference needs: from Google's inference
request (``request=...pbtxt``) when given, else from this command's config (Google's FIB-25
values). The run records where the weights came from (path, global step). ``PATH=google`` is
the copy of Google's released FIB-25 checkpoint bundled with ffnops, with its request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
from omegaconf import DictConfig

from ffnops.errors import FfnopsError
from ffnops.ffn.model_settings import ModelSettings
from ffnops.interop.google import model_from_checkpoint
from ffnops.interop.inference_request import read_request, request_model, request_settings
from ffnops.interop.tf_checkpoint import CheckpointError, read_checkpoint
from ffnops.sample_data import GOOGLE_FIB25_CHECKPOINT, GOOGLE_FIB25_REQUEST
from ffnops.tracking.mlflow_tracking import check_tracking_uri, register_model, run_tags

BUNDLED = "google"  # `ffnops import-checkpoint google`: the bundled copy of Google's release


# Google's FIB-25 values, used for what neither the command line nor the request sets.
DEFAULTS: dict[str, Any] = {
    "fov_size": [33, 33, 33],
    "deltas": [8, 8, 8],
    "image_mean": 128.0,
    "image_stddev": 33.0,
    "init_activation": 0.95,
    "pad_value": 0.05,
    "move_threshold": 0.9,
}


def run(cfg: DictConfig) -> None:
    check_tracking_uri(cfg.tracking.tracking_uri)
    prefix = str(cfg.checkpoint).removesuffix(".index")
    request_file = cfg.request
    if prefix == BUNDLED:
        prefix = str(GOOGLE_FIB25_CHECKPOINT)
        request_file = request_file or str(GOOGLE_FIB25_REQUEST)
    given = {k: cfg[k] for k in (*DEFAULTS, "depth") if cfg[k] is not None}
    given = {k: list(v) if k in ("fov_size", "deltas") else v for k, v in given.items()}
    from_request: dict[str, Any] = {}
    if request_file:
        request = read_request(request_file)
        from_request = request_settings(request, request_file)
        shape = request_model(request, request_file)
        from_request |= {k: v for k, v in vars(shape).items() if v is not None}
        differ = [
            f"{k}={given[k]} (the request has {from_request[k]})"
            for k in given
            if k in from_request and given[k] != from_request[k]
        ]
        if differ:
            raise FfnopsError(
                f"the command line contradicts inference request {request_file}: "
                f"{'; '.join(differ)}; drop these or change the request"
            )
    settings: dict[str, Any] = DEFAULTS | from_request | given
    fov, deltas, depth = (
        settings.pop("fov_size"),
        settings.pop("deltas"),
        settings.pop("depth", None),
    )
    try:
        variables = read_checkpoint(prefix)
        model = model_from_checkpoint(variables, fov, deltas, depth, cfg.features)
    except CheckpointError as exc:
        raise FfnopsError(f"{prefix}: {exc}") from None
    step = int(variables["global_step"]) if "global_step" in variables else None
    settings.update(
        {
            "model_class": "ffnops.ffn.model.ConvStack3DFFNModel",
            "fov_size": list(model.fov_size),
            "deltas": list(model.deltas),
            "depth": model.depth,
            "features": model.features,
        }
    )
    # The request's other options (segment_threshold, seed_policy, ...) are kept as provenance.
    model_settings = ModelSettings.from_dict(settings, f"checkpoint {prefix}")
    mlflow.set_tracking_uri(cfg.tracking.tracking_uri)
    mlflow.set_experiment(cfg.tracking.experiment_name)
    with mlflow.start_run(run_name=f"import {Path(prefix).name}") as run:
        mlflow.set_tags(
            {
                "ffnops.origin": "tensorflow-checkpoint",
                "ffnops.checkpoint_path": str(Path(prefix).absolute()),
                "ffnops.checkpoint_global_step": str(step),
                **run_tags(cfg.tracking),
            }
        )
        mlflow.log_params({k: json.dumps(v) for k, v in settings.items()})
        if request_file:
            mlflow.log_artifact(str(request_file), "request")
    version = register_model(
        cfg.tracking.tracking_uri,
        run.info.run_id,
        model,
        cfg.model_name,
        model_settings,
        alias=cfg.alias,
        description=f"imported from TF checkpoint {prefix} (global step {step})",
    )
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking.tracking_uri)
    client.set_model_version_tag(
        cfg.model_name, version.version, "ffnops.origin", str(Path(prefix).absolute())
    )
    client.set_model_version_tag(cfg.model_name, version.version, "ffnops.global_step", str(step))
    alias = f"@{cfg.alias}" if cfg.alias else f"/{version.version}"
    print(
        f"registered models:/{cfg.model_name}{alias} (version {version.version}): ConvStack3D "
        f"depth {model.depth}, {model.features} features, FOV {model.fov_size}, deltas "
        f"{model.deltas}, global step {step}"
    )
