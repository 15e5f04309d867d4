"""Hard examples: draw the training coordinates a model gets wrong more often (docs/training.md,
"Hard examples").

Given a segmentation of a training volume by the model to fine-tune (``ffnops infer`` of the
training part), a coordinate is *hard* when its centre voxel is labelled and lies in a piece
that segmentation gets wrong: left unsegmented, cut off its object's main segment (a split), or
held by a segment whose main object is another one (a merge), with main segments and objects as
the error list has them (``ffnops/evaluation/errors.py``). Hard coordinates are then drawn
``weight`` times as often as the others (a weighted draw with replacement instead of Google's
shuffle).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ffnops.data.dataset import LABEL_DTYPES, Dataset
from ffnops.errors import FfnopsError
from ffnops.evaluation.errors import main_matches
from ffnops.ffn.coordinates import CoordinateTable
from ffnops.ffn.geometry import as_vec3
from ffnops.volume import BBox, Volume
from ffnops.volumes import open_volume

DEFAULT_HARD_WEIGHT = 4.0


@dataclass(frozen=True)
class HardExamples:
    """``data.hard_examples``: per ``data.volumes`` name, a segmentation of that volume (URI) by
    the model being fine-tuned; hard coordinates are drawn ``weight`` times as often."""

    segmentations: Mapping[str, str]
    weight: float


def check_hard_examples(hard: HardExamples, datasets: Mapping[str, Dataset]) -> None:
    """Names, weight and every segmentation's grid checked before any work."""
    if not hard.weight > 0:
        raise FfnopsError(f"data.hard_examples.weight={hard.weight}: must be above 0")
    for name, uri in hard.segmentations.items():
        if name not in datasets:
            raise FfnopsError(
                f"data.hard_examples.segmentation.{name}: not one of data.volumes "
                f"({', '.join(datasets)})"
            )
        _segmentation_box(name, uri, datasets[name])


def _segmentation_box(name: str, uri: str, dataset: Dataset) -> tuple[BBox, BBox]:
    with dataset.open_labels() as labels, open_volume(uri, dtypes=LABEL_DTYPES) as seg:
        return _shared_boxes(name, uri, dataset, labels, seg)


def _shared_boxes(
    name: str, uri: str, dataset: Dataset, labels: Volume, seg: Volume
) -> tuple[BBox, BBox]:
    """The voxels the segmentation and the labels share: in the labels' and in its own."""
    if not np.allclose(seg.voxel_size, labels.voxel_size):
        raise FfnopsError(
            f"data.hard_examples.segmentation.{name}={uri} has voxels of "
            f"{list(seg.voxel_size)} nm and the labels {dataset.labels} "
            f"{list(labels.voxel_size)} nm: they must be the same grid"
        )
    start = as_vec3([s - o for s, o in zip(seg.offset, labels.offset, strict=True)])
    common = BBox(start, seg.shape).intersect(BBox.from_shape(labels.shape))
    if common is None:
        raise FfnopsError(
            f"data.hard_examples.segmentation.{name}={uri} (shape {seg.shape}, offset "
            f"{seg.offset}) does not overlap the labels {dataset.labels} (shape "
            f"{labels.shape}, offset {labels.offset})"
        )
    return common, common.shifted(start)


def hard_coordinates(
    table: CoordinateTable,
    datasets: Mapping[str, Dataset],
    segmentations: Mapping[str, str],
    min_overlap: int = 100,
) -> npt.NDArray[np.bool_]:
    """Which records of ``table`` are hard (the module's docstring) for their volume's
    segmentation; records of volumes without one are not."""
    hard = np.zeros(len(table), bool)
    for name, uri in segmentations.items():
        if name not in table.names:
            continue
        with datasets[name].open_labels() as labels, open_volume(uri, dtypes=LABEL_DTYPES) as seg:
            in_labels, in_seg = _shared_boxes(name, uri, datasets[name], labels, seg)
            truth = np.asarray(labels.read(in_labels)).astype(np.int64)
            segmentation = np.asarray(seg.read(in_seg)).astype(np.int64)
        matches = main_matches(segmentation, truth, min_overlap)
        rows = np.flatnonzero(table.volume == table.names.index(name))
        centres = table.zyx[rows] - np.asarray(in_labels.start)
        inside = ((centres >= 0) & (centres < np.asarray(in_labels.size))).all(axis=1)
        rows, centres = rows[inside], centres[inside]
        g = truth[tuple(centres.T)]
        s = segmentation[tuple(centres.T)]
        hard[rows] = (g > 0) & (
            (s == 0) | (lookup(matches.segment_of, g) != s) | (lookup(matches.object_of, s) != g)
        )
    return hard


def lookup(table: Mapping[int, int], keys: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """``table[k]`` for every key, -1 where it has none (vectorised: millions of coordinates)."""
    if not table:
        return np.full(len(keys), -1, np.int64)
    known = np.fromiter(table.keys(), np.int64, len(table))
    values = np.fromiter(table.values(), np.int64, len(table))
    order = np.argsort(known)
    known, values = known[order], values[order]
    at = np.minimum(np.searchsorted(known, keys), len(known) - 1)
    return np.where(known[at] == keys, values[at], -1)


def draw_weights(hard: npt.NDArray[np.bool_], weight: float) -> npt.NDArray[np.float64]:
    """Per record, how likely a draw picks it: hard ones ``weight`` times the others."""
    return np.where(hard, float(weight), 1.0)
