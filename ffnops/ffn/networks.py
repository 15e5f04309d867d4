"""Networks as files that load without running code from them.

A saved network is a folder of two files: ``network.json`` names the network class (one of
:data:`NETWORKS`, ffnops's own) and its constructor arguments, and ``weights.safetensors``
holds its state dict in the safetensors format (tensors only: reading it cannot execute
anything). Loading builds the named class with those arguments and copies the weights in, so a
model from a shared registry runs only code that is already installed (docs/team.md, "Safe
model files").

Models registered by ffnops before this format were whole pickled modules (``data/model.pth``
of an MLflow pytorch model). :func:`load_pickled` still reads them, with torch's weights-only
unpickler allowed to build only the classes of :data:`NETWORKS` and the torch layers they are
made of, so a file with any other object in it (a planted payload) is refused, not run.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

from ffnops.ffn.model import ConvStack3DFFNModel, ResidualModule
from ffnops.ffn.oracle import OracleFFN

FORMAT = "ffnops-network/1"
ARCHITECTURE_FILE = "network.json"
WEIGHTS_FILE = "weights.safetensors"

# The network classes a saved file may name; no other class is ever built from a file.
NETWORKS: dict[str, type[nn.Module]] = {
    "ConvStack3DFFNModel": ConvStack3DFFNModel,
    "OracleFFN": OracleFFN,
}
# What the weights-only unpickler may construct when it reads a legacy pickled module.
_PICKLED_LAYERS: list[Any] = [ResidualModule, nn.Conv3d, nn.ModuleList]


class UnsafeModelFile(ValueError):
    """A model file that would need code outside :data:`NETWORKS` to load (it is not loaded)."""


@dataclass(frozen=True)
class Architecture:
    """A network class of :data:`NETWORKS` and the keyword arguments that build it."""

    network: str
    arguments: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, model: nn.Module) -> Architecture:
        """The architecture of ``model``: its constructor's arguments read back from it."""
        name = type(model).__name__
        if NETWORKS.get(name) is not type(model):
            raise UnsafeModelFile(
                f"network {type(model).__module__}.{type(model).__qualname__} is not one of "
                f"ffnops's networks ({', '.join(NETWORKS)}); register it in "
                "ffnops.ffn.networks.NETWORKS"
            )
        parameters = inspect.signature(type(model).__init__).parameters
        arguments = {key: _json_value(getattr(model, key)) for key in parameters if key != "self"}
        return cls(name, arguments)

    def build(self) -> nn.Module:
        network = NETWORKS.get(self.network)
        if network is None:
            raise UnsafeModelFile(
                f"network {self.network!r} is not one of ffnops's networks ({', '.join(NETWORKS)})"
            )
        try:
            return network(**self.arguments)
        except (TypeError, ValueError) as exc:
            raise UnsafeModelFile(f"network {self.network} with {self.arguments}: {exc}") from None


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def save_network(model: nn.Module, folder: Path) -> Architecture:
    """Writes ``network.json`` and ``weights.safetensors`` of ``model`` into ``folder``."""
    architecture = Architecture.of(model)
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "format": FORMAT,
        "network": architecture.network,
        "arguments": architecture.arguments,
    }
    (folder / ARCHITECTURE_FILE).write_text(json.dumps(record, indent=1) + "\n")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": FORMAT})
    return architecture


def is_saved_network(folder: Path) -> bool:
    return (folder / ARCHITECTURE_FILE).is_file()


def load_network(folder: Path) -> nn.Module:
    """Builds the network ``folder``'s ``network.json`` names and loads its safetensors weights."""
    record_file = folder / ARCHITECTURE_FILE
    try:
        record = json.loads(record_file.read_text())
        architecture = Architecture(str(record["network"]), dict(record["arguments"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UnsafeModelFile(f"{record_file}: not an ffnops network file ({exc})") from None
    if record.get("format") != FORMAT:
        raise UnsafeModelFile(f"{record_file}: format {record.get('format')!r}, expected {FORMAT}")
    model = architecture.build()
    try:
        state = safetensors.torch.load_file(str(folder / WEIGHTS_FILE), device="cpu")
        model.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, safetensors.SafetensorError) as exc:
        reason = str(exc).splitlines()[0]
        raise UnsafeModelFile(f"{folder / WEIGHTS_FILE}: weights do not load ({reason})") from None
    return model.eval()


def load_pickled(path: Path) -> nn.Module:
    """A legacy whole-module pickle, read by torch's weights-only unpickler (see the module doc)."""
    allowed = [*NETWORKS.values(), *_PICKLED_LAYERS]
    try:
        with torch.serialization.safe_globals(allowed):
            model = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the unpickler raises plain Exceptions naming what it refused
        text = str(exc)
        refused = next((line for line in text.splitlines() if "Unsupported" in line), text)
        raise UnsafeModelFile(
            f"{path}: refused to unpickle it ({refused.strip()[:200]}); only ffnops's networks "
            f"({', '.join(NETWORKS)}) load from a pickle"
        ) from None
    if not isinstance(model, nn.Module) or type(model) not in NETWORKS.values():
        raise UnsafeModelFile(f"{path}: holds a {type(model).__name__}, not an ffnops network")
    return model.eval()
