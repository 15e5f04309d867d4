"""FOV movement during training, one example at a time (Google's ``ffn/training/examples.py``).

An example is a patch larger than the FOV around a training coordinate; its canvas (object-mask
logits) starts at logit(seed_pad) with logit(0.95) at the centre. A policy yields FOV offsets
(z, y, x, relative to the patch centre) lazily, looking at the canvas as it is *after* the
previous step wrote its logits:

* ``fixed``: (0, 0, 0), then the 26 shifts {-d, 0, d}^3, each taken if the canvas at its centre
  has reached ``threshold``. The shift order is shuffled once per process, as the reference.
* ``max_pred_moves``: breadth-first from the centre along face-max candidates, restricted to
  voxels of the true object, at most one step per quantised cell.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ffnops.ffn.geometry import Vec3, as_vec3
from ffnops.ffn.logit import logit
from ffnops.ffn.movement import face_max_candidates

POLICIES = ("fixed", "max_pred_moves")
SOFT_TRUE, SOFT_FALSE = 0.95, 0.05


@dataclass(frozen=True)
class TrainingGeometry:
    """Sizes that follow from the model and the policy (z, y, x)."""

    fov_size: Vec3
    deltas: Vec3
    policy: str = "fixed"
    fov_moves: int = 1

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"fov_policy must be one of {POLICIES}, got {self.policy!r}")
        if self.policy == "fixed" and self.fov_moves != 1:
            raise ValueError("the fixed policy supports fov_moves=1 only (as the reference)")

    @property
    def moves(self) -> int:
        """The reference's ``fov_moves()``: one more for max_pred_moves."""
        return self.fov_moves + (1 if self.policy == "max_pred_moves" else 0)

    @property
    def patch_size(self) -> Vec3:
        """Image, label and canvas patch: FOV + 2 * deltas * moves (49^3 for FIB-25, fixed)."""
        return as_vec3(
            [f + 2 * d * self.moves for f, d in zip(self.fov_size, self.deltas, strict=True)]
        )

    @property
    def eval_size(self) -> Vec3:
        """Region scored after an example: FOV + 2 * deltas * fov_moves (no +1)."""
        return as_vec3(
            [f + 2 * d * self.fov_moves for f, d in zip(self.fov_size, self.deltas, strict=True)]
        )

    @property
    def max_radius(self) -> Vec3:
        """How far an FOV centre may move from the patch centre."""
        return as_vec3([(p - f) // 2 for p, f in zip(self.patch_size, self.fov_size, strict=True)])


def fixed_shifts(deltas: Sequence[int], shuffle: bool, seed: int | None = None) -> list[Vec3]:
    """The 26 shifts {-d, 0, d}^3 without (0, 0, 0), shuffled once if asked."""
    steps = [(-d, 0, d) for d in deltas]
    shifts = [s for s in itertools.product(*steps) if any(s)]
    unique = list(dict.fromkeys(shifts))  # an axis with delta 0 repeats shifts
    if shuffle:
        order = np.random.default_rng(seed).permutation(len(unique))
        unique = [unique[i] for i in order]
    return unique  # type: ignore[return-value]


def initial_canvas(
    shape: Sequence[int], seed_pad: float, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Canvas of logit(seed_pad) with logit(0.95) at the centre voxel."""
    canvas = torch.full(tuple(shape), logit(seed_pad), dtype=torch.float32, device=device)
    canvas[tuple(n // 2 for n in shape)] = logit(SOFT_TRUE)
    return canvas


def fov_slices(
    centre: Sequence[int], offset: Sequence[int], fov: Sequence[int]
) -> tuple[slice, ...]:
    """The FOV box centred at ``centre + offset``."""
    return tuple(
        slice(c + o - f // 2, c + o - f // 2 + f)
        for c, o, f in zip(centre, offset, fov, strict=True)
    )


def fixed_policy(canvas: torch.Tensor, shifts: Sequence[Vec3], threshold: float) -> Iterator[Vec3]:
    """(0, 0, 0), then every shift whose target voxel has reached ``threshold`` by then."""
    centre = [n // 2 for n in canvas.shape]
    for offset in [(0, 0, 0), *shifts]:
        z, y, x = (c + o for c, o in zip(centre, offset, strict=True))
        if float(canvas[z, y, x]) >= threshold:
            yield offset  # type: ignore[misc]


def max_pred_moves_policy(
    canvas: torch.Tensor,
    soft_labels: torch.Tensor,
    geometry: TrainingGeometry,
    threshold: float,
) -> Iterator[Vec3]:
    """Breadth-first along face-max candidates, only onto voxels of the true object."""
    centre = [n // 2 for n in canvas.shape]
    deltas, fov, limit = geometry.deltas, geometry.fov_size, geometry.max_radius
    queue: deque[Vec3] = deque([(0, 0, 0)])
    done: set[Vec3] = set()
    while queue:
        offset = queue.popleft()
        if any(abs(o) > r for o, r in zip(offset, limit, strict=True)):
            continue
        cell = tuple((o + d // 2) // d if d else 0 for o, d in zip(offset, deltas, strict=True))
        if cell in done:
            continue
        pos = tuple(c + o for c, o in zip(centre, offset, strict=True))
        if float(canvas[pos]) < threshold:
            continue
        if any(offset) and float(soft_labels[pos]) < 0.9:
            continue  # moves are restricted to the ground-truth object
        done.add(cell)  # type: ignore[arg-type]
        yield offset
        view = canvas[fov_slices(centre, offset, fov)]
        for _, move in face_max_candidates(view, deltas, threshold):
            queue.append(as_vec3([o + m for o, m in zip(offset, move, strict=True)]))


def soften_labels(labels: np.ndarray) -> np.ndarray:
    """0.95 where the voxel belongs to the centre's (nonzero) object, 0.05 elsewhere."""
    centre = labels[tuple(n // 2 for n in labels.shape)]
    lom = (labels == centre) & (labels > 0)
    return np.where(lom, SOFT_TRUE, SOFT_FALSE).astype(np.float32)
