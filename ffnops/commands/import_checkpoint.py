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
from ffnops.interop.google import model_from_checkpoint, parse_text_proto, request_settings
from ffnops.interop.tf_checkpoint import CheckpointError, read_checkpoint
from ffnops.sample_data import GOOGLE_FIB25_CHECKPOINT, GOOGLE_FIB25_REQUEST
from ffnops.tracking.mlflow_tracking import check_tracking_uri, register_model, run_tags

BUNDLED = "google"  # `ffnops import-checkpoint google`: the bundled copy of Google's release


def run(cfg: DictConfig) -> None:
    check_tracking_uri(cfg.tracking.tracking_uri)
    prefix = str(cfg.checkpoint).removesuffix(".index")
    request_file = cfg.request
    if prefix == BUNDLED:
        prefix = str(GOOGLE_FIB25_CHECKPOINT)
        request_file = request_file or str(GOOGLE_FIB25_REQUEST)
    settings: dict[str, Any] = {
        "image_mean": cfg.image_mean,
        "image_stddev": cfg.image_stddev,
        "init_activation": cfg.init_activation,
        "pad_value": cfg.pad_value,
        "move_threshold": cfg.move_threshold,
    }
    fov, deltas, depth = list(cfg.fov_size), list(cfg.deltas), cfg.depth
    if request_file:
        path = Path(request_file)
        if not path.is_file():
            raise FfnopsError(f"inference request not found: {path}")
        request = parse_text_proto(path.read_text())
        settings.update(request_settings(request))
        if "model_args" in request:
            args = json.loads(request["model_args"])
            fov = list(args.get("fov_size", fov))[::-1]  # Google's (x, y, z)
            deltas = list(args.get("deltas", deltas))[::-1]
            depth = args.get("depth", depth)
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
