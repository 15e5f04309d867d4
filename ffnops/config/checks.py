"""Checks of setting values that the schemas' types cannot express, as one-line errors."""

from __future__ import annotations

from collections.abc import Sequence

from ffnops.errors import FfnopsError
from ffnops.ffn.geometry import Vec3, as_vec3


def vec3_setting(values: Sequence[int] | int, key: str, minimum: int = 1) -> Vec3:
    """Three integers (z, y, x), each at least ``minimum``, or an error naming ``key``."""
    shown = list(values) if isinstance(values, Sequence) else values
    try:
        vector = as_vec3(values, key)
    except (TypeError, ValueError):
        raise FfnopsError(f"{key}={shown}: expected 3 integers (z, y, x)") from None
    if min(vector) < minimum:
        raise FfnopsError(f"{key}={shown}: every value must be at least {minimum}")
    return vector
