"""Small (z, y, x) helpers shared by the method's modules."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Vec3 = tuple[int, int, int]


def as_vec3(values: Sequence[int] | int, name: str = "value") -> Vec3:
    """Three ints (z, y, x); a single int is used on every axis."""
    if isinstance(values, int | np.integer):
        return (int(values),) * 3  # type: ignore[return-value]
    items = tuple(int(v) for v in values)
    if len(items) != 3:
        raise ValueError(f"{name} needs 3 values (z, y, x), got {list(values)}")
    return items  # type: ignore[return-value]
