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

Two blocks can *dispute* a boundary: in the shared voxels one block draws a boundary between two
of its fragments where the other's one fragment covers both sides. Linking that fragment to
both would join what one block separates; linking it to one would split what the other joins.
With ``disputes="owner"`` the block whose write box holds the disputed boundary decides (the
voxels it owns are the ones it publishes, and there its canvas saw the most context): where the
separating block owns more of the boundary, the joining fragment keeps only its strongest link
(by shared voxels) among the separated ones; where the joining block owns more, every link
stays. ``disputes="join"`` keeps every link (the rule before disputes were looked at).
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
DISPUTES = ("owner", "join")


def link_candidates(
    overlaps: Overlaps, min_voxels: int, min_fraction: float, fraction_of: str = "smaller"
) -> npt.NDArray[np.bool_]:
    """Which pairs of ``overlaps`` the voxel rule of this module's docstring links;
    ``fraction_of="each"`` asks the shared voxels to be more than ``min_fraction`` of *both*
    fragments there."""
    if fraction_of not in FRACTION_OF:
        raise ValueError(f"fraction_of must be one of {FRACTION_OF}, got {fraction_of!r}")
    pick = np.minimum if fraction_of == "smaller" else np.maximum
    size = pick(overlaps.size_a, overlaps.size_b)
    chosen: npt.NDArray[np.bool_] = (overlaps.shared >= min_voxels) & (
        overlaps.shared > min_fraction * size
    )
    return chosen


def links(
    overlaps: Overlaps, min_voxels: int, min_fraction: float, fraction_of: str = "smaller"
) -> npt.NDArray[np.uint64]:
    """The linked pairs (n, 2) under the voxel rule (:func:`link_candidates`), disputes aside."""
    keep = link_candidates(overlaps, min_voxels, min_fraction, fraction_of)
    return np.stack([overlaps.a[keep], overlaps.b[keep]], axis=1)


@dataclass(frozen=True)
class PairLinks:
    """What matching two blocks found: the linked pairs (n, 2) and how many candidate links a
    disputed boundary dropped."""

    pairs: npt.NDArray[np.uint64]
    dropped: int


def link_blocks(
    labels_a: npt.NDArray[np.uint64],
    labels_b: npt.NDArray[np.uint64],
    owner: npt.NDArray[np.int8],
    min_voxels: int,
    min_fraction: float,
    fraction_of: str = "smaller",
    disputes: str = "owner",
) -> PairLinks:
    """Links two blocks' fragments over their shared region (fragment keys, 0 = none; ``owner``
    as in :func:`disputed_boundaries`) under the whole rule of this module's docstring."""
    if disputes not in DISPUTES:
        raise ValueError(f"disputes must be one of {DISPUTES}, got {disputes!r}")
    overlaps = count_overlaps(labels_a, labels_b)
    chosen = link_candidates(overlaps, min_voxels, min_fraction, fraction_of)
    keep = chosen
    if disputes == "owner" and chosen.sum() > 1:
        keep = undisputed_links(overlaps, chosen, disputed_boundaries(labels_a, labels_b, owner))
    pairs = np.stack([overlaps.a[keep], overlaps.b[keep]], axis=1)
    return PairLinks(pairs, int(chosen.sum() - keep.sum()))


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


def disputed_boundaries(
    labels_a: npt.NDArray[np.uint64],
    labels_b: npt.NDArray[np.uint64],
    owner: npt.NDArray[np.int8],
) -> npt.NDArray[np.uint64]:
    """The boundaries the separating block owns, over one shared region: rows
    ``(joiner, first, second)``: ``joiner`` (a fragment of one block) covers both sides of a
    boundary between ``first < second`` (fragments of the other), and most of that boundary's
    faces lie in the separating block's write box. ``owner`` marks each voxel's write box:
    1 block A's, 2 block B's, 0 a third block's. A boundary face between two 6-neighbours
    counts for the write box of its first voxel."""
    rows, votes = [], []
    for axis in range(labels_a.ndim):
        head = tuple(slice(0, -1) if d == axis else slice(None) for d in range(labels_a.ndim))
        tail = tuple(slice(1, None) if d == axis else slice(None) for d in range(labels_a.ndim))
        ap, aq, bp, bq, own = (
            labels_a[head],
            labels_a[tail],
            labels_b[head],
            labels_b[tail],
            owner[head],
        )
        for jp, jq, sp, sq, separating in ((ap, aq, bp, bq, 2), (bp, bq, ap, aq, 1)):
            face = (sp != sq) & (sp > 0) & (sq > 0) & (jp == jq) & (jp > 0)
            if not face.any():
                continue
            first, second = np.minimum(sp[face], sq[face]), np.maximum(sp[face], sq[face])
            rows.append(np.stack([jp[face], first, second], axis=1))
            where = own[face]
            joining = 3 - separating
            votes.append((where == separating).astype(np.int64) - (where == joining))
    if not rows:
        return np.zeros((0, 3), np.uint64)
    triples, inverse = np.unique(np.concatenate(rows), axis=0, return_inverse=True)
    score = np.bincount(inverse.ravel(), weights=np.concatenate(votes), minlength=len(triples))
    disputed: npt.NDArray[np.uint64] = triples[score > 0].astype(np.uint64)
    return disputed


def undisputed_links(
    overlaps: Overlaps, candidates: npt.NDArray[np.bool_], disputed: npt.NDArray[np.uint64]
) -> npt.NDArray[np.bool_]:
    """Of the candidate pairs of ``overlaps``, those kept when each disputed boundary is decided
    by its owner: pairs are taken by shared voxels, most first (ties by keys), and a pair is
    dropped when one of its fragments already keeps a link to a fragment that the other block
    separates from this pair's fragment in its own write box."""
    keep = np.zeros(len(overlaps.a), bool)
    forbidden = {(int(j), int(f), int(s)) for j, f, s in disputed}
    if not forbidden:
        keep[candidates] = True
        return keep
    kept: dict[int, list[int]] = {}
    order = np.lexsort((overlaps.b, overlaps.a, -overlaps.shared))
    for i in order[candidates[order]].tolist():
        a, b = int(overlaps.a[i]), int(overlaps.b[i])
        if any(
            (joiner, min(mine, theirs), max(mine, theirs)) in forbidden
            for joiner, mine in ((a, b), (b, a))
            for theirs in kept.get(joiner, [])
        ):
            continue
        keep[i] = True
        kept.setdefault(a, []).append(b)
        kept.setdefault(b, []).append(a)
    return keep
