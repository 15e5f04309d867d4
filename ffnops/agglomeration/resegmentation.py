"""Agglomeration by resegmentation: run the FFN again on the contact between two objects and
join them where it floods one into the other (google/ffn ``ffn/inference/resegmentation.py``,
``resegmentation_analysis.py``; docs/agglomeration.md, "Agglomeration").

For a pair of touching objects A and B and a point on their contact:

1. a canvas over the subvolume of ``radius`` around the point holds every other object of the
   segmentation as an existing object (they stop the floods, as in one canvas), A and B cleared;
2. the FFN floods once from the voxel of A farthest from A's surface inside the subvolume (where
   a FOV fits), and once, afresh, from B's;
3. inside the smaller *analysis* box (``analysis_radius``) the two object masks (probability at
   least the segment threshold) are compared: ``iou``, their intersection over their union, and
   how much of each original object its own flood recovered (``recovered_a``, ``recovered_b``);
4. the pair is joined when ``iou >= merge_iou`` and both recovered at least ``min_recovery``
   (0.7 and 0.6; google/ffn's manual suggests 0.8 and 0.6, docs/agglomeration.md says why
   ffnops differs). Joined pairs are one object (union-find); each object keeps the smallest id
   of those it joins.

Two objects that are one neuron, split by the first pass, flood into each other from either
side (iou near 1); two neurons that touch stay apart (iou near 0).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ffnops.ffn.canvas import Canvas
from ffnops.ffn.geometry import Vec3, as_vec3
from ffnops.volume import BBox


@dataclass(frozen=True)
class ResegmentationSettings:
    """``agglomerate``'s settings (docs/agglomeration.md)."""

    radius: Vec3 = (24, 24, 24)  # the subvolume around a contact point: 2 r + 1 voxels an axis
    analysis_radius: Vec3 = (16, 16, 16)  # where the two floods are compared
    min_contact: int = 20  # voxel faces two objects share; smaller contacts are not tried
    min_voxels: int = 1000  # objects smaller than this are not tried
    merge_iou: float = 0.7  # google/ffn's manual: 0.8; measured on FIB-25 (docs/agglomeration.md)
    min_recovery: float = 0.6

    def check(self, fov_size: Sequence[int]) -> None:
        """Every value in range and the subvolume holds the FOV, or ValueError naming the key."""
        radius = as_vec3(self.radius, "radius")
        analysis = as_vec3(self.analysis_radius, "analysis_radius")
        if any(2 * r + 1 < f for r, f in zip(radius, fov_size, strict=True)):
            raise ValueError(
                f"radius={list(radius)}: a subvolume of 2 * radius + 1 cannot hold the model's "
                f"FOV {list(fov_size)}; use a radius of at least {[f // 2 for f in fov_size]}"
            )
        if any(a < 0 or a > r for a, r in zip(analysis, radius, strict=True)):
            raise ValueError(
                f"analysis_radius={list(analysis)} must lie within radius={list(radius)}"
            )
        if not 0.0 <= self.merge_iou <= 1.0 or not 0.0 <= self.min_recovery <= 1.0:
            raise ValueError(
                f"merge_iou={self.merge_iou} and min_recovery={self.min_recovery} must be in [0, 1]"
            )
        if self.min_contact < 1 or self.min_voxels < 1:
            raise ValueError(
                f"min_contact={self.min_contact} and min_voxels={self.min_voxels} must be >= 1"
            )


@dataclass(frozen=True)
class Contact:
    """Objects ``a < b`` touch over ``faces`` voxel faces; ``point`` (z, y, x, in the
    segmentation's voxels) is the voxel of ``a`` on the contact nearest its centre."""

    a: int
    b: int
    faces: int
    point: Vec3


def find_contacts(
    labels: npt.NDArray[np.integer], origin: Sequence[int], within: Sequence[int] | None = None
) -> list[Contact]:
    """Every pair of different objects that are 6-neighbours in ``labels`` (a box at ``origin``):
    the faces they share and the voxel on the contact nearest its mean. With ``within`` (a
    size), only faces whose first voxel lies in ``labels[:within]``: a block's own faces, those
    to its next blocks included, so blocks that overlap by a voxel count each face once."""
    seg = np.asarray(labels).astype(np.uint64)
    limit = np.asarray(within if within is not None else seg.shape)
    pairs, where = [], []
    for axis in range(3):
        lo = tuple(slice(0, -1) if d == axis else slice(None) for d in range(3))
        hi = tuple(slice(1, None) if d == axis else slice(None) for d in range(3))
        p, q = seg[lo], seg[hi]
        touch = (p != q) & (p > 0) & (q > 0)
        points = np.argwhere(touch)
        first, second = p[touch], q[touch]
        own = (points < limit).all(axis=1)
        points, first, second = points[own], first[own], second[own]
        low = first < second
        pairs.append(np.stack([np.where(low, first, second), np.where(low, second, first)], 1))
        points[~low, axis] += 1  # the voxel of the smaller id
        where.append(points)
    every, at = np.concatenate(pairs), np.concatenate(where)
    if not len(every):
        return []
    unique, group = np.unique(every, axis=0, return_inverse=True)
    group = group.ravel()
    order = np.argsort(group, kind="stable")
    starts = np.searchsorted(group[order], np.arange(len(unique) + 1))
    contacts = []
    for k, (a, b) in enumerate(unique.tolist()):
        points = at[order[starts[k] : starts[k + 1]]]
        best = points[((points - points.mean(axis=0)) ** 2).sum(axis=1).argmin()]
        point = as_vec3([int(c) + int(o) for c, o in zip(best, origin, strict=True)])
        contacts.append(Contact(int(a), int(b), len(points), point))
    return contacts


@dataclass(frozen=True)
class PairScore:
    """What resegmenting one contact found (``tried`` False: the subvolume had no place for a
    seed in A or B; the other values are then 0)."""

    a: int
    b: int
    faces: int
    point: Vec3
    tried: bool
    iou: float = 0.0
    recovered_a: float = 0.0  # of A's voxels in the analysis box, the share A's flood covers
    recovered_b: float = 0.0
    steps: int = 0  # FOV steps of both floods

    def joins(self, settings: ResegmentationSettings) -> bool:
        return (
            self.tried
            and self.iou >= settings.merge_iou
            and min(self.recovered_a, self.recovered_b) >= settings.min_recovery
        )


def subvolume(point: Sequence[int], radius: Sequence[int], within: BBox) -> BBox:
    """The box of ``radius`` around ``point``, clipped to ``within`` (the segmentation)."""
    start = [max(p - r, w) for p, r, w in zip(point, radius, within.start, strict=True)]
    stop = [min(p + r + 1, w) for p, r, w in zip(point, radius, within.stop, strict=True)]
    return BBox(as_vec3(start), as_vec3([b - a for a, b in zip(start, stop, strict=True)]))


Steps = Generator[npt.NDArray[np.float32], npt.NDArray[np.float32], PairScore]


def resegment(
    canvas: Canvas,
    labels: npt.NDArray[np.integer],
    contact: Contact,
    point: Sequence[int],
    analysis_radius: Sequence[int],
) -> Steps:
    """Floods ``contact``'s two objects in ``canvas`` (over the subvolume whose ``labels`` it
    is given; ``point``: the contact point in the subvolume's voxels) and scores the pair."""
    others = (labels > 0) & (labels != contact.a) & (labels != contact.b)
    _, dense = np.unique(np.where(others, labels, 0), return_inverse=True)
    canvas.add_existing(dense.reshape(labels.shape))
    analysis = tuple(
        slice(max(p - r, 0), p + r + 1) for p, r in zip(point, analysis_radius, strict=True)
    )
    masks, steps = [], 0
    for obj in (contact.a, contact.b):
        start = canvas.deepest(labels == obj, (0, 0, 0))
        if start is None:
            return PairScore(contact.a, contact.b, contact.faces, contact.point, False)
        iters, _, _ = yield from canvas.segment_at(start)
        steps += iters
        with np.errstate(invalid="ignore"):
            masks.append(canvas.seed[analysis] >= canvas.segment_logit)
    from_a, from_b = masks
    union = int((from_a | from_b).sum())
    a_here, b_here = labels[analysis] == contact.a, labels[analysis] == contact.b
    return PairScore(
        contact.a,
        contact.b,
        contact.faces,
        contact.point,
        True,
        iou=float((from_a & from_b).sum()) / max(union, 1),
        recovered_a=float(from_a[a_here].sum()) / max(int(a_here.sum()), 1),
        recovered_b=float(from_b[b_here].sum()) / max(int(b_here.sum()), 1),
        steps=steps,
    )


def joined_ids(
    ids: npt.NDArray[np.integer], pairs: npt.NDArray[np.integer]
) -> npt.NDArray[np.uint64]:
    """For sorted object ``ids``, the id each becomes when ``pairs`` (n, 2) are joined: the
    smallest id of its connected component (union-find over the joined pairs)."""
    keys = np.asarray(ids, np.uint64)
    if not len(keys):
        return keys
    pairs = np.asarray(pairs, np.uint64).reshape(-1, 2)
    rows, cols = np.searchsorted(keys, pairs[:, 0]), np.searchsorted(keys, pairs[:, 1])
    found = (rows < len(keys)) & (cols < len(keys))
    found[found] &= (keys[rows[found]] == pairs[found, 0]) & (keys[cols[found]] == pairs[found, 1])
    if not found.all():
        raise ValueError(
            f"joined pairs name ids that are not objects: {pairs[~found][:3].tolist()}"
        )
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(keys), len(keys)))
    _, component = connected_components(graph, directed=False)
    smallest = np.full(component.max() + 1, np.iinfo(np.uint64).max, np.uint64)
    np.minimum.at(smallest, component, keys)
    out: npt.NDArray[np.uint64] = smallest[component]
    return out
