"""Segment one box with one canvas (google/ffn's ``ffn/inference/runner.py``, ``inference.py``).

:func:`segment_box` is the whole of single-canvas inference: read the box, normalise, place
seeds, flood every object, resume from and write checkpoints, and return a
:class:`SegmentationResult`. The blockwise executor builds each block's canvas with the same
pieces (:func:`read_image`, :func:`make_canvas`, :func:`place_seeds`, :func:`make_predictor`).
"""

from __future__ import annotations

import time
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from ffnops.atomic import fresh_partial, publish
from ffnops.errors import FfnopsError
from ffnops.ffn.canvas import Canvas, Counters, run_canvas
from ffnops.ffn.geometry import Vec3
from ffnops.ffn.predictor import TorchPredictor
from ffnops.ffn.seeds import policy_seeds
from ffnops.inference.progress import SeedProgress
from ffnops.inference.request import BoxRequest, DeviceSettings
from ffnops.segmentation import SeedOrigin, SegmentationResult
from ffnops.volume import BBox, VoxelSize
from ffnops.volumes import open_volume

# EM images are uint8 or float32; integer ids are accepted as images for the oracle network.
IMAGE_DTYPES = ("uint8", "uint16", "uint32", "uint64", "float32")

# Called at each checkpoint with the canvas's counters and the seeds done so far.
OnCheckpoint = Callable[[Counters, int], None]


@dataclass(frozen=True)
class BoxImage:
    """A box of the image, normalised, with its mask and where it lies. With
    ``inference.reflect_faces``, ``image`` and ``mask`` are the box mirrored across the volume
    faces it touches: ``before``/``after`` voxels more on each axis than ``raw``."""

    raw: npt.NDArray[np.generic]
    image: npt.NDArray[np.float32]
    mask: npt.NDArray[np.bool_] | None
    voxel_size: VoxelSize
    offset: Vec3  # where the image volume's voxel (0, 0, 0) sits in the dataset's grid
    before: Vec3 = (0, 0, 0)
    after: Vec3 = (0, 0, 0)

    def crop(self, array: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """``array`` over ``image`` cut back to the box (``raw``'s voxels)."""
        return array[
            tuple(
                slice(b, n - a)
                for b, a, n in zip(self.before, self.after, array.shape, strict=True)
            )
        ]


def face_mirror(box: BBox, shape: Vec3, radius: Vec3) -> tuple[Vec3, Vec3]:
    """How many voxels to mirror before and after ``box`` on each axis: the FOV radius where
    the box touches a face of the volume (of ``shape``), else 0."""
    before = tuple(r if s == 0 else 0 for s, r in zip(box.start, radius, strict=True))
    after = tuple(r if e == n else 0 for e, n, r in zip(box.stop, shape, radius, strict=True))
    return before, after  # type: ignore[return-value]


def read_image(request: BoxRequest, box: BBox) -> BoxImage:
    """Reads ``box`` of the request's image (and mask) and normalises it (mirrored across the
    volume's faces with ``inference.reflect_faces``)."""
    with open_volume(request.image_uri, dtypes=IMAGE_DTYPES) as volume:
        raw = np.asarray(volume.read(box))
        voxel_size, offset, shape = volume.voxel_size, volume.offset, volume.shape
    mask = None
    if request.mask_uri:
        with open_volume(request.mask_uri) as mask_volume:
            mask = np.asarray(mask_volume.read(box)) > 0
    check_intensities(request.image_uri, box, raw, mask)
    mean, stddev = np.float32(request.image_mean), np.float32(request.image_stddev)
    image = (raw.astype(np.float32) - mean) / stddev
    if not request.options.reflect_faces:
        return BoxImage(raw, image, mask, voxel_size, offset)
    radius = tuple(f // 2 for f in request.settings.fov_size)
    before, after = face_mirror(box, shape, radius)  # type: ignore[arg-type]
    widths = list(zip(before, after, strict=True))
    image = np.pad(image, widths, mode="reflect")
    mask = np.pad(mask, widths, mode="reflect") if mask is not None else None
    return BoxImage(raw, image, mask, voxel_size, offset, before, after)


class ConstantImageWarning(UserWarning):
    """The image box holds one value only: FFN finds nothing to segment there."""


def check_intensities(
    uri: str, box: BBox, raw: npt.NDArray[np.generic], mask: npt.NDArray[np.bool_] | None
) -> None:
    """Refuses NaN or infinite intensities outside the mask (they would reach the network and
    poison every FOV that sees them); warns of a constant box (no seeds, no objects)."""
    if raw.dtype.kind == "f":
        bad = ~np.isfinite(raw)
        if mask is not None:
            bad &= ~mask
        count = int(bad.sum())
        if count:
            raise FfnopsError(
                f"image {uri}: {count} of {raw.size} voxels of [{box}] are NaN or infinite; "
                "FFN needs finite intensities there (fill them, or exclude them with mask=)"
            )
    if raw.size and raw.min() == raw.max():
        warnings.warn(
            f"image {uri}: every voxel of [{box}] is {raw.flat[0]}; no object will be found there",
            ConstantImageWarning,
            stacklevel=2,
        )


def make_canvas(request: BoxRequest, box_image: BoxImage, keep_probabilities: bool) -> Canvas:
    settings = request.settings
    return Canvas(
        box_image.image,
        settings.fov_size,
        settings.deltas,
        request.options,
        mask=box_image.mask,
        keep_probabilities=keep_probabilities,
    )


def place_seeds(
    request: BoxRequest,
    canvas: Canvas,
    box_image: BoxImage,
    within: BBox | None = None,
    origin: Vec3 = (0, 0, 0),
) -> list[Vec3]:
    """The seed policy's positions in canvas voxels, in the policy's order; with ``within``
    (voxels of the image box, ``box_image.raw``) only those inside it. ``origin``: where the
    image box starts in the request's box (a block's), so a grid is the box's grid."""
    try:
        seeds = policy_seeds(
            request.options,
            canvas.image,
            canvas.fov_radius,
            canvas.mask,
            box_image.voxel_size,
            tuple(o - b for o, b in zip(origin, box_image.before, strict=True)),
        )
    except ValueError as exc:
        raise FfnopsError(str(exc)) from None
    if within is None:
        return seeds
    within = within.shifted([-b for b in box_image.before])
    lo, hi = within.start, within.stop
    return [s for s in seeds if all(a <= p < b for p, a, b in zip(s, lo, hi, strict=True))]


def unmirrored(position: Vec3, box_image: BoxImage) -> Vec3:
    """A canvas position in voxels of the image box (``box_image.raw``)."""
    return tuple(p - b for p, b in zip(position, box_image.before, strict=True))  # type: ignore[return-value]


def device_name(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def make_predictor(model: torch.nn.Module, device: DeviceSettings) -> TorchPredictor:
    if device.num_threads:
        torch.set_num_threads(device.num_threads)
    return TorchPredictor(
        model, device_name(device.device), device.precision, device.channels_last, device.compile
    )


_PREDICTORS: dict[int, TorchPredictor] = {}


def worker_predictor(request: BoxRequest) -> TorchPredictor:
    """One predictor per worker process and model (the model moves to its device once)."""
    key = id(request.model)
    if key not in _PREDICTORS:
        _PREDICTORS[key] = make_predictor(request.model, request.device)
    return _PREDICTORS[key]


def save_state(path: Path, state: dict[str, np.ndarray]) -> None:
    """Writes the canvas state atomically (a kill leaves the previous checkpoint intact)."""
    tmp = fresh_partial(path)
    with open(tmp, "wb") as f:
        np.savez(f, **state)  # type: ignore[arg-type]
    publish(tmp, path)


def resume_from(path: Path, canvas: Canvas) -> tuple[int, float]:
    """Restores a checkpoint of the same inference if there is one; returns the next seed and
    the seconds segmenting took before it (so a resumed run reports its whole time)."""
    if not path.exists():
        return 0, 0.0
    try:
        with np.load(path, allow_pickle=False) as data:
            first = canvas.restore({k: data[k] for k in data.files})
            before = float(data["seconds"]) if "seconds" in data.files else 0.0
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise FfnopsError(
            f"corrupt inference checkpoint {path} ({exc}); delete it to start over"
        ) from None
    print(f"resuming from {path}: {canvas.counters.objects} objects, seed {first}")
    return first, before


def segment_box(
    request: BoxRequest,
    on_checkpoint: OnCheckpoint | None = None,
    box_image: BoxImage | None = None,
) -> tuple[SegmentationResult, npt.NDArray[np.generic]]:
    """Segments the request's box with one canvas; returns the result and the raw image box
    (for pictures and the neuroglancer copy). ``box_image``: the box already read (and
    checked) by the caller, else it is read here. Resumes from ``request.checkpoint`` if it
    exists; the caller removes it once the result is written."""
    box = request.box
    box_image = box_image if box_image is not None else read_image(request, box)
    canvas = make_canvas(request, box_image, keep_probabilities=True)
    seeds = place_seeds(request, canvas, box_image)
    predictor = make_predictor(request.model, request.device)
    checkpoint = request.checkpoint
    first_seed, before = resume_from(checkpoint, canvas) if checkpoint else (0, 0.0)
    started = time.perf_counter()
    progress = SeedProgress(canvas, len(seeds), first_seed)

    def after_seed(index: int) -> None:
        progress.seed_done()
        interval = request.options.checkpoint_interval_s
        if checkpoint is not None and progress.due_for_checkpoint(interval):
            elapsed = before + time.perf_counter() - started
            save_state(checkpoint, {**canvas.state(), "seconds": np.asarray(elapsed)})
            if on_checkpoint is not None:
                on_checkpoint(canvas.counters, canvas.seeds_done)

    run_canvas(canvas.segment_all(seeds, first_seed, after_seed), progress.wrap(predictor))
    progress.close()
    seconds = before + time.perf_counter() - started
    result = SegmentationResult(
        labels=box_image.crop(canvas.final_segmentation()),
        offset=tuple(o + s for o, s in zip(box_image.offset, box.start, strict=True)),  # type: ignore[arg-type]
        voxel_size=box_image.voxel_size,
        origins={
            i: SeedOrigin(unmirrored(o.start, box_image), o.iters, o.walltime_s)
            for i, o in canvas.origins.items()
        },
        counters={**canvas.counters.as_dict(), "seconds": seconds},
        probabilities=(
            box_image.crop(canvas.probabilities) if canvas.probabilities is not None else None
        ),
        image_uri=request.image_uri,
        settings={**vars(request.options), "model": request.model_uri, "bbox": str(box)},
    )
    return result, box_image.raw
