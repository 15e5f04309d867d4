"""Consensus of two segmentations of the same box (google/ffn ``ffn/inference/consensus.py``,
``segmentation.py``'s ``split_segmentation_by_intersection``; docs/agglomeration.md).

Two FFN runs (seeds in forward and reversed order, or two settings) make different mistakes;
where they disagree about a voxel's object, the consensus keeps the cut. Every pair of ids
``(a, b)`` that the two give the same voxels is one *piece*; a piece keeps ``a``'s id when ``b``
is the object of the second that overlaps ``a`` most, else it gets a new id (above every id of
the first). Pieces smaller than ``min_size`` voxels and voxels the first leaves at 0 become 0.

Rules (``rule``):

* ``split`` (google/ffn's CONSENSUS_SPLIT): a voxel the second leaves at 0 is a piece
  ``(a, 0)`` like any other, so the first's object keeps what only it segmented.
* ``agree``: voxels that either leaves at 0 become 0: only what both segmented stays.

Counts are summed over blocks, so the result is the same for any block size and the volumes
need never be in memory whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

RULES = ("split", "agree")


@dataclass(frozen=True)
class PairCounts:
    """Voxels per pair of ids: the first segmentation's ``a[i]`` and the second's ``b[i]``
    share ``count[i]`` voxels (pairs sorted by ``a``, then ``b``)."""

    a: npt.NDArray[np.uint64]
    b: npt.NDArray[np.uint64]
    count: npt.NDArray[np.int64]


def count_pairs(
    blocks: Iterable[tuple[npt.NDArray[np.integer], npt.NDArray[np.integer]]],
) -> PairCounts:
    """Sums the voxels of each ``(a, b)`` pair over blocks of the two segmentations."""
    found: list[npt.NDArray[np.uint64]] = []
    counts: list[npt.NDArray[np.int64]] = []
    for first, second in blocks:
        pairs = np.stack([first.ravel().astype(np.uint64), second.ravel().astype(np.uint64)], 1)
        unique, count = np.unique(pairs, axis=0, return_counts=True)
        found.append(unique)
        counts.append(count.astype(np.int64))
    if not found:
        empty = np.zeros(0, np.uint64)
        return PairCounts(empty, empty, np.zeros(0, np.int64))
    unique, inverse = np.unique(np.concatenate(found), axis=0, return_inverse=True)
    total = np.bincount(inverse.ravel(), weights=np.concatenate(counts), minlength=len(unique))
    return PairCounts(unique[:, 0], unique[:, 1], total.astype(np.int64))


@dataclass(frozen=True)
class ConsensusMap:
    """What each pair of :class:`PairCounts` becomes (``new[i]``, 0 dropped) and how many
    pieces were kept, kept under a new id, and dropped as too small."""

    pairs: PairCounts
    new: npt.NDArray[np.uint64]
    kept: int
    renumbered: int
    too_small: int

    def apply(
        self, first: npt.NDArray[np.integer], second: npt.NDArray[np.integer]
    ) -> npt.NDArray[np.uint64]:
        """The consensus of one block of the two segmentations (counted in ``pairs``)."""
        pairs = np.stack([first.ravel().astype(np.uint64), second.ravel().astype(np.uint64)], 1)
        unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
        # Rows of the sorted (a, b) table: a's run, then b within it.
        lo = np.searchsorted(self.pairs.a, unique[:, 0], side="left")
        hi = np.searchsorted(self.pairs.a, unique[:, 0], side="right")
        rows = np.array(
            [
                s + np.searchsorted(self.pairs.b[s:e], b)
                for s, e, b in zip(lo, hi, unique[:, 1], strict=True)
            ],
            dtype=np.int64,
        )
        found = (rows < hi) & (
            self.pairs.b[np.minimum(rows, len(self.pairs.b) - 1)] == unique[:, 1]
        )
        if not found.all():
            raise ValueError("a block holds an id pair that was not counted")
        out: npt.NDArray[np.uint64] = self.new[rows][inverse.ravel()].reshape(first.shape)
        return out


def consensus_map(pairs: PairCounts, rule: str = "split", min_size: int = 0) -> ConsensusMap:
    """Decides every piece under ``rule`` (this module's docstring)."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    a, b, count = pairs.a, pairs.b, pairs.count
    valid = a > 0
    if rule == "agree":
        valid &= b > 0
    # The second's object that overlaps each first's id most (among valid pieces; ties: the
    # lower id, as the reference keeps the first it meets).
    best = np.zeros(len(a), bool)
    order = np.lexsort((b, -count, a))  # by a, then most voxels, then b
    chosen = order[valid[order]]
    first_of_a = np.ones(len(chosen), bool)
    first_of_a[1:] = a[chosen][1:] != a[chosen][:-1]
    best[chosen[first_of_a]] = True
    large = count >= min_size
    new = np.zeros(len(a), np.uint64)
    keep = valid & large & best
    new[keep] = a[keep]
    fresh = valid & large & ~best
    start = np.uint64(a.max()) + np.uint64(1) if len(a) else np.uint64(1)
    new[fresh] = start + np.arange(int(fresh.sum()), dtype=np.uint64)
    return ConsensusMap(pairs, new, int(keep.sum()), int(fresh.sum()), int((valid & ~large).sum()))
