"""Checks of setting values that the schemas' types cannot express, as one-line errors."""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.hydra_config import HydraConfig

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


def given_on_command_line(key: str, below: bool = False) -> bool:
    """True if the user set ``key`` (e.g. ``inference.pad_value``) as an override; with
    ``below``, also a key under it (``training.validation.inference.min_segment_size``)."""
    try:
        overrides = HydraConfig.get().overrides.task
    except ValueError:
        return False
    keys = [o.lstrip("+~").split("=", 1)[0] for o in overrides]
    return any(k == key or (below and k.startswith(f"{key}.")) for k in keys)
