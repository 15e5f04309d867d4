"""Expected run length (ERL) of a segmentation over ground-truth skeletons (docs/evaluation.md).

As ``funlib.evaluate.expected_run_length`` defines it (funkelab/funlib.evaluate,
``funlib/evaluate/run_length.py``): each skeleton node takes the segment at its voxel. A
segment that holds nodes of two or more skeletons is a *merging* segment, and every skeleton
with a node in one counts as merged: all of its length scores zero. Otherwise an edge whose two
nodes lie in one segment is *correct*, one between two segments is a *split*, one touching
background (segment 0) is *omitted*. Skeleton ``s`` of length ``L_s`` with correct length
``c_{s,k}`` in segment ``k`` has the expected run ``sum_k c_{s,k}^2 / L_s``, and

    ERL = sum_s (L_s / L) * sum_k c_{s,k}^2 / L_s = sum_{s,k} c_{s,k}^2 / L,  L = sum_s L_s,

the run a tracer starting at a random point of the skeletons expects before a split or a merge
ends it. The ground truth's own ERL (every skeleton one segment) is ``sum_s L_s^2 / L``; NERL is
their ratio. One deviation from funlib: background (segment 0) is never a merging segment
(funlib counts two skeletons with unsegmented nodes as merged by segment 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ffnops.errors import FfnopsError
from ffnops.evaluation.skeletons import Skeletons


@dataclass(frozen=True)
class SkeletonRun:
    """One skeleton's share of the ERL (lengths in nm)."""

    object_id: int
    length_nm: float
    run_length_nm: float  # its expected run: sum_k c_k^2 / L_s (0 when merged)
    merged: bool
    split_edges: int
    omitted_nm: float


@dataclass(frozen=True)
class RunLengths:
    erl_nm: float
    groundtruth_erl_nm: float
    skeletons: tuple[SkeletonRun, ...]
    merging_segments: dict[int, tuple[int, ...]]  # segment -> the skeletons it merges

    @property
    def nerl(self) -> float:
        return self.erl_nm / self.groundtruth_erl_nm if self.groundtruth_erl_nm > 0 else 0.0


def node_segments(
    skeletons: Skeletons,
    segmentation: npt.NDArray[np.integer],
    voxel_size: Sequence[float],
    origin_voxels: Sequence[int],
    name: str = "segmentation",
) -> npt.NDArray[np.int64]:
    """The segment at each node's voxel; ``segmentation[0, 0, 0]`` is voxel ``origin_voxels``
    of the volume. A node outside the array is an error naming it."""
    size = np.asarray(voxel_size, np.float64)
    voxel = np.floor(skeletons.positions / size + 0.5).astype(np.int64) - np.asarray(origin_voxels)
    shape = np.asarray(segmentation.shape)
    outside = ((voxel < 0) | (voxel >= shape)).any(axis=1)
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        end = np.asarray(origin_voxels) + shape
        where = skeletons.positions[first].round(1).tolist()
        raise FfnopsError(
            f"{int(outside.sum())} of {len(voxel)} skeleton nodes lie outside the {name} "
            f"(voxels {list(map(int, origin_voxels))} to {end.tolist()}): the first, of object "
            f"{int(skeletons.objects[first])}, at {where} nm "
            f"(z, y, x), voxel size {size.tolist()} nm"
        )
    found: npt.NDArray[np.int64] = segmentation[tuple(voxel.T)].astype(np.int64)
    return found


def expected_run_length(skeletons: Skeletons, segments: npt.NDArray[np.int64]) -> RunLengths:
    """ERL of the segmentation that gives node ``i`` the segment ``segments[i]``."""
    if len(skeletons.edges) == 0:
        raise FfnopsError("the skeletons have no edges: no length to score")
    pairs = np.unique(np.stack([segments, skeletons.objects], axis=1), axis=0)
    pairs = pairs[pairs[:, 0] > 0]
    found, count = np.unique(pairs[:, 0], return_counts=True)
    merging = found[count > 1]
    in_merging = np.isin(pairs[:, 0], merging)
    merged = set(pairs[in_merging, 1].tolist())
    merging_segments = {
        int(k): tuple(int(s) for s in pairs[pairs[:, 0] == k, 1]) for k in merging.tolist()
    }
    lengths = skeletons.edge_lengths
    u, v = skeletons.edges[:, 0], skeletons.edges[:, 1]
    owner = skeletons.objects[u]
    su, sv = segments[u], segments[v]
    omitted = (su == 0) | (sv == 0)
    correct = ~omitted & (su == sv)
    split = ~omitted & (su != sv)
    runs = []
    total = sum(skeletons.lengths().values())
    erl = 0.0
    for object_id, length in skeletons.lengths().items():
        mine = owner == object_id
        is_merged = object_id in merged
        run = 0.0
        if not is_merged and length > 0:
            keep = mine & correct
            _, where = np.unique(su[keep], return_inverse=True)
            per_segment = np.bincount(where, weights=lengths[keep])
            run = float((per_segment**2).sum() / length)
        erl += length / total * run if total > 0 else 0.0
        runs.append(
            SkeletonRun(
                object_id,
                length,
                run,
                is_merged,
                int((mine & split).sum()),
                float(lengths[mine & omitted].sum()),
            )
        )
    own = sum(r.length_nm**2 for r in runs) / total if total > 0 else 0.0
    return RunLengths(erl, own, tuple(runs), merging_segments)
