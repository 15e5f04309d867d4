"""Google's FFN artefacts in ffnops terms: ConvStack3D checkpoints and inference requests.

Checkpoint variables ``seed_update/conv0_a``, ``conv0_b``, ``conv{i}_a|b`` (i = 1..depth-1) and
``conv_lom`` map one to one onto :class:`ffnops.ffn.model.ConvStack3DFFNModel`; TensorFlow's
kernel layout ``[kz, ky, kx, in, out]`` becomes PyTorch's ``[out, in, kz, ky, kx]`` (both
cross-correlate and SAME padding equals padding 1, so no flip or shift). Inference requests are
read by :mod:`ffnops.interop.inference_request`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from ffnops.ffn.model import ConvStack3DFFNModel, ResidualModule
from ffnops.interop.tf_checkpoint import CheckpointError

SCOPE = "seed_update"


def checkpoint_depth(variables: Mapping[str, Any]) -> int:
    """The ConvStack3D depth a checkpoint's variables describe (1 stem + residual modules)."""
    stems = [
        int(m[1]) for k in variables if (m := re.fullmatch(rf"{SCOPE}/conv(\d+)_a/weights", k))
    ]
    if not stems:
        raise CheckpointError(
            f"not an FFN ConvStack3D checkpoint: no {SCOPE}/conv*_a/weights variables "
            f"(found {sorted(variables)[:5]}...)"
        )
    return max(stems) + 1


def model_from_checkpoint(
    variables: Mapping[str, npt.NDArray[np.generic]],
    fov_size: Sequence[int] = (33, 33, 33),
    deltas: Sequence[int] = (8, 8, 8),
    depth: int | None = None,
    features: int | None = None,
) -> ConvStack3DFFNModel:
    """Builds the PyTorch model and copies every checkpoint weight into it, checking shapes."""
    found_depth = checkpoint_depth(variables)
    if depth is not None and depth != found_depth:
        raise CheckpointError(f"asked for depth {depth}, the checkpoint has depth {found_depth}")
    stem = variables.get(f"{SCOPE}/conv0_a/weights")
    if stem is None:
        raise CheckpointError(f"variable {SCOPE}/conv0_a/weights is missing")
    found_features = int(stem.shape[-1])
    if features is not None and features != found_features:
        raise CheckpointError(
            f"asked for {features} features, the checkpoint has {found_features} "
            f"({SCOPE}/conv0_a/weights has shape {stem.shape})"
        )
    model = ConvStack3DFFNModel(fov_size, deltas, depth=found_depth, features=found_features)
    layers: dict[str, torch.nn.Conv3d] = {"conv0_a": model.conv0_a, "conv0_b": model.conv0_b}
    for i, module in enumerate(model.residual, start=1):
        assert isinstance(module, ResidualModule)
        layers[f"conv{i}_a"], layers[f"conv{i}_b"] = module.conv_a, module.conv_b
    layers["conv_lom"] = model.conv_lom
    with torch.no_grad():
        for name, conv in layers.items():
            # TF [kz, ky, kx, in, out] -> PyTorch [out, in, kz, ky, kx]
            _copy(variables, f"{SCOPE}/{name}/weights", conv.weight, (4, 3, 0, 1, 2))
            _copy(variables, f"{SCOPE}/{name}/biases", conv.bias, (0,))  # type: ignore[arg-type]
    return model


def _copy(
    variables: Mapping[str, npt.NDArray[np.generic]],
    key: str,
    param: torch.Tensor,
    to_torch: tuple[int, ...],
) -> None:
    """Copies variable ``key`` into ``param`` after transposing its axes by ``to_torch``."""
    torch_shape = tuple(param.shape)
    tf_shape = tuple(torch_shape[to_torch.index(axis)] for axis in range(len(to_torch)))
    if key not in variables:
        raise CheckpointError(f"variable {key} is missing (expected shape {tf_shape})")
    value = np.asarray(variables[key], dtype=np.float32)
    if value.shape != tf_shape:
        raise CheckpointError(f"variable {key} has shape {value.shape}, expected {tf_shape}")
    param.copy_(torch.from_numpy(np.ascontiguousarray(value.transpose(to_torch))))
