"""Where a segmentation is wrong: each split and merge against a dense ground truth, worst
first (docs/evaluation.md, "Error lists").

A ground-truth object overlapped by several segments (each by at least ``min_overlap``
voxels) is split: every segment but its largest is one *split* error, the piece that segment
cut off. A segment that overlaps several objects so merges them: every object but its largest
is one *merge* error, the part of that object the segment swallowed. The queue is ordered by
the ground-truth skeleton length (nm) in the piece, then by its voxels (all there is with no
skeletons): what a tracer loses, so a merge of two long neurons comes first. Its *position* is
the voxel where the two parts touch (the face-adjacent contact nearest the contacts' mean), else
the voxel of the piece nearest its centroid: a proofreader's view opens there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from ffnops.evaluation.skeletons import Skeletons

SPLIT, MERGE = "split", "merge"


@dataclass(frozen=True)
class SegmentationError:
    """One split or merge. Split: ``groundtruth_id`` is cut, ``segment_id`` is the piece cut
    off and ``other_id`` the object's main segment. Merge: ``segment_id`` merges, and
    ``groundtruth_id`` is the object merged into it, ``other_id`` the segment's main object."""

    kind: str
    groundtruth_id: int
    segment_id: int
    other_id: int
    voxels: int  # of the piece
    skeleton_nm: float  # ground-truth skeleton length in the piece (0 with no skeletons)
    position: tuple[int, int, int]  # voxel (z, y, x) of the scored array

    def as_row(self) -> dict[str, object]:
        row = asdict(self)
        z, y, x = row.pop("position")
        return {**row, "z": z, "y": y, "x": x}


@dataclass(frozen=True)
class GroundTruthObject:
    """A ground-truth object's fate: its segments and run (``run_length_nm`` from the ERL)."""

    groundtruth_id: int
    voxels: int
    skeleton_nm: float
    segments: int  # segments that overlap it by at least min_overlap voxels
    main_segment: int
    merged_with: int  # other objects its main segment also holds
    run_length_nm: float


def _overlap_table(
    seg: npt.NDArray[np.integer], gt: npt.NDArray[np.integer]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    both = (seg > 0) & (gt > 0)
    pairs = np.stack([seg[both].astype(np.int64), gt[both].astype(np.int64)], axis=1)
    if len(pairs) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    unique, counts = np.unique(pairs, axis=0, return_counts=True)
    return unique[:, 0], unique[:, 1], counts.astype(np.int64)


@dataclass(frozen=True)
class MainMatches:
    """Each object's main segment and each segment's main object: the partner it shares the
    most voxels with, among overlaps of at least ``min_overlap`` voxels (ties to the lower id)."""

    segment_of: dict[int, int]  # ground-truth id -> main segment
    object_of: dict[int, int]  # segment id -> main ground-truth object


def main_matches(
    segmentation: npt.NDArray[np.integer],
    groundtruth: npt.NDArray[np.integer],
    min_overlap: int = 100,
) -> MainMatches:
    """The main matches of the overlaps (of labelled, segmented voxels) of the two arrays."""
    seg_ids, gt_ids, counts = _overlap_table(segmentation, groundtruth)
    return _main_matches(seg_ids, gt_ids, counts, counts >= min_overlap)


def _main_matches(
    seg_ids: npt.NDArray[np.int64],
    gt_ids: npt.NDArray[np.int64],
    counts: npt.NDArray[np.int64],
    strong: npt.NDArray[np.bool_],
) -> MainMatches:
    def largest(keys: npt.NDArray[np.int64], values: npt.NDArray[np.int64]) -> dict[int, int]:
        order = np.lexsort((-counts[strong], keys))
        k, val = keys[order], values[order]
        first = np.unique(k, return_index=True)[1]
        return {int(k[i]): int(val[i]) for i in first}

    return MainMatches(
        largest(gt_ids[strong], seg_ids[strong]), largest(seg_ids[strong], gt_ids[strong])
    )


def _contacts(
    same: npt.NDArray[np.integer], differ: npt.NDArray[np.integer]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Face-adjacent voxel pairs labelled alike in ``same`` and unlike in ``differ`` (both
    > 0): keys (label in ``same``, smaller and larger label in ``differ``) and positions."""
    keys, positions = [], []
    for axis in range(3):
        n = same.shape[axis]
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(0, n - 1), slice(1, n)
        s0, s1 = same[tuple(lo)], same[tuple(hi)]
        d0, d1 = differ[tuple(lo)], differ[tuple(hi)]
        where = (s0 == s1) & (s0 > 0) & (d0 != d1) & (d0 > 0) & (d1 > 0)
        index = np.argwhere(where)
        a, b = d0[where].astype(np.int64), d1[where].astype(np.int64)
        keys.append(np.stack([s0[where].astype(np.int64), np.minimum(a, b), np.maximum(a, b)], 1))
        positions.append(index)
    return np.concatenate(keys), np.concatenate(positions).astype(np.int64)


def _meeting_points(
    keys: npt.NDArray[np.int64], positions: npt.NDArray[np.int64]
) -> dict[tuple[int, int, int], tuple[int, int, int]]:
    """Per key, the contact nearest the mean of its contacts."""
    if len(keys) == 0:
        return {}
    unique, group = np.unique(keys, axis=0, return_inverse=True)
    group = group.ravel()
    count = np.bincount(group)
    mean = np.stack([np.bincount(group, weights=positions[:, a]) / count for a in range(3)], 1)
    distance = ((positions - mean[group]) ** 2).sum(axis=1)
    order = np.lexsort((distance, group))
    first = order[np.searchsorted(group[order], np.arange(len(unique)))]
    return {
        tuple(int(k) for k in key): tuple(int(p) for p in positions[i])  # type: ignore[misc]
        for key, i in zip(unique, first, strict=True)
    }


def nearest_to_mean(points: npt.NDArray[np.int64]) -> tuple[int, int, int]:
    """Of ``points`` (n, 3), the one nearest their mean: a place that lies on them."""
    best = points[((points - points.mean(axis=0)) ** 2).sum(axis=1).argmin()]
    return (int(best[0]), int(best[1]), int(best[2]))


def _skeleton_pieces(
    skeletons: Skeletons | None,
    node_segments: npt.NDArray[np.int64] | None,
    node_groundtruth: npt.NDArray[np.int64] | None,
) -> dict[tuple[int, int], float]:
    """Skeleton length (nm) per (segment, ground-truth object): edges whose two nodes lie in
    that segment and that object."""
    if skeletons is None or node_segments is None or node_groundtruth is None:
        return {}
    u, v = skeletons.edges[:, 0], skeletons.edges[:, 1]
    keep = (node_segments[u] == node_segments[v]) & (node_groundtruth[u] == node_groundtruth[v])
    keep &= (node_segments[u] > 0) & (node_groundtruth[u] > 0)
    keys = np.stack([node_segments[u][keep], node_groundtruth[u][keep]], axis=1)
    if len(keys) == 0:
        return {}
    unique, where = np.unique(keys, axis=0, return_inverse=True)
    total = np.bincount(where.ravel(), weights=skeletons.edge_lengths[keep])
    return {(int(s), int(g)): float(t) for (s, g), t in zip(unique, total, strict=True)}


def find_errors(
    segmentation: npt.NDArray[np.integer],
    groundtruth: npt.NDArray[np.integer],
    min_overlap: int = 100,
    skeletons: Skeletons | None = None,
    node_segments: npt.NDArray[np.int64] | None = None,
    node_groundtruth: npt.NDArray[np.int64] | None = None,
    run_lengths: dict[int, float] | None = None,
) -> tuple[list[SegmentationError], list[GroundTruthObject]]:
    """The errors, worst first, and every ground-truth object's row; label 0 of the ground
    truth is unlabelled, and segments there are not scored."""
    seg_ids, gt_ids, counts = _overlap_table(segmentation, groundtruth)
    strong = counts >= min_overlap
    pieces = _skeleton_pieces(skeletons, node_segments, node_groundtruth)
    errors: list[SegmentationError] = []

    matches = _main_matches(seg_ids, gt_ids, counts, strong)
    main_segment, main_object = matches.segment_of, matches.object_of
    points: dict[str, dict[tuple[int, int, int], tuple[int, int, int]]] = {}

    def meeting(kind: str, key: tuple[int, int, int]) -> tuple[int, int, int] | None:
        """Where the two parts of an error touch (contacts found once per kind)."""
        if kind not in points:
            same, differ = (
                (groundtruth, segmentation) if kind == SPLIT else (segmentation, groundtruth)
            )
            points[kind] = _meeting_points(*_contacts(same, differ))
        return points[kind].get(key)

    for s, g, n in zip(seg_ids[strong], gt_ids[strong], counts[strong], strict=True):
        s, g, n = int(s), int(g), int(n)
        # A split: g's piece in s, beside g's main segment; a merge: g's part of s, beside s's
        # main object. Each keyed by what stays the same and the two that differ.
        for kind, same, mine, other in (
            (SPLIT, g, s, main_segment[g]),
            (MERGE, s, g, main_object[s]),
        ):
            if mine == other:
                continue
            where = meeting(kind, (same, min(mine, other), max(mine, other)))
            if where is None:
                where = nearest_to_mean(np.argwhere((segmentation == s) & (groundtruth == g)))
            errors.append(SegmentationError(kind, g, s, other, n, pieces.get((s, g), 0.0), where))
    errors.sort(key=lambda e: (-e.skeleton_nm, -e.voxels, e.kind, e.groundtruth_id, e.segment_id))

    sizes = dict(zip(*np.unique(groundtruth[groundtruth > 0], return_counts=True), strict=True))
    lengths = skeletons.lengths() if skeletons is not None else {}
    per_object_segments = dict(zip(*np.unique(gt_ids[strong], return_counts=True), strict=True))
    per_segment_objects = dict(zip(*np.unique(seg_ids[strong], return_counts=True), strict=True))
    objects = []
    for g, size in sorted(sizes.items()):
        main = main_segment.get(int(g), 0)
        objects.append(
            GroundTruthObject(
                int(g),
                int(size),
                float(lengths.get(int(g), 0.0)),
                int(per_object_segments.get(g, 0)),
                main,
                int(per_segment_objects.get(main, 1)) - 1 if main else 0,
                float((run_lengths or {}).get(int(g), 0.0)),
            )
        )
    return errors, objects


def position_in_volume(
    error: SegmentationError, origin_voxels: Sequence[int]
) -> tuple[int, int, int]:
    """The error's voxel in the volume's own voxels (the scored array starts at origin)."""
    z, y, x = (int(p) + int(o) for p, o in zip(error.position, origin_voxels, strict=True))
    return (z, y, x)
