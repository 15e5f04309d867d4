"""One set of object ids from blocks segmented apart (docs/inference.md, "Stitching").

Each block's canvas labels its read box with its own ids (*fragments*, keyed
``block << 32 | local id``). Where the read boxes of two blocks overlap, both label the same
voxels; a fragment of one is linked to a fragment of the other when they share at least
``min_voxels`` voxels there and those are more than ``min_fraction`` of the smaller one's voxels
in that overlap (``fraction_of="smaller"``), or of each of the two (``"each"``: both blocks
see mostly the same piece, so a fragment one block split off is never joined into another
block's larger one). Linked fragments are one object (union-find: connected components of the link
graph, as Google's FFN paper merged its overlapping subvolumes); objects are numbered from 1 in
the order of their first fragment, so the same blocks always give the same ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

LOCAL_BITS = 32


def fragment_keys(block: int, local_ids: npt.NDArray[np.integer]) -> npt.NDArray[np.uint64]:
    """Global fragment keys of a block's local ids (0 stays 0: background)."""
    ids = np.asarray(local_ids).astype(np.uint64)
    keys = (np.uint64(block) << np.uint64(LOCAL_BITS)) | ids
    return np.where(ids > 0, keys, np.uint64(0))


@dataclass(frozen=True)
class Overlaps:
    """Co-occurrence of two blocks' fragments in their shared voxels: pair ``i`` of fragments
    ``a[i]``, ``b[i]`` shares ``shared[i]`` voxels; ``size_a[i]``/``size_b[i]`` are each one's
    voxels in the shared region."""

    a: npt.NDArray[np.uint64]
    b: npt.NDArray[np.uint64]
    shared: npt.NDArray[np.int64]
    size_a: npt.NDArray[np.int64]
    size_b: npt.NDArray[np.int64]


def count_overlaps(labels_a: npt.NDArray[np.uint64], labels_b: npt.NDArray[np.uint64]) -> Overlaps:
    """Counts fragment pairs over two label arrays of the same region (fragment keys, 0 = none)."""
    a, b = labels_a.ravel(), labels_b.ravel()
    ids_a, sizes_a = np.unique(a[a > 0], return_counts=True)
    ids_b, sizes_b = np.unique(b[b > 0], return_counts=True)
    both = (a > 0) & (b > 0)
    pairs = np.stack([a[both], b[both]], axis=1)
    if len(pairs) == 0:
        empty_u, empty_i = np.zeros(0, np.uint64), np.zeros(0, np.int64)
        return Overlaps(empty_u, empty_u, empty_i, empty_i, empty_i)
    unique, shared = np.unique(pairs, axis=0, return_counts=True)
    pa, pb = unique[:, 0], unique[:, 1]
    return Overlaps(
        pa,
        pb,
        shared.astype(np.int64),
        sizes_a[np.searchsorted(ids_a, pa)].astype(np.int64),
        sizes_b[np.searchsorted(ids_b, pb)].astype(np.int64),
    )


FRACTION_OF = ("smaller", "each")


def links(
    overlaps: Overlaps, min_voxels: int, min_fraction: float, fraction_of: str = "smaller"
) -> npt.NDArray[np.uint64]:
    """The linked pairs (n, 2) under the rule of this module's docstring; ``fraction_of="each"``
    asks the shared voxels to be more than ``min_fraction`` of *both* fragments there."""
    if fraction_of not in FRACTION_OF:
        raise ValueError(f"fraction_of must be one of {FRACTION_OF}, got {fraction_of!r}")
    pick = np.minimum if fraction_of == "smaller" else np.maximum
    size = pick(overlaps.size_a, overlaps.size_b)
    keep = (overlaps.shared >= min_voxels) & (overlaps.shared > min_fraction * size)
    return np.stack([overlaps.a[keep], overlaps.b[keep]], axis=1)


def global_ids(
    fragments: npt.NDArray[np.uint64], linked: Sequence[npt.NDArray[np.uint64]]
) -> npt.NDArray[np.uint64]:
    """The object id (from 1) of each fragment in sorted ``fragments``, joining linked pairs."""
    keys = np.unique(np.asarray(fragments, np.uint64))
    if len(keys) == 0:
        return np.zeros(0, np.uint64)
    pairs = np.concatenate(
        [np.asarray(p, np.uint64).reshape(-1, 2) for p in linked] or [np.zeros((0, 2), np.uint64)]
    )
    rows, cols = np.searchsorted(keys, pairs[:, 0]), np.searchsorted(keys, pairs[:, 1])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(keys), len(keys)))
    _, component = connected_components(graph, directed=False)
    # Number components by their first fragment (keys are sorted, so by first occurrence).
    _, first = np.unique(component, return_index=True)
    order = np.empty(len(first), np.uint64)
    order[np.argsort(first)] = np.arange(1, len(first) + 1, dtype=np.uint64)
    ids: npt.NDArray[np.uint64] = order[component]
    return ids
