"""What a registered model carries besides its weights: the settings inference needs to use it.

Written by ``ffnops train`` and ``ffnops import-checkpoint`` as model-version tags
``ffnops.<field>`` (JSON values), read back by ``ffnops infer``. One frozen dataclass, so the
writer and the reader cannot disagree on a key. Tags under ``ffnops.`` that are not fields here
(provenance: ``origin``, ``global_step``, ``parent_model``, a request's other options) are kept
in ``extra`` and never read as settings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ffnops.ffn.geometry import Vec3, as_vec3

TAG_PREFIX = "ffnops."
# The inference options a model version can carry (fields of ModelSettings of the same names).
INFERENCE_OPTIONS = (
    "pad_value",
    "init_activation",
    "move_threshold",
    "segment_threshold",
    "min_segment_size",
    "min_boundary_dist",
    "disco_seed_threshold",
    "seed_policy",
    "reflect_faces",
)


@dataclass(frozen=True)
class ModelSettings:
    """The network's geometry and the input and canvas conventions it was trained with (z, y, x).

    The fields of :data:`INFERENCE_OPTIONS` are the model's defaults for the inference options
    of the same names (:class:`ffnops.ffn.options.InferenceOptions`): set by training (pad
    value, move threshold), by an imported request (all of Google's), or by ``ffnops tune``
    (searched on a validation box); a command-line value overrides them.
    """

    fov_size: Vec3
    deltas: Vec3
    image_mean: float | None = None
    image_stddev: float | None = None
    pad_value: float | None = None
    init_activation: float | None = None
    move_threshold: float | None = None
    segment_threshold: float | None = None
    min_segment_size: int | None = None
    min_boundary_dist: list[int] | None = None
    disco_seed_threshold: float | None = None
    seed_policy: str | None = None
    reflect_faces: bool | None = None
    model_class: str | None = None
    depth: int | None = None
    features: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fov_size", as_vec3(self.fov_size, "fov_size"))
        object.__setattr__(self, "deltas", as_vec3(self.deltas, "deltas"))
        if min(self.fov_size) < 1 or any(f % 2 == 0 for f in self.fov_size):
            raise ValueError(f"fov_size must be odd and positive (z, y, x), got {self.fov_size}")

    @property
    def fov_radius(self) -> Vec3:
        """How far a FOV reaches from its centre (z, y, x)."""
        return as_vec3([f // 2 for f in self.fov_size])

    def inference_options(self) -> dict[str, Any]:
        """The inference options this model sets (those it stores)."""
        return {n: getattr(self, n) for n in INFERENCE_OPTIONS if getattr(self, n) is not None}

    def to_tags(self) -> dict[str, str]:
        """Model-version tags: ``ffnops.<field>`` -> JSON (lists and numbers read back as such)."""
        values = {k: v for k, v in asdict(self).items() if k != "extra" and v is not None}
        values["fov_size"], values["deltas"] = list(self.fov_size), list(self.deltas)
        tags = {f"{TAG_PREFIX}{k}": json.dumps(v) for k, v in self.extra.items()}
        tags.update({f"{TAG_PREFIX}{k}": json.dumps(v) for k, v in values.items()})
        return tags

    @classmethod
    def from_tags(cls, tags: Mapping[str, str], source: str = "the model version") -> ModelSettings:
        """Reads :meth:`to_tags`'s tags (other tags are ignored); ``source`` names the version in
        the error a version without ``fov_size``/``deltas`` gets."""
        values: dict[str, Any] = {}
        for key, text in tags.items():
            if key.startswith(TAG_PREFIX):
                try:
                    values[key[len(TAG_PREFIX) :]] = json.loads(text)
                except json.JSONDecodeError:
                    values[key[len(TAG_PREFIX) :]] = text
        return cls.from_dict(values, source)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "settings") -> ModelSettings:
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: v for k, v in values.items() if k in names}
        extra = {k: v for k, v in values.items() if k not in names}
        if "fov_size" not in known or "deltas" not in known:
            raise ValueError(f"{source} has no fov_size/deltas settings")
        return cls(**known, extra=extra)
