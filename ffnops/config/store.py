"""Registers the schemas with Hydra's ConfigStore and the ``ffnops.*`` config resolvers."""

from __future__ import annotations

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from ffnops.config import schemas
from ffnops.data.dataset import Dataset
from ffnops.ffn.options import InferenceOptions
from ffnops.sample_data import sample_path

GROUP_SCHEMAS: dict[str, type] = {
    "dataset": Dataset,
    "model": schemas.ModelConfig,
    "trainer": schemas.TrainerConfig,
    "tracking": schemas.TrackingConfig,
    "inference": InferenceOptions,
    "executor": schemas.ExecutorConfig,
    "paths": schemas.PathsConfig,
    "viewer": schemas.ViewerConfig,
    "optimizer": schemas.SGDConfig,
}

# Groups whose options have different schemas: option name -> schema.
OPTION_SCHEMAS: dict[str, type] = {
    "optimizer_sgd": schemas.SGDConfig,
    "optimizer_adam": schemas.AdamConfig,
}

COMMAND_SCHEMAS: dict[str, type] = {
    "plugins": schemas.PluginsCommand,
    "info": schemas.InfoCommand,
    "convert": schemas.ConvertCommand,
    "mesh": schemas.MeshCommand,
    "skeletons": schemas.SkeletonsCommand,
    "consensus": schemas.ConsensusCommand,
    "agglomerate": schemas.AgglomerateCommand,
    "partitions": schemas.PartitionsCommand,
    "coordinates": schemas.CoordinatesCommand,
    "train": schemas.TrainCommand,
    "infer": schemas.InferCommand,
    "evaluate": schemas.EvaluateCommand,
    "import-checkpoint": schemas.ImportCheckpointCommand,
    "view": schemas.ViewCommand,
    "quickstart": schemas.QuickstartCommand,
    "fib25": schemas.Fib25Command,
    "server": schemas.ServerCommand,
    "models": schemas.ModelsCommand,
    "promote": schemas.PromoteCommand,
    "tune": schemas.TuneCommand,
}


def register_configs() -> None:
    """Makes ``schema/<group>`` and ``schema/command/<name>`` available to config files."""
    store = ConfigStore.instance()
    for group, node in GROUP_SCHEMAS.items():
        store.store(group="schema", name=group, node=node)
    for name, node in OPTION_SCHEMAS.items():
        store.store(group="schema", name=name, node=node)
    for name, node in COMMAND_SCHEMAS.items():
        store.store(group="schema/command", name=name, node=node)
    OmegaConf.register_new_resolver("ffnops.sample", sample_path, replace=True)
