"""An oracle in place of a trained network: it predicts from ground-truth labels.

Feed the label volume as the "image" (with image_mean 0 and image_stddev 1): the object is the
label under the most confident voxel of the seed channel, and the oracle answers +4 logits on it
and -4 elsewhere. Segmenting with it measures what the canvas, policies and acceptance rules can
reach with a perfect network: an upper bound for a trained model, and a test of the algorithm.
"""

from __future__ import annotations

import torch
from torch import nn

from ffnops.ffn.geometry import Vec3, as_vec3


class OracleFFN(nn.Module):
    """Same interface as the FFN model: inputs (B, 2, z, y, x) -> logits (B, 1, z, y, x).

    Confidence falls slightly with the distance from the FOV centre, so face maxima sit at face
    centres rather than at the first corner of a tie (a real network's logits are never flat).
    """

    def __init__(self, fov_size: Vec3 | int = (33, 33, 33), deltas: Vec3 | int = (8, 8, 8)) -> None:
        super().__init__()
        self.fov_size = as_vec3(fov_size, "fov_size")
        self.deltas = as_vec3(deltas, "deltas")

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        labels, seed = inputs[:, 0], inputs[:, 1]
        best = seed.reshape(len(seed), -1).argmax(1)
        target = labels.reshape(len(labels), -1).gather(1, best[:, None])
        inside = (labels == target.reshape(-1, 1, 1, 1)) & (labels > 0)
        axes = [
            torch.arange(n, dtype=torch.float32, device=inputs.device) - n // 2
            for n in labels.shape[1:]
        ]
        grids = torch.meshgrid(*axes, indexing="ij")
        distance = torch.sqrt(grids[0] ** 2 + grids[1] ** 2 + grids[2] ** 2)
        return torch.where(inside, 4.0 - 0.01 * distance, -4.0)[:, None]
