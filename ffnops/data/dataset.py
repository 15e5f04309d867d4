"""A dataset: the image, labels and mask volumes of one EM region, named by URI.

This dataclass is the typed schema of the ``dataset/`` config group and the object the commands
use: volumes are opened only when asked for, so composing a config touches no file.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from ffnops.errors import FfnopsError
from ffnops.volume import BBox, Volume
from ffnops.volumes import open_volume

IMAGE_DTYPES = ("uint8", "float32")
LABEL_DTYPES = ("uint8", "uint16", "uint32", "uint64", "int32", "int64")


@dataclass
class Dataset:
    """Named volumes of one region. ``bbox`` ("z0:z1,y0:y1,x0:x1") restricts use to a box."""

    name: str = MISSING
    image: str = MISSING
    labels: str | None = None
    mask: str | None = None
    image_mean: float = 128.0
    image_stddev: float = 33.0
    bbox: str | None = None

    def open_image(self) -> Volume:
        return open_volume(self.image, dtypes=IMAGE_DTYPES)

    def open_labels(self) -> Volume:
        if self.labels is None:
            raise FfnopsError(f"dataset {self.name!r} has no labels (dataset.labels is null)")
        return open_volume(self.labels, dtypes=LABEL_DTYPES)

    def region(self) -> BBox | None:
        return BBox.parse(self.bbox) if self.bbox else None
