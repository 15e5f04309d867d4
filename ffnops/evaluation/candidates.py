"""Likely errors without a ground truth: what a lab on new data should look at first
(docs/evaluation.md, "Without ground truth").

Three kinds of candidate, each scored from what a segmentation (and its inference) already has:

* ``contact``: two segments that touch. A small piece an FFN left beside an object, or split
  off it, spends much of its surface against it, while two neurons that only pass each other
  touch over little of either. Score: the faces the two share over the smaller one's surface
  (its faces against any other label or background), in [0, 1].
* ``face``: a segment that touches a face of the box: it may go on outside, unseen. Score: its
  voxels on the faces over its surface.
* ``weak``: with the object probability map, a segment most of whose voxels were claimed just
  above the segment threshold, so a small change would have lost them. Score: the fraction of
  its voxels with probability below ``threshold + margin`` (``margin`` 0.1).

Segments smaller than ``min_voxels`` are left out; the queue is ordered by score, then by the
smaller segment's voxels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from ffnops.evaluation.errors import nearest_to_mean

CONTACT, FACE, WEAK = "contact", "face", "weak"


@dataclass(frozen=True)
class Candidate:
    """A place to check: ``segment_id`` (and ``other_id`` for a contact, else 0)."""

    kind: str
    segment_id: int
    other_id: int
    voxels: int  # the smaller segment's (a contact) or the segment's
    score: float
    position: tuple[int, int, int]  # voxel (z, y, x) of the scored array

    def as_row(self) -> dict[str, object]:
        row = asdict(self)
        z, y, x = row.pop("position")
        return {**row, "z": z, "y": y, "x": x}


def find_candidates(
    segmentation: npt.NDArray[np.integer],
    probabilities: npt.NDArray[np.floating] | None = None,
    threshold: float | None = None,
    min_voxels: int = 100,
    margin: float = 0.1,
) -> list[Candidate]:
    """The candidates of the module's docstring, highest score first."""
    seg = np.asarray(segmentation).astype(np.int64)
    ids, sizes = np.unique(seg[seg > 0], return_counts=True)
    size = dict(zip(ids.tolist(), sizes.tolist(), strict=True))
    kept = {i for i, n in size.items() if n >= min_voxels}
    found: list[Candidate] = []

    pairs, where, surface = [], [], np.zeros(int(seg.max()) + 1, np.int64)
    for axis in range(3):
        n = seg.shape[axis]
        lo, hi = [slice(None)] * 3, [slice(None)] * 3
        lo[axis], hi[axis] = slice(0, n - 1), slice(1, n)
        a, b = seg[tuple(lo)], seg[tuple(hi)]
        differ = a != b
        surface += np.bincount(a[differ], minlength=len(surface))
        surface += np.bincount(b[differ], minlength=len(surface))
        touch = differ & (a > 0) & (b > 0)
        pairs.append(np.stack([np.minimum(a[touch], b[touch]), np.maximum(a[touch], b[touch])], 1))
        where.append(np.argwhere(touch))
    every, at = np.concatenate(pairs), np.concatenate(where)
    if len(every):
        unique, group, counts = np.unique(every, axis=0, return_inverse=True, return_counts=True)
        order = np.argsort(group.ravel(), kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)])
        for k, ((a_id, b_id), contacts) in enumerate(zip(unique.tolist(), counts, strict=True)):
            if a_id not in kept or b_id not in kept:
                continue
            small = a_id if (size[a_id], a_id) < (size[b_id], b_id) else b_id
            points = at[order[starts[k] : starts[k + 1]]]
            score = float(contacts) / max(int(surface[small]), 1)
            found.append(
                Candidate(CONTACT, a_id, b_id, size[small], score, nearest_to_mean(points))
            )

    shell = np.zeros(seg.shape, bool)
    for axis in range(3):
        first, last = [slice(None)] * 3, [slice(None)] * 3
        first[axis], last[axis] = slice(0, 1), slice(-1, None)
        shell[tuple(first)] = shell[tuple(last)] = True
    on_face = seg[shell]
    face_ids, face_counts = np.unique(on_face[on_face > 0], return_counts=True)
    face_points = np.argwhere(shell)
    for segment, count in zip(face_ids.tolist(), face_counts.tolist(), strict=True):
        if segment in kept:
            points = face_points[on_face == segment]
            score = count / max(int(surface[segment]) + count, 1)
            found.append(Candidate(FACE, segment, 0, size[segment], score, nearest_to_mean(points)))

    if probabilities is not None and threshold is not None:
        weak = (seg > 0) & (np.nan_to_num(probabilities, nan=1.0) < threshold + margin)
        weak_points, weak_labels = np.argwhere(weak), seg[weak]  # both in C order
        order = np.argsort(weak_labels, kind="stable")
        weak_ids, starts, weak_counts = np.unique(
            weak_labels[order], return_index=True, return_counts=True
        )
        for segment, start, count in zip(weak_ids.tolist(), starts, weak_counts, strict=True):
            if segment in kept:
                points = weak_points[order[start : start + count]]
                score = float(count) / size[segment]
                found.append(
                    Candidate(WEAK, segment, 0, size[segment], score, nearest_to_mean(points))
                )
    found.sort(key=lambda c: (-c.score, -c.voxels, c.kind, c.segment_id, c.other_id))
    return found
