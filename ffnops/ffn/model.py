"""ConvStack3DFFNModel: Google's FFN network (``ffn/training/models/convstack_3d.py``), in PyTorch.

Input is one tensor ``(B, 2, z, y, x)``, as the reference concatenates it: channel 0 the normalised
image, channel 1 the current object-mask logits ("seed"). Output: the updated logits
``seed + update`` over the whole FOV, ``(B, 1, z, y, x)``.
All convolutions are 3x3x3 with zero padding 1 except the final 1x1x1, as in the reference; layer
names follow its variables (``conv0_a``, ``conv{i}_a``/``_b``, ``conv_lom``) so checkpoints map 1:1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ffnops.ffn.geometry import Vec3, as_vec3


class ResidualModule(nn.Module):
    """x + conv_b(relu(conv_a(relu(x)))): one of the depth - 1 residual modules."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv_a = nn.Conv3d(features, features, 3, padding=1)
        self.conv_b = nn.Conv3d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x + self.conv_b(torch.relu(self.conv_a(torch.relu(x))))
        return out


class ConvStack3DFFNModel(nn.Module):
    """The FFN ConvStack3D: a stem conv pair, ``depth - 1`` residual modules, a 1x1x1 output.

    ``fov_size`` and ``deltas`` are (z, y, x); they describe how the model is used (input size,
    FOV step) and are stored with it so inference needs nothing else.
    """

    def __init__(
        self,
        fov_size: Sequence[int] | int = (33, 33, 33),
        deltas: Sequence[int] | int = (8, 8, 8),
        depth: int = 9,
        features: int = 32,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.fov_size: Vec3 = as_vec3(fov_size, "fov_size")
        self.deltas: Vec3 = as_vec3(deltas, "deltas")
        if any(n % 2 == 0 for n in self.fov_size):
            raise ValueError(
                f"fov_size must be odd on every axis (a centre voxel), got {self.fov_size}"
            )
        self.depth = depth
        self.features = features
        self.conv0_a = nn.Conv3d(2, features, 3, padding=1)
        self.conv0_b = nn.Conv3d(features, features, 3, padding=1)
        self.residual = nn.ModuleList(ResidualModule(features) for _ in range(depth - 1))
        self.conv_lom = nn.Conv3d(features, 1, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform weights and zero biases (tf_slim's defaults, as the reference)."""
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)  # type: ignore[arg-type]

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """New logits ``seed + update`` (B, 1, z, y, x) for inputs (B, 2, z, y, x) = image, seed."""
        seed = inputs[:, 1:2]
        x = self.conv0_b(torch.relu(self.conv0_a(inputs)))
        for module in self.residual:
            x = module(x)
        update: torch.Tensor = self.conv_lom(torch.relu(x))
        return seed + update
