"""Inference options of the FFN canvas, as probabilities, axes (z, y, x).

Google's ``InferenceOptions`` proto (``ffn/inference/inference.proto``) leaves every field at 0
when unset, which turns thresholds into logit(0) = -inf; here every field has the value of Google's
FIB-25 request instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SEED_ORDERS = ("forward", "reverse")


@dataclass
class InferenceOptions:
    """How objects are flooded and accepted. Probabilities are converted to logits once."""

    init_activation: float = 0.95
    """Object probability written at a new seed."""
    pad_value: float = 0.05
    """Probability assumed for canvas voxels never visited."""
    move_threshold: float = 0.9
    """A face voxel must reach this for the FOV to move there; the seed must stay above it."""
    segment_threshold: float = 0.6
    """Voxels at or above this join the object when it is accepted."""
    min_segment_size: int = 1000
    """Objects with fewer voxels are rejected."""
    min_boundary_dist: list[int] = field(default_factory=lambda: [1, 1, 1])
    """(z, y, x): a seed this close to an existing object is skipped."""
    disco_seed_threshold: float = 0.0
    """Disconnected-voxel freezing when the FOV's active fraction exceeds this; < 0 disables."""
    seed_policy: str = "peaks"
    """How seeds are placed: "peaks" (EDT peaks of the non-edge image) or "grid"."""
    seed_policy_args: dict[str, Any] = field(default_factory=dict)
    """Extra arguments of the seed policy (e.g. the grid step)."""
    seed_order: str = "forward"
    """"forward" floods the policy's seeds in its order; "reverse" in the opposite order, last
    seed first: the second run of a consensus (docs/agglomeration.md). google/ffn's
    ``PolicyInvertOrigins`` reverses the first run's successful seeds instead, which needs that
    run's origins; reversing the policy's own seeds needs nothing and works block by block."""
    reflect_faces: bool = False
    """Mirror the image across the faces of the image volume that the box touches, by the FOV
    radius, so that seeds and FOV centres reach the volume's outermost voxels (google/ffn never
    centres a FOV within a radius of them). Not Google's; the mirror is never output, but its
    voxels count towards ``min_segment_size`` (docs/inference.md, "Volume faces")."""
    checkpoint_interval_s: float = 600.0
    """Seconds between inference checkpoints (0 = never)."""

    def __post_init__(self) -> None:
        for name in ("init_activation", "pad_value", "move_threshold", "segment_threshold"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"inference.{name} must be a probability in (0, 1), got {value}")
        if self.init_activation < self.move_threshold:
            raise ValueError(
                "inference.init_activation must be >= move_threshold, or every seed is rejected "
                f"at once (got {self.init_activation} < {self.move_threshold})"
            )
        if self.seed_order not in SEED_ORDERS:
            raise ValueError(
                f"inference.seed_order must be one of {', '.join(SEED_ORDERS)}, "
                f"got {self.seed_order!r}"
            )
        if len(self.min_boundary_dist) != 3:
            raise ValueError("inference.min_boundary_dist needs 3 values (z, y, x)")
