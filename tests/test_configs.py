"""Every config in conf/ composes against its schema and builds its object; schemas catch typos."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path

import ffnops.conf
import hydra
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf

from ffnops.cli import COMMANDS
from ffnops.config.schemas import MODEL_START_KEYS
from ffnops.config.store import GROUP_SCHEMAS, OPTION_SCHEMAS, register_configs

CONF_DIR = Path(ffnops.conf.__file__).parent
GROUP_FILES = sorted(
    f"{p.parent.name}/{p.stem}" for g in GROUP_SCHEMAS for p in (CONF_DIR / g).glob("*.yaml")
)


@pytest.fixture(autouse=True)
def hydra_conf() -> Iterator[None]:
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield


def test_every_group_has_configs() -> None:
    for group in GROUP_SCHEMAS:
        assert list((CONF_DIR / group).glob("*.yaml")), f"conf/{group}/ is empty"


@pytest.mark.parametrize("name", GROUP_FILES)
def test_group_config_composes_and_instantiates(name: str) -> None:
    group, option = name.split("/")
    cfg = compose(config_name=name)
    node = cfg[group]
    schema = OPTION_SCHEMAS.get(f"{group}_{option}", GROUP_SCHEMAS[group])
    assert OmegaConf.get_type(node) is schema  # typed by its schema
    if "_target_" not in node:
        obj = OmegaConf.to_object(node)
        assert isinstance(obj, GROUP_SCHEMAS[group])
        return
    target = hydra.utils.get_class(node._target_)
    accepted = set(inspect.signature(target.__init__).parameters)
    unknown = set(node) - accepted - {"_target_", "_partial_", *MODEL_START_KEYS}
    assert not unknown, f"{name}: {target.__name__} takes no {sorted(unknown)}"
    needs_gpu = node.get("accelerator") == "gpu"
    if needs_gpu and not torch.cuda.is_available():
        pytest.skip(f"{name} needs a GPU to instantiate (its keys were checked)")
    arguments = {k: v for k, v in node.items() if k not in MODEL_START_KEYS}
    extra = {"logger": False} if group == "trainer" else {}
    built = hydra.utils.instantiate(OmegaConf.create(arguments), **extra)
    if node.get("_partial_"):  # e.g. an optimiser, completed by the command with parameters
        built = built(torch.nn.Linear(2, 1).parameters())
    assert isinstance(built, target)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_config_composes(command: str) -> None:
    cfg = compose(config_name=command)
    OmegaConf.resolve(cfg)
    assert isinstance(cfg, DictConfig)


def test_misspelt_key_fails_with_its_name() -> None:
    with pytest.raises(ConfigCompositionException) as err:
        compose(config_name="model/tiny", overrides=["model.dpeth=3"])
    assert "dpeth" in str(err.value.__cause__ or err.value)


def test_wrong_type_fails_with_the_key() -> None:
    with pytest.raises(ConfigCompositionException) as err:
        compose(config_name="model/tiny", overrides=["model.depth=deep"])
    message = str(err.value.__cause__ or err.value)
    assert "model.depth" in message and "deep" in message


def test_model_values_come_from_the_files() -> None:
    cfg = compose(config_name="model/convstack_3d")
    model = hydra.utils.instantiate(
        {k: v for k, v in cfg.model.items() if k not in MODEL_START_KEYS}
    )
    assert model.depth == 12 and model.fov_size == (33, 33, 33) and model.deltas == (8, 8, 8)


def test_invalid_inference_options_are_rejected() -> None:
    cfg = compose(config_name="inference/fib25", overrides=["inference.move_threshold=1.5"])
    with pytest.raises(ValueError, match=r"inference.move_threshold must be a probability"):
        OmegaConf.to_object(cfg.inference)
