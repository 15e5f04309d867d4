"""Pictures people would rather look at than read: centre slices of image, target, prediction."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: render to PNG only

import matplotlib.pyplot as plt
import numpy as np
import pytorch_lightning as pl
from matplotlib.figure import Figure
from pytorch_lightning.loggers import MLFlowLogger

from ffnops.volume import BBox, Volume

PLANES = ("xy", "xz", "yz")
COLUMNS = ("image", "target", "prediction")


def slices_figure(preview: dict[str, np.ndarray], title: str) -> Figure:
    """A 3 x 3 grid: rows xy/xz/yz centre slices, columns image | target | prediction."""
    fig, axes = plt.subplots(3, 3, figsize=(7.5, 7.5), constrained_layout=True)
    for row, plane in enumerate(PLANES):
        for col, name in enumerate(COLUMNS):
            ax = axes[row, col]
            image = preview[f"{name}/{plane}"]
            limits = (None, None) if name == "image" else (0.0, 1.0)
            ax.imshow(image, cmap="gray", vmin=limits[0], vmax=limits[1], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name)
            if col == 0:
                ax.set_ylabel(plane)
    fig.suptitle(title)
    return fig


Planes = dict[str, tuple[np.ndarray, np.ndarray]]


def centre_planes(image: np.ndarray, labels: np.ndarray) -> Planes:
    """The xy, xz and yz centre slices of an image box and its labels (both (z, y, x))."""
    centre = [n // 2 for n in image.shape]
    return {
        "xy": (image[centre[0]], labels[centre[0]]),
        "xz": (image[:, centre[1]], labels[:, centre[1]]),
        "yz": (image[:, :, centre[2]], labels[:, :, centre[2]]),
    }


def volume_centre_planes(image: Volume, image_box: BBox, labels: Volume) -> Planes:
    """:func:`centre_planes` read from volumes, three thin boxes only (for boxes too large to
    hold); ``labels`` covers ``image_box`` from its voxel 0."""
    planes: Planes = {}
    centre = [n // 2 for n in image_box.size]
    for axis, name in enumerate(("xy", "xz", "yz")):
        start, size = [0, 0, 0], list(image_box.size)
        start[axis], size[axis] = centre[axis], 1
        box = BBox(tuple(start), tuple(size))  # type: ignore[arg-type]
        source = BBox(tuple(a + b for a, b in zip(start, image_box.start, strict=True)), box.size)  # type: ignore[arg-type]
        gray = np.asarray(image.read(source))
        ids = np.asarray(labels.read(box))
        planes[name] = (np.squeeze(gray, axis), np.squeeze(ids, axis))
    return planes


def overlay_figure(image: np.ndarray, labels: np.ndarray, title: str) -> Figure:
    """Orthogonal centre slices (xy, xz, yz) of the image with the segmentation in colour."""
    return planes_figure(centre_planes(image, labels), title)


def planes_figure(planes: Planes, title: str) -> Figure:
    """The image planes with their labels overlaid in colour (ids hashed to colours)."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.5), constrained_layout=True)
    for ax, (plane, (gray, ids)) in zip(axes, planes.items(), strict=True):
        ax.imshow(gray, cmap="gray", interpolation="nearest")
        rng = np.random.default_rng(0)
        palette = rng.uniform(0.2, 1.0, (4096, 3))
        colours = np.zeros((*ids.shape, 4))
        colours[..., :3] = palette[np.asarray(ids).astype(np.uint64) % np.uint64(4096)]
        colours[..., 3] = np.where(ids > 0, 0.45, 0.0)
        ax.imshow(colours, interpolation="nearest")
        ax.set_title(plane)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    return fig


class PicturesCallback(pl.Callback):
    """Every ``every_n_steps``, logs the last finished example's slices to the MLflow run."""

    def __init__(self, every_n_steps: int) -> None:
        self.every_n_steps = every_n_steps
        self._last_step = -1

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        step = trainer.global_step
        preview = getattr(pl_module, "preview", None)
        if (
            self.every_n_steps <= 0
            or preview is None
            or step == self._last_step
            or step % self.every_n_steps
            or not trainer.is_global_zero
        ):
            return
        self._last_step = step
        for logger in trainer.loggers:
            if isinstance(logger, MLFlowLogger) and logger.run_id:
                volume = str(preview.get("volume", ""))
                fig = slices_figure(preview, f"step {step}, volume {volume}")
                logger.experiment.log_figure(logger.run_id, fig, f"pictures/step_{step:08d}.png")
                plt.close(fig)
