"""Loading a registered model (``models:/name@alias`` or ``models:/name/3``) with its settings."""

from __future__ import annotations

import re
from dataclasses import dataclass

import mlflow
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ffnops.errors import FfnopsError
from ffnops.ffn.model_settings import ModelSettings

_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


@dataclass
class RegisteredModel:
    """A loaded network, the version it came from and the settings stored with it."""

    model: torch.nn.Module
    name: str
    version: str
    uri: str
    settings: ModelSettings


def _registered_listing(client: MlflowClient) -> str:
    entries = []
    for model in client.search_registered_models():
        aliases = ", ".join(f"@{a}" for a in sorted(model.aliases or {})) or "no aliases"
        entries.append(f"{model.name} ({aliases})")
    return "; ".join(entries) or "none"


def load_registered_model(tracking_uri: str, model_uri: str) -> RegisteredModel:
    """Loads the network of ``model_uri``; a wrong name or alias lists what is registered."""
    match = _MODEL_URI.match(model_uri)
    if not match:
        raise FfnopsError(
            f"model={model_uri!r}: expected models:/NAME@ALIAS or models:/NAME/VERSION"
        )
    client = MlflowClient(tracking_uri=tracking_uri)
    name = match["name"]
    try:
        if match["alias"]:
            version = client.get_model_version_by_alias(name, match["alias"])
        else:
            version = client.get_model_version(name, match["version"])
    except MlflowException:
        raise FfnopsError(
            f"model={model_uri}: not registered in {tracking_uri}; registered models: "
            f"{_registered_listing(client)}"
        ) from None
    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pytorch.load_model(f"models:/{name}/{version.version}", map_location="cpu")
    try:
        settings = ModelSettings.from_tags(version.tags, f"{model_uri} (version {version.version})")
    except ValueError as exc:
        raise FfnopsError(str(exc)) from None
    return RegisteredModel(model, name, str(version.version), model_uri, settings)
