"""What the inference runners take: one typed request, built by ``ffnops infer`` from its config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ffnops.ffn.model_settings import ModelSettings
from ffnops.ffn.options import InferenceOptions
from ffnops.volume import BBox


@dataclass(frozen=True)
class DeviceSettings:
    """Where and how the network runs: ``device`` "cpu" or "cuda", ``precision`` "fp32" or
    "bf16" (autocast), the 3-D channels-last layout, torch's thread count (None: torch's), and
    whether the network is compiled (``torch.compile``, docs/inference.md)."""

    device: str = "cpu"
    precision: str = "fp32"
    channels_last: bool = True
    num_threads: int | None = None
    compile: bool = False


@dataclass(frozen=True)
class BoxRequest:
    """One box of an image to segment with one model, all inputs checked by the caller.

    ``box`` is in the image volume's voxels (z, y, x); the image is normalised as
    ``(raw - image_mean) / image_stddev``; ``mask`` voxels > 0 are never seeds or FOV centres.
    ``checkpoint``, if given, is where the canvas is saved between seeds and resumed from.
    """

    model: nn.Module
    settings: ModelSettings
    options: InferenceOptions
    image_uri: str
    box: BBox
    image_mean: float
    image_stddev: float
    model_uri: str = ""
    mask_uri: str | None = None
    checkpoint: Path | None = None
    device: DeviceSettings = DeviceSettings()
