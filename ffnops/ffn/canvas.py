"""The inference canvas (``ffn/inference/inference.py``): flood one object at a time from each seed.

State, all (z, y, x): ``seed`` (float32 object logits, NaN = never visited), ``segmentation``
(int32: 0 free, > 0 object ids, -1 rejected seed, ``EXISTING`` + n an object segmented
elsewhere, :meth:`Canvas.add_existing`), the normalised ``image``.

The work is written as generators that *yield* network inputs ``(2, f, f, f)`` (image, seed
logits) and receive the new logits ``(f, f, f)`` back, so a driver can batch the forward passes of
several independent canvases into one network call (:func:`run_canvases`) or run one canvas
alone (:func:`run_canvas`). Nothing here does I/O.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import edt
import numpy as np
import numpy.typing as npt
from scipy import ndimage

from ffnops.ffn.geometry import Vec3, as_vec3
from ffnops.ffn.logit import logit
from ffnops.ffn.movement import FaceMaxPolicy
from ffnops.ffn.options import InferenceOptions

ORIGIN_DTYPE = np.dtype(
    [
        ("id", "<u4"),
        ("z", "<i4"),
        ("y", "<i4"),
        ("x", "<i4"),
        ("iters", "<i4"),
        ("walltime_s", "<f4"),
    ]
)

# Ids from here up are objects segmented before this canvas (a finished neighbouring block's):
# they hold their voxels as any earlier object does, and are not this canvas's output.
EXISTING = 1 << 30

# A step: yields a network input (2, f, f, f), receives logits (f, f, f).
Steps = Generator[npt.NDArray[np.float32], npt.NDArray[np.float32], None]
Predict = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]


@dataclass
class Origin:
    """Where an accepted object was seeded (z, y, x in the canvas), its steps and seconds."""

    start: Vec3
    iters: int
    walltime_s: float


@dataclass
class Counters:
    """What a run did, as Google's counters."""

    network_calls: int = 0
    segment_at_calls: int = 0
    seeds_tried: int = 0
    objects: int = 0
    rejected_near_object: int = 0
    rejected_weak_seed: int = 0
    rejected_too_small: int = 0
    voxels_segmented: int = 0
    objects_continued: int = 0  # accepted objects that continue an existing one (add_existing)

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass
class Canvas:
    """Segments ``image`` (normalised float32) with a network of ``fov_size`` and ``deltas``."""

    image: npt.NDArray[np.float32]
    fov_size: Vec3
    deltas: Vec3
    options: InferenceOptions
    mask: npt.NDArray[np.bool_] | None = None  # True = never a FOV centre or a seed
    keep_probabilities: bool = True
    seed: npt.NDArray[np.float32] = field(init=False)
    segmentation: npt.NDArray[np.int32] = field(init=False)
    origins: dict[int, Origin] = field(default_factory=dict)
    overlaps: dict[int, tuple[list[int], list[int]]] = field(default_factory=dict)
    # Accepted object -> the existing object (its number from 1, add_existing) it continues.
    continued: dict[int, int] = field(default_factory=dict)
    # Accepted object -> {existing object: (voxels of it the flood covered, its voxels in the
    # flood's box)}: the flood said "this is me" there, but the existing object kept them.
    covers: dict[int, dict[int, tuple[int, int]]] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)

    def __post_init__(self) -> None:
        self.fov_size = as_vec3(self.fov_size, "fov_size")
        self.deltas = as_vec3(self.deltas, "deltas")
        if any(f > n for f, n in zip(self.fov_size, self.image.shape, strict=True)):
            raise ValueError(
                f"FOV {self.fov_size} is larger than the image box {self.image.shape} (z, y, x)"
            )
        self.image = np.ascontiguousarray(self.image, dtype=np.float32)
        self.seed = np.full(self.image.shape, np.nan, dtype=np.float32)
        self.segmentation = np.zeros(self.image.shape, dtype=np.int32)
        # Object probability of each accepted voxel when it was accepted (NaN elsewhere), for
        # Google's .prob output and for re-thresholding later.
        self.probabilities = (
            np.full(self.image.shape, np.nan, dtype=np.float32) if self.keep_probabilities else None
        )
        self.margin = np.asarray(self.fov_size) // 2
        o = self.options
        self.init_logit = logit(o.init_activation)
        self.pad_logit = logit(o.pad_value)
        self.move_logit = logit(o.move_threshold)
        self.segment_logit = logit(o.segment_threshold)
        self._max_id = 0
        self.seeds_done = 0

    # ---- one FOV ------------------------------------------------------------------------------

    @property
    def fov_radius(self) -> Vec3:
        """How far a FOV centre must stay from the faces (z, y, x)."""
        return as_vec3([f // 2 for f in self.fov_size])

    def fov_box(self, pos: Sequence[int]) -> tuple[slice, slice, slice]:
        return tuple(  # type: ignore[return-value]
            slice(p - m, p + m + 1) for p, m in zip(pos, self.margin, strict=True)
        )

    def is_valid_pos(self, pos: Sequence[int], ignore_move_threshold: bool = False) -> bool:
        """The FOV fits, the voxel is not someone else's, and (moves only) it is confident."""
        z, y, x = pos
        if not ignore_move_threshold and not self.seed[z, y, x] >= self.move_logit:
            return False  # (NaN compares False: unvisited voxels are not confident)
        if any(
            p < m or p + m >= n for p, m, n in zip(pos, self.margin, self.seed.shape, strict=True)
        ):
            return False
        if self.mask is not None and self.mask[z, y, x]:
            return False
        return bool(self.segmentation[z, y, x] <= 0)

    def update_at(
        self, pos: Sequence[int]
    ) -> Generator[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """One FFN step at ``pos``: yields the network input, writes the returned logits."""
        box = self.fov_box(pos)
        old = self.seed[box]
        seed_in = np.where(np.isnan(old), np.float32(self.pad_logit), old)
        logits = yield np.stack([self.image[box], seed_in])
        logits = np.asarray(logits, dtype=np.float32).reshape(old.shape)
        self.counters.network_calls += 1
        disco = self.options.disco_seed_threshold
        if disco >= 0 and (logits >= self.move_logit).mean() > disco:
            # Disconnected-voxel freezing: a voxel once predicted "out" may not be raised again.
            with np.errstate(invalid="ignore"):
                frozen = (old < 0.0) & (logits > old)
            logits = np.where(frozen, old, logits)
        self.seed[box] = logits
        return logits

    # ---- one object ---------------------------------------------------------------------------

    def segment_at(
        self, start: Vec3, known: npt.NDArray[np.bool_] | None = None
    ) -> Generator[npt.NDArray[np.float32], npt.NDArray[np.float32], tuple[int, Vec3, Vec3]]:
        """Floods one object from ``start``; returns (steps, min corner, max corner) visited.
        ``known``: voxels already known to be the object, which start at the seed's logit."""
        self.counters.segment_at_calls += 1
        self.seed[...] = np.nan
        if known is not None:
            self.seed[known] = self.init_logit
        self.seed[start] = self.init_logit
        policy = FaceMaxPolicy(start, self.deltas, self.move_logit)
        lo, hi = np.asarray(start), np.asarray(start)
        iters = 0
        for pos in policy.positions(self.is_valid_pos):
            if not self.seed[start] >= self.move_logit:
                break  # the seed itself lost confidence: stop this object
            logits = yield from self.update_at(pos)
            lo, hi = np.minimum(lo, pos), np.maximum(hi, pos)
            iters += 1
            policy.update(logits, pos)
        return iters, as_vec3(lo.tolist()), as_vec3(hi.tolist())

    # ---- all objects --------------------------------------------------------------------------

    def _reject(self, pos: Vec3) -> None:
        if self.segmentation[pos] == 0:
            self.segmentation[pos] = -1

    def _next_id(self) -> int:
        self._max_id += 1
        while self._max_id in self.origins:
            self._max_id += 1
        return self._max_id

    def try_seed(self, pos: Vec3) -> Steps:
        """Seeds one object at ``pos`` and accepts or rejects it (as Google's ``segment_all``)."""
        if not self.is_valid_pos(pos, ignore_move_threshold=True):
            return
        self.counters.seeds_tried += 1
        mbd = np.asarray(self.options.min_boundary_dist)
        near = tuple(slice(max(p - d, 0), p + d + 1) for p, d in zip(pos, mbd, strict=True))
        if (self.segmentation[near] > 0).any():
            self.segmentation[pos] = -1
            self.counters.rejected_near_object += 1
            return
        started = time.perf_counter()
        iters, lo, hi = yield from self.segment_at(pos)
        self._accept(pos, iters, lo, hi, started)

    def _accept(self, pos: Vec3, iters: int, lo: Vec3, hi: Vec3, started: float) -> int | None:
        """Accepts the object flooded from ``pos`` (its new id) or rejects it (None)."""
        if iters <= 0:
            return None
        if not self.seed[pos] >= self.move_logit:
            self._reject(pos)
            self.counters.rejected_weak_seed += 1
            return None
        box = tuple(
            slice(max(a - m, 0), b + m + 1) for a, b, m in zip(lo, hi, self.margin, strict=True)
        )
        with np.errstate(invalid="ignore"):
            mask = self.seed[box] >= self.segment_logit
        region = self.segmentation[box]
        touched = region[mask & (region > 0)]
        mask &= region <= 0  # existing objects keep their voxels
        if int(mask.sum()) < self.options.min_segment_size:
            self._reject(pos)
            self.counters.rejected_too_small += 1
            return None
        new_id = self._next_id()
        region[mask] = new_id
        if self.probabilities is not None:
            self.probabilities[box][mask] = 1.0 / (1.0 + np.exp(-self.seed[box][mask]))
        if touched.size:
            ids, counts = np.unique(touched, return_counts=True)
            self.overlaps[new_id] = (ids.tolist(), counts.tolist())
            if ids[-1] >= EXISTING:  # how much of each existing object the flood covered
                held, sizes = np.unique(region[region >= EXISTING], return_counts=True)
                self.covers[new_id] = {
                    int(i) - EXISTING + 1: (int(n), int(sizes[np.searchsorted(held, i)]))
                    for i, n in zip(ids, counts, strict=True)
                    if i >= EXISTING
                }
        self.origins[new_id] = Origin(pos, iters, time.perf_counter() - started)
        self.counters.objects += 1
        self.counters.voxels_segmented += int(mask.sum())
        return new_id

    # ---- objects segmented elsewhere ------------------------------------------------------------

    def add_existing(self, labels: npt.NDArray[np.integer]) -> None:
        """Marks the objects of ``labels`` (over the canvas, 0 none, else their number n from 1)
        as segmented before this canvas: they hold their voxels as Google's earlier objects do
        (no seed, FOV move or later object takes them) until :meth:`continue_existing` goes on
        with them. They are not this canvas's output (:meth:`final_segmentation` clears them)."""
        if labels.shape != self.segmentation.shape:
            raise ValueError(
                f"existing labels of shape {labels.shape}, not {self.segmentation.shape}"
            )
        where = (labels > 0) & (self.segmentation == 0)
        self.segmentation[where] = EXISTING - 1 + labels[where].astype(np.int64)

    def continue_existing(self, within: tuple[slice, slice, slice], min_voxels: int) -> Steps:
        """Floods on from every existing object (:meth:`add_existing`) that has at least
        ``min_voxels`` connected voxels inside ``within``: the flood starts with the object's
        voxels as known (at the seed's logit) and its seed at the voxel of that piece farthest
        from its surface (where its FOV fits), so it goes on from where the other canvas
        stopped, as one canvas's flood would have crossed on. Objects in the order of their
        numbers, larger pieces first; an accepted flood is a new object of this canvas that
        continues the existing one (``continued``), and the voxels of the existing object it
        did not claim stay the existing object's."""
        region = self.segmentation[within]
        numbers = np.unique(region[region >= EXISTING])
        offset = [s.start or 0 for s in within]
        for existing in numbers.tolist():
            pieces, count = ndimage.label(self.segmentation[within] == existing)
            sizes = np.bincount(pieces.ravel(), minlength=count + 1)[1:]
            boxes = ndimage.find_objects(pieces)
            for piece in (np.argsort(-sizes, kind="stable") + 1).tolist():
                box = boxes[piece - 1]
                assert box is not None
                corner = [o + b.start for o, b in zip(offset, box, strict=True)]
                canvas_box = tuple(
                    slice(c, c + b.stop - b.start) for c, b in zip(corner, box, strict=True)
                )
                # (what an earlier flood of this object claimed is no longer held)
                held = (pieces[box] == piece) & (self.segmentation[canvas_box] == existing)
                if int(held.sum()) < min_voxels:
                    continue
                start = self.deepest(held, corner)
                if start is not None:
                    yield from self._continue(existing, start)

    def deepest(self, piece: npt.NDArray[np.bool_], offset: Sequence[int]) -> Vec3 | None:
        """The voxel of ``piece`` (a box at ``offset`` of the canvas) farthest from its surface
        where a FOV fits and the mask allows a seed, in canvas voxels; None if there is none."""
        depth = edt.edt(np.pad(piece, 1), black_border=True)[1:-1, 1:-1, 1:-1]
        where = np.indices(piece.shape).reshape(3, -1).T + np.asarray(offset)
        fits = ((where >= self.margin) & (where < np.asarray(self.seed.shape) - self.margin)).all(1)
        depth = depth.ravel()
        depth[~fits] = 0
        if self.mask is not None:
            depth[self.mask[tuple(where.T)]] = 0
        best = int(np.argmax(depth))
        if depth[best] <= 0:
            return None
        return as_vec3(where[best].tolist())

    def _continue(self, existing: int, start: Vec3) -> Steps:
        started = time.perf_counter()
        held = self.segmentation == existing
        self.segmentation[held] = 0  # the flood may move over and claim the object's voxels
        iters, lo, hi = yield from self.segment_at(start, known=held)
        new_id = self._accept(start, iters, lo, hi, started)
        self.segmentation[held & (self.segmentation <= 0)] = existing  # the rest stays its
        if new_id is not None:
            self.continued[new_id] = existing - EXISTING + 1
            self.counters.objects_continued += 1

    def segment_all(
        self,
        seeds: Iterable[Vec3],
        start: int = 0,
        after_seed: Callable[[int], None] | None = None,
    ) -> Steps:
        """Tries every seed in order from index ``start``; ``after_seed(i)`` runs after seed i
        (where a caller checkpoints: objects depend only on the state between seeds)."""
        for index, pos in enumerate(seeds):
            if index < start:
                continue
            yield from self.try_seed(as_vec3(pos))
            self.seeds_done = index + 1
            if after_seed is not None:
                after_seed(index)

    # ---- checkpoints --------------------------------------------------------------------------

    def state(self) -> dict[str, npt.NDArray[Any]]:
        """Everything needed to continue after the last finished seed, as plain arrays."""
        origins = np.array(
            [(i, *o.start, o.iters, o.walltime_s) for i, o in sorted(self.origins.items())],
            dtype=ORIGIN_DTYPE,
        )
        state: dict[str, npt.NDArray[Any]] = {
            "segmentation": self.segmentation,
            "origins": origins,
            "overlaps": np.asarray(json.dumps({str(k): v for k, v in self.overlaps.items()})),
            "counters": np.asarray(json.dumps(self.counters.as_dict())),
            "seeds_done": np.asarray(self.seeds_done),
            "max_id": np.asarray(self._max_id),
        }
        if self.probabilities is not None:
            state["probabilities"] = self.probabilities
        return state

    def restore(self, state: Mapping[str, npt.NDArray[Any]]) -> int:
        """Loads :meth:`state`; returns the index of the next seed to try."""
        if state["segmentation"].shape != self.segmentation.shape:
            raise ValueError(
                f"checkpoint is for a box of shape {state['segmentation'].shape}, "
                f"not {self.segmentation.shape}"
            )
        self.segmentation[...] = state["segmentation"]
        if self.probabilities is not None and "probabilities" in state:
            self.probabilities[...] = state["probabilities"]
        self.origins = {
            int(o["id"]): Origin(
                (int(o["z"]), int(o["y"]), int(o["x"])), int(o["iters"]), float(o["walltime_s"])
            )
            for o in state["origins"]
        }
        self.overlaps = {
            int(k): (v[0], v[1]) for k, v in json.loads(str(state["overlaps"])).items()
        }
        self.counters = Counters(**json.loads(str(state["counters"])))
        self._max_id = int(state["max_id"])
        self.seeds_done = int(state["seeds_done"])
        return self.seeds_done

    def final_segmentation(self) -> npt.NDArray[np.int32]:
        """The labels with rejected-seed markers (-1) cleared to 0, as the reference saves them
        (and the voxels existing objects still hold, which are not this canvas's)."""
        keep = (self.segmentation > 0) & (self.segmentation < EXISTING)
        return np.where(keep, self.segmentation, 0).astype(np.int32)


def run_canvas(steps: Steps, predict: Predict) -> None:
    """Drives one canvas's steps, one network call per FOV."""
    run_canvases([steps], predict)


def run_canvases(all_steps: Sequence[Steps], predict: Predict, batch_size: int = 8) -> None:
    """Drives several independent canvases, batching their FOVs into network calls.

    ``predict`` maps inputs ``(B, 2, f, f, f)`` to logits ``(B, f, f, f)`` (or ``(B, 1, ...)``).
    """
    pending: list[tuple[Steps, npt.NDArray[np.float32]]] = []
    for steps in all_steps:
        with suppress(StopIteration):  # a canvas with nothing to do
            pending.append((steps, next(steps)))
    while pending:
        batch, pending = pending[:batch_size], pending[batch_size:]
        logits = predict(np.stack([request for _, request in batch]))
        for (steps, _), out in zip(batch, logits, strict=True):
            with suppress(StopIteration):  # that canvas is finished
                pending.append((steps, steps.send(out)))
