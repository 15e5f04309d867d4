"""Blockwise inference with one set of global object ids (docs/inference.md, "Blockwise").

Three tasks run on an executor, each a function of a batch of blocks:

1. **segment**: a block's canvas floods its read box from the seeds inside its write box and
   saves its labels (block-local ids), seeds and counters to ``blocks/<index>.npz``, published
   by rename when complete, so a file that exists is a finished block (that is the done check:
   a killed job skips finished blocks and redoes the rest).
2. **match**: for each pair of blocks whose read boxes overlap, the fragments both label there
   are counted and linked by :mod:`ffnops.ffn.stitching`'s rule (``links/<index>.npz``).
3. between the two, this process numbers the objects (connected components of the links) and
   writes ``global_ids.npz`` and ``objects.csv`` (every fragment's global id, block and seed);
4. **relabel**: each block writes its write box, in global uint64 ids, into the output, which
   every worker opens through the writer plugins (a chunked format: zarr, N5, precomputed);
   voxels its own canvas left unlabelled take a neighbour's label there.

With ``executor.continue_objects`` the segment task runs in up to 8 *waves* (a 2 x 2 x 2
colouring of the grid, so no two blocks of a wave are neighbours): a block's canvas starts with
the objects its finished neighbours (earlier waves) labelled in its read box, as existing
objects, and floods on from each that reaches into its write box (``Canvas.continue_existing``)
before it tries its own seeds, as one canvas would have; such a continuation is linked to the
object it continues, whatever the overlap rule says.

A worker's memory is that of one batch of blocks (its read boxes), never of the volume.
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ffnops.atomic import remove_path, write_npz, write_text
from ffnops.blocks import Block, BlockLayout
from ffnops.errors import FfnopsError
from ffnops.executor import BlockTask, Executor, OnProgress, TaskProgress
from ffnops.ffn.canvas import ORIGIN_DTYPE, Canvas, Counters, Steps, run_canvases
from ffnops.ffn.geometry import Vec3
from ffnops.ffn.stitching import DISPUTES, FRACTION_OF, fragment_keys, global_ids, link_blocks
from ffnops.inference.request import BoxRequest
from ffnops.inference.runner import (
    BoxImage,
    make_canvas,
    place_seeds,
    read_image,
    unmirrored,
    worker_predictor,
)
from ffnops.volume import BBox
from ffnops.volumes import open_volume

PHASES = ("segment", "match", "relabel")


@dataclass(frozen=True)
class StitchRule:
    """When two blocks' fragments are one object (:mod:`ffnops.ffn.stitching`)."""

    min_voxels: int = 100
    min_fraction: float = 0.5
    fraction_of: str = "smaller"  # "smaller" | "each" (ffnops.ffn.stitching.link_candidates)
    disputes: str = "owner"  # "owner" | "join" (ffnops.ffn.stitching, disputed boundaries)

    def __post_init__(self) -> None:
        if self.min_voxels < 1:
            raise FfnopsError(
                f"executor.stitch_min_voxels must be at least 1, got {self.min_voxels}"
            )
        if not 0.0 <= self.min_fraction < 1.0:
            raise FfnopsError(
                f"executor.stitch_min_fraction must be in [0, 1), got {self.min_fraction}"
            )
        if self.fraction_of not in FRACTION_OF:
            raise FfnopsError(
                f"executor.stitch_fraction_of must be one of {', '.join(FRACTION_OF)}, "
                f"got {self.fraction_of!r}"
            )
        if self.disputes not in DISPUTES:
            raise FfnopsError(
                f"executor.stitch_disputes must be one of {', '.join(DISPUTES)}, "
                f"got {self.disputes!r}"
            )


@dataclass(frozen=True)
class BlockwiseJob:
    """Everything a worker needs for any block of the job (it travels to worker processes)."""

    request: BoxRequest
    layout: BlockLayout
    workdir: Path
    stitch: StitchRule = StitchRule()
    continue_objects: bool = False  # blocks in waves, continuing their neighbours' objects
    seed_context: bool = False  # seeds in the whole read box, not only in the write box

    def fragments_file(self, block: Block) -> Path:
        return self.workdir / "blocks" / f"{block.index}.npz"

    def links_file(self, block: Block) -> Path:
        return self.workdir / "links" / f"{block.index}.npz"

    @property
    def ids_file(self) -> Path:
        return self.workdir / "global_ids.npz"

    @property
    def objects_file(self) -> Path:
        return self.workdir / "objects.csv"


@dataclass
class BlockwiseSummary:
    """What the job did: objects, fragments, links and dropped links, Google's counters summed
    over blocks, seconds per phase (this run), and the largest peak RSS of a worker (MB)."""

    objects: int
    fragments: int
    links: int
    dropped_links: int  # candidate links a disputed boundary dropped (ffnops.ffn.stitching)
    counters: dict[str, float]
    seconds: dict[str, float] = field(default_factory=dict)
    block_seconds: float = 0.0  # canvas seconds summed over blocks (all runs)
    peak_rss_mb: float = 0.0


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


# ---- segment ------------------------------------------------------------------------------------


WAVES = 8


def wave(layout: BlockLayout, block: Block) -> int:
    """The block's wave (0-7) under ``executor.continue_objects``: its grid cell's parities, so
    two blocks of one wave are never neighbours (twice the context is at most a block)."""
    z, y, x = layout.cell(block.index)
    return (z % 2) * 4 + (y % 2) * 2 + x % 2


def segment_blocks(job: BlockwiseJob, blocks: Sequence[Block]) -> None:
    """Floods each block's canvas; the canvases of one batch share every network call."""
    request = job.request
    canvases: list[tuple[Block, BoxImage, Canvas, npt.NDArray[np.uint64]]] = []
    steps = []
    for block in blocks:
        box_image = read_image(request, block.read)
        canvas = make_canvas(request, box_image, keep_probabilities=False)
        seeds = place_seeds(
            request,
            canvas,
            box_image,
            within=(block.read if job.seed_context else block.write).shifted(block.read.start),
            origin=block.read.shifted(request.box.start).start,
        )
        roots = np.zeros(0, np.uint64)
        if job.continue_objects:
            roots = _add_neighbours(job, block, box_image, canvas)
            within = block.write.shifted(block.read.start).shifted([-b for b in box_image.before])
            steps.append(_continue_then_seed(canvas, within.slices, job.stitch.min_voxels, seeds))
        else:
            steps.append(canvas.segment_all(seeds))
        canvases.append((block, box_image, canvas, roots))
    started = time.perf_counter()
    run_canvases(steps, worker_predictor(job.request), batch_size=max(len(blocks), 1))
    seconds = time.perf_counter() - started
    for block, box_image, canvas, roots in canvases:
        labels = box_image.crop(canvas.final_segmentation())
        kept = set(canvas.origins)
        if job.seed_context:  # an object seeded in the context that never reached the write box
            labels, kept = _in_write_box(labels, block)  # is the neighbour's, not this block's
        origins = np.array(
            [
                (i, *unmirrored(o.start, box_image), o.iters, o.walltime_s)
                for i, o in sorted(canvas.origins.items())
                if i in kept
            ],
            dtype=ORIGIN_DTYPE,
        )
        continued = np.array(
            [(i, roots[n - 1]) for i, n in sorted(canvas.continued.items()) if i in kept],
            np.uint64,
        ).reshape(-1, 2)
        covers = np.array(
            [
                (i, roots[n - 1], covered, held)
                for i, found in sorted(canvas.covers.items())
                if i in kept
                for n, (covered, held) in sorted(found.items())
            ],
            np.uint64,
        ).reshape(-1, 4)
        write_npz(
            job.fragments_file(block),
            labels=labels.astype(np.uint32),
            origins=origins,
            continued=continued,
            covers=covers,
            counters=np.asarray(json.dumps(canvas.counters.as_dict())),
            boxes=np.asarray(json.dumps([str(block.read), str(block.write)])),
            seconds=np.asarray(seconds / len(blocks)),
            peak_rss_mb=np.asarray(peak_rss_mb()),
        )


def _in_write_box(
    labels: npt.NDArray[np.integer], block: Block
) -> tuple[npt.NDArray[np.integer], set[int]]:
    """``labels`` (over the read box) with only the objects that have voxels in the write box,
    and their ids."""
    inside = np.unique(labels[block.write.shifted(block.read.start).slices])
    kept = {int(i) for i in inside if i > 0}
    return np.where(np.isin(labels, inside), labels, 0), kept


def _continue_then_seed(
    canvas: Canvas, within: tuple[slice, slice, slice], min_voxels: int, seeds: list[Vec3]
) -> Steps:
    yield from canvas.continue_existing(within, min_voxels)
    yield from canvas.segment_all(seeds)


def roots(job: BlockwiseJob, block: Block) -> dict[int, int]:
    """A segmented block's fragments that continue an earlier block's object: local id -> the
    key of that object's first fragment (its root)."""
    with np.load(job.fragments_file(block), allow_pickle=False) as data:
        pairs = np.asarray(data["continued"]) if "continued" in data else np.zeros((0, 2))
    return {int(a): int(b) for a, b in pairs}


def continuation_links(job: BlockwiseJob, block: Block) -> npt.NDArray[np.uint64]:
    """The links a block's canvas made with its neighbours' objects (``continue_objects``):
    each continuation with the object it continues, and any of its objects with an existing one
    whose voxels its flood covered (at least ``stitch_min_voxels``, and more than
    ``stitch_min_fraction`` of that object's voxels in the flood's box): the flood said they are
    one, where the existing object kept its voxels."""
    with np.load(job.fragments_file(block), allow_pickle=False) as data:
        if "continued" not in data:
            return np.zeros((0, 2), np.uint64)
        continued = np.asarray(data["continued"], np.uint64)
        covers = np.asarray(data["covers"], np.uint64).astype(np.int64)
    rule = job.stitch
    covered = covers[:, 2]
    chosen = (covered >= rule.min_voxels) & (covered > rule.min_fraction * covers[:, 3])
    pairs = np.concatenate([continued, covers[chosen][:, :2].astype(np.uint64)])
    pairs[:, 0] = (np.uint64(block.index) << np.uint64(32)) | pairs[:, 0]
    return pairs


def _add_neighbours(
    job: BlockwiseJob, block: Block, box_image: BoxImage, canvas: Canvas
) -> npt.NDArray[np.uint64]:
    """Puts the objects that the block's finished neighbours (earlier waves) labelled in its
    read box into its canvas as existing objects, each by its root fragment (the latest wave's
    label first where two label a voxel); returns the root keys, object n's at ``n - 1``."""
    mine = wave(job.layout, block)
    earlier = [n for n in job.layout.neighbours(block) if wave(job.layout, n) < mine]
    earlier.sort(key=lambda n: (-wave(job.layout, n), n.index))
    keys = np.zeros(block.read.size, np.uint64)
    for other in earlier:
        shared = block.read.intersect(other.read)
        assert shared is not None
        local = load_labels(job, other)[shared.shifted(other.read.start).slices]
        fragments = fragment_keys(other.index, local)
        for local_id, root in roots(job, other).items():
            fragments[local == local_id] = root
        region = keys[shared.shifted(block.read.start).slices]
        free = region == 0
        region[free] = fragments[free]
    found, numbers = np.unique(keys, return_inverse=True)
    numbers = numbers.reshape(keys.shape)
    if found[0] != 0:  # numbers from 1, 0 stays "none"
        numbers += 1
        found = np.concatenate([[np.uint64(0)], found])
    widths = list(zip(box_image.before, box_image.after, strict=True))
    canvas.add_existing(np.pad(numbers.astype(np.int64), widths))
    root_keys: npt.NDArray[np.uint64] = found[1:].astype(np.uint64)
    return root_keys


def segmented(job: BlockwiseJob, block: Block) -> bool:
    """A block is done when its file exists (published complete) and is of this block."""
    path = job.fragments_file(block)
    if not path.exists():
        return False
    try:
        with np.load(path, allow_pickle=False) as data:
            boxes = json.loads(str(data["boxes"]))
    except (OSError, ValueError, KeyError) as exc:
        raise FfnopsError(
            f"{path}: unreadable block result ({exc}); delete it to redo the block"
        ) from None
    return bool(boxes == [str(block.read), str(block.write)])


def load_labels(job: BlockwiseJob, block: Block) -> npt.NDArray[np.uint32]:
    """A segmented block's local labels over its read box."""
    with np.load(job.fragments_file(block), allow_pickle=False) as data:
        return np.asarray(data["labels"])


# ---- match --------------------------------------------------------------------------------------


def match_blocks(job: BlockwiseJob, blocks: Sequence[Block]) -> None:
    """Links each block's fragments to those of its later neighbours."""
    for block in blocks:
        mine = load_labels(job, block)
        pairs, dropped = [np.zeros((0, 2), np.uint64)], 0
        for other in job.layout.later_neighbours(block):
            theirs = load_labels(job, other)
            shared = block.read.intersect(other.read)
            assert shared is not None
            a = fragment_keys(block.index, mine[shared.shifted(block.read.start).slices])
            b = fragment_keys(other.index, theirs[shared.shifted(other.read.start).slices])
            found = link_blocks(a, b, _owners(shared, block, other), *astuple(job.stitch))
            pairs.append(found.pairs)
            dropped += found.dropped
        write_npz(
            job.links_file(block),
            pairs=np.concatenate(pairs),
            dropped=np.asarray(dropped),
            rule=_rule(job.stitch),
        )


def _owners(shared: BBox, a: Block, b: Block) -> npt.NDArray[np.int8]:
    """Over the shared region: 1 where ``a``'s write box is, 2 where ``b``'s is, else 0."""
    owner = np.zeros(shared.size, np.int8)
    for mark, block in ((1, a), (2, b)):
        mine = shared.intersect(block.write)
        if mine is not None:
            owner[mine.shifted(shared.start).slices] = mark
    return owner


def _rule(stitch: StitchRule) -> npt.NDArray[np.str_]:
    return np.asarray(json.dumps(vars(stitch), sort_keys=True))


def matched(job: BlockwiseJob, block: Block) -> bool:
    """A block's links are done when its file exists and was made by this job's rule (a job
    resumed with other stitch settings matches again, on the same segmented blocks)."""
    path = job.links_file(block)
    if not path.exists():
        return False
    with np.load(path, allow_pickle=False) as data:
        return "rule" in data and str(data["rule"]) == str(_rule(job.stitch))


# ---- global ids ---------------------------------------------------------------------------------


def number_objects(job: BlockwiseJob) -> tuple[int, int, int, int]:
    """Writes the fragment -> global id table and ``objects.csv``; returns (objects, fragments,
    links, links dropped by disputes). Seeds in ``objects.csv`` are in the image volume's voxels."""
    rows: list[tuple[int, int, int, int, int, int, int, float]] = []  # key, block, local, z, y, x..
    for block in job.layout.blocks():
        with np.load(job.fragments_file(block), allow_pickle=False) as data:
            origins = data["origins"]
        for o in origins:
            local = int(o["id"])
            key = (block.index << 32) | local
            seed = [int(o[a]) + s for a, s in zip("zyx", block.read.start, strict=True)]
            rows.append((key, block.index, local, *seed, int(o["iters"]), float(o["walltime_s"])))  # type: ignore[arg-type]
    keys = np.array(sorted(r[0] for r in rows), dtype=np.uint64)
    pair_lists, dropped = [], 0
    for block in job.layout.blocks():
        with np.load(job.links_file(block), allow_pickle=False) as data:
            pair_lists.append(np.asarray(data["pairs"], np.uint64))
            dropped += int(data["dropped"])
        pair_lists.append(continuation_links(job, block))
    linked = np.concatenate(pair_lists) if pair_lists else np.zeros((0, 2), np.uint64)
    ids = global_ids(keys, [linked])
    write_npz(job.ids_file, keys=keys, ids=ids)
    by_key = dict(zip(keys.tolist(), ids.tolist(), strict=True))
    lines = ["global_id,block,block_id,seed_z,seed_y,seed_x,iters,walltime_s"]
    for key, index, local, z, y, x, iters, wall in sorted(rows, key=lambda r: (by_key[r[0]], r[0])):
        lines.append(f"{by_key[key]},{index},{local},{z},{y},{x},{iters},{wall:.3f}")
    write_text(job.objects_file, "\n".join(lines) + "\n")
    return int(ids.max()) if len(ids) else 0, len(keys), len(linked), dropped


# ---- relabel ------------------------------------------------------------------------------------


def relabel_blocks(job: BlockwiseJob, output_uri: str, blocks: Sequence[Block]) -> None:
    """Writes each block's write box in global ids into the output (opened for writing).

    Voxels the block's own canvas left unlabelled take the label a neighbour's canvas gave them
    (the first neighbour in index order that labels them): a piece of an object that no seed of
    the block reached, flooded from the next block, keeps its object."""
    with np.load(job.ids_file, allow_pickle=False) as data:
        keys, ids = np.asarray(data["keys"]), np.asarray(data["ids"])

    def global_labels(block: Block, box: BBox) -> npt.NDArray[np.uint64]:
        local = load_labels(job, block)[box.shifted(block.read.start).slices]
        fragments = fragment_keys(block.index, local)
        where = np.minimum(np.searchsorted(keys, fragments), max(len(keys) - 1, 0))
        return np.where(fragments > 0, ids[where] if len(ids) else 0, np.uint64(0))

    with open_volume(output_uri, "r+") as output:
        for block in blocks:
            labels = global_labels(block, block.write)
            for other in job.layout.neighbours(block):
                if (labels == 0).any():
                    shared = other.read.intersect(block.write)
                    if shared is None:
                        continue
                    region = labels[shared.shifted(block.write.start).slices]
                    theirs = global_labels(other, shared)
                    gaps = (region == 0) & (theirs > 0)
                    region[gaps] = theirs[gaps]
            output.write(block.write.shifted(job.layout.box.start), labels.astype(np.uint64))


def never_done(block: Block) -> bool:
    """The relabel pass writes into a fresh output each run: no block is done before it."""
    return False


# ---- the job ------------------------------------------------------------------------------------

OnPhaseProgress = Callable[[str, TaskProgress], None]


def run_blockwise(
    job: BlockwiseJob,
    executor: Executor,
    output_uri: str,
    batch_size: int,
    on_progress: OnPhaseProgress,
) -> BlockwiseSummary:
    """Segments, matches, numbers and relabels; ``output_uri`` is where workers open the
    (created, not yet committed) output for writing."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    if job.continue_objects:
        segment_in_waves(job, executor, batch_size, partial(on_progress, "segment"))
    else:
        segment = BlockTask(
            "segment",
            job.layout,
            partial(segment_blocks, job),
            partial(segmented, job),
            job.workdir,
            batch_size,
        )
        executor.run(segment, partial(on_progress, "segment"))
    seconds["segment"] = time.perf_counter() - started
    match = BlockTask(
        "match", job.layout, partial(match_blocks, job), partial(matched, job), job.workdir
    )
    started = time.perf_counter()
    executor.run(match, partial(on_progress, "match"))
    seconds["match"] = time.perf_counter() - started
    started = time.perf_counter()
    objects, fragments, linked, dropped = number_objects(job)
    seconds["number"] = time.perf_counter() - started
    relabel = BlockTask(
        "relabel", job.layout, partial(relabel_blocks, job, output_uri), never_done, job.workdir
    )
    started = time.perf_counter()
    executor.run(relabel, partial(on_progress, relabel.name))
    seconds["relabel"] = time.perf_counter() - started
    counters: dict[str, float] = {k: 0.0 for k in Counters().as_dict()}
    block_seconds, peak = 0.0, 0.0
    for block in job.layout.blocks():
        with np.load(job.fragments_file(block), allow_pickle=False) as data:
            for key, value in json.loads(str(data["counters"])).items():
                counters[key] += value
            block_seconds += float(data["seconds"])
            peak = max(peak, float(data["peak_rss_mb"]))
    counters["objects"] = float(objects)  # objects after stitching, not fragments
    return BlockwiseSummary(
        objects, fragments, linked, dropped, counters, seconds, block_seconds, peak
    )


def segment_in_waves(
    job: BlockwiseJob, executor: Executor, batch_size: int, on_progress: OnProgress
) -> None:
    """The segment task one wave after another (``executor.continue_objects``); progress is
    over every block, as one task's."""
    layout = job.layout
    blocks = list(layout.blocks())
    before = sum(segmented(job, b) for b in blocks)
    for number in sorted({wave(layout, b) for b in blocks}):
        done = sum(segmented(job, b) for b in blocks)

        def report(progress: TaskProgress, done: int = done) -> None:
            ran = max(progress.done - progress.skipped, 0)  # blocks of this wave, this run
            on_progress(TaskProgress(len(blocks), done + ran, before, progress.failed))

        task = BlockTask(
            "segment",
            layout,
            partial(segment_blocks, job),
            partial(segmented_in_wave, job, number),
            job.workdir,
            batch_size,
        )
        executor.run(task, report)


def segmented_in_wave(job: BlockwiseJob, number: int, block: Block) -> bool:
    """Done for this wave: segmented, or a block of another wave."""
    return wave(job.layout, block) != number or segmented(job, block)


def clear_work(job: BlockwiseJob, keep_blocks: bool = False) -> None:
    """Removes the job's folder once its output is published; with ``keep_blocks`` its
    segmented blocks stay, so the same command with other stitch settings only stitches."""
    if not keep_blocks:
        remove_path(job.workdir)
        return
    for path in job.workdir.iterdir():
        if path.name != "blocks":
            remove_path(path)
