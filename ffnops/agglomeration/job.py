"""Agglomeration of a whole segmentation, block by block on an executor (docs/agglomeration.md).

Four steps, the first, third and fourth tasks of blocks that any executor runs (``local`` in
this process, ``daisy`` in worker processes or on a cluster):

1. **contacts**: each block finds the contacts in its write box (and the faces to the next block
   on its far sides, so every face is counted once) and counts its objects' voxels
   (``contacts/<index>.npz``);
2. this process sums them: a pair's faces over blocks, its point from the block where it shares
   the most faces, objects' sizes; pairs with fewer than ``min_contact`` faces or an object
   smaller than ``min_voxels`` are dropped. Each pair goes to the block its point lies in
   (``pairs.npz``);
3. **resegment**: each block resegments its pairs (:mod:`.resegmentation`), the canvases of a
   batch of pairs sharing each network call (``scores/<index>.npz``);
4. this process joins the pairs that pass, and **relabel** writes every block of the output with
   the joined ids.

Every file is published whole by rename, so a killed job resumes with the blocks not yet done,
and the result is the same.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from ffnops.agglomeration.resegmentation import (
    Contact,
    PairScore,
    ResegmentationSettings,
    find_contacts,
    joined_ids,
    resegment,
    subvolume,
)
from ffnops.atomic import write_npz, write_text
from ffnops.blocks import Block, BlockLayout
from ffnops.executor import BlockTask, Executor, TaskProgress
from ffnops.ffn.canvas import Canvas, run_canvases
from ffnops.ffn.geometry import as_vec3
from ffnops.inference.request import BoxRequest
from ffnops.inference.runner import make_canvas, read_image, worker_predictor
from ffnops.volume import BBox, Volume
from ffnops.volumes import open_volume

SCORE_FIELDS = ("faces", "z", "y", "x", "tried", "iou", "recovered_a", "recovered_b")


@dataclass(frozen=True)
class AgglomerationJob:
    """Everything a worker needs (it travels to worker processes): the image request (model,
    options, normalisation), the segmentation, the layout of its blocks and the settings."""

    request: BoxRequest
    seg_uri: str
    seg_box: BBox  # the segmentation's voxels in the image's (all of it, or the part inferred)
    layout: BlockLayout
    settings: ResegmentationSettings
    workdir: Path

    def read_seg(self, seg: Volume, box: BBox) -> npt.NDArray[np.uint64]:
        """``box`` (the image's voxels) of the segmentation."""
        return np.asarray(seg.read(box.shifted(self.seg_box.start))).astype(np.uint64)

    def contacts_file(self, block: Block) -> Path:
        return self.workdir / "contacts" / f"{block.index}.npz"

    def scores_file(self, block: Block) -> Path:
        return self.workdir / "scores" / f"{block.index}.npz"

    @property
    def pairs_file(self) -> Path:
        return self.workdir / "pairs.npz"


@dataclass
class AgglomerationSummary:
    """What the job did: objects before and after, pairs tried and joined, FOV steps, seconds
    per phase and in network calls."""

    objects_before: int
    objects_after: int
    contacts: int  # pairs that touch
    pairs: int  # of those, the ones resegmented (min_contact, min_voxels)
    joined: int
    steps: int
    seconds: dict[str, float]
    network_seconds: float  # in network calls, summed over blocks (all runs of a resumed job)
    block_seconds: float  # resegmenting, summed over blocks (all runs)

    @property
    def network_share(self) -> float:
        """The share of the resegmentation's time spent in network calls."""
        return self.network_seconds / max(self.block_seconds, 1e-9)


def _exists(path_of: Callable[[Block], Path], block: Block) -> bool:
    return path_of(block).exists()


# ---- contacts -----------------------------------------------------------------------------------


def contact_blocks(job: AgglomerationJob, blocks: Sequence[Block]) -> None:
    box = job.layout.box
    with open_volume(job.seg_uri) as seg:
        for block in blocks:
            far = [min(e + 1, s) for e, s in zip(block.write.stop, box.stop, strict=True)]
            size = as_vec3([f - a for f, a in zip(far, block.write.start, strict=True)])
            grown = BBox(block.write.start, size)  # and the faces to the next blocks
            labels = job.read_seg(seg, grown)
            own = labels[tuple(slice(0, n) for n in block.write.size)]
            ids, sizes = np.unique(own[own > 0], return_counts=True)
            found = find_contacts(labels, grown.start, within=block.write.size)
            write_npz(
                job.contacts_file(block),
                objects=np.array([(c.a, c.b) for c in found], np.uint64).reshape(-1, 2),
                contacts=np.array([(c.faces, *c.point) for c in found], np.int64).reshape(-1, 4),
                ids=ids.astype(np.uint64),
                sizes=sizes.astype(np.int64),
            )


def plan_pairs(job: AgglomerationJob) -> tuple[npt.NDArray[np.uint64], int]:
    """Sums the blocks' contacts and sizes; writes the pairs to resegment, each with its block;
    returns (the object ids, the number of touching pairs)."""
    objects, contacts, id_list, size_list = [], [], [], []
    for block in job.layout.blocks():
        with np.load(job.contacts_file(block)) as data:
            objects.append(np.asarray(data["objects"], np.uint64))
            contacts.append(np.asarray(data["contacts"], np.int64))
            id_list.append(np.asarray(data["ids"], np.uint64))
            size_list.append(np.asarray(data["sizes"], np.int64))
    ids, inverse = np.unique(np.concatenate(id_list), return_inverse=True)
    sizes = np.bincount(inverse.ravel(), weights=np.concatenate(size_list)).astype(np.int64)
    every, rows = np.concatenate(objects), np.concatenate(contacts)
    chosen, plan = np.zeros((0, 2), np.uint64), np.zeros((0, 5), np.int64)
    touching = 0
    if len(every):
        pairs, group = np.unique(every, axis=0, return_inverse=True)
        group = group.ravel()
        touching = len(pairs)
        faces = np.bincount(group, weights=rows[:, 0]).astype(np.int64)
        # Each pair's point: from the block where it shares the most faces (first such row).
        order = np.lexsort((-rows[:, 0], group))
        first = order[np.searchsorted(group[order], np.arange(len(pairs)))]
        size = sizes[np.searchsorted(ids, pairs)]  # (n, 2): every object of a pair is an id
        keep = (faces >= job.settings.min_contact) & (size.min(axis=1) >= job.settings.min_voxels)
        points = rows[first, 1:4]
        blocks = np.array([block_of(job.layout, p) for p in points.tolist()], np.int64)
        chosen = pairs[keep]
        plan = np.concatenate([faces[:, None], points, blocks.reshape(-1, 1)], axis=1)[keep]
    write_npz(
        job.pairs_file,
        objects=chosen,
        plan=plan,
        settings=np.asarray(json.dumps(asdict(job.settings))),
    )
    return ids, touching


def block_of(layout: BlockLayout, point: Sequence[int]) -> int:
    """The index of the block whose write box holds ``point``."""
    corner = [
        s + (p - s) // b * b
        for p, s, b in zip(point, layout.box.start, layout.block_size, strict=True)
    ]
    return layout.index_at(corner)


# ---- resegment ----------------------------------------------------------------------------------


def resegment_blocks(job: AgglomerationJob, blocks: Sequence[Block], batch_size: int) -> None:
    """Resegments each block's pairs, ``batch_size`` canvases sharing each network call."""
    with np.load(job.pairs_file) as data:
        objects, plan = np.asarray(data["objects"], np.uint64), np.asarray(data["plan"])
    settings = job.settings
    predictor = worker_predictor(job.request)
    with open_volume(job.seg_uri) as seg:
        for block in blocks:
            here = plan[:, 4] == block.index
            mine = [
                (int(a), int(b), *row)
                for (a, b), row in zip(objects[here].tolist(), plan[here, :4].tolist(), strict=True)
            ]
            started = time.perf_counter()
            scores: list[PairScore] = []
            network = _Timed(predictor)
            bar = tqdm(total=len(mine), desc=f"block {block.index}: pairs", unit="pair")
            # batch_size pairs at a time: a worker holds that many subvolumes, never a block's all
            for first in range(0, len(mine), batch_size):
                steps = []
                for a, b, faces, z, y, x in mine[first : first + batch_size]:
                    contact = Contact(a, b, faces, (z, y, x))
                    canvas, labels, point = _pair_canvas(job, seg, contact)
                    if canvas is None:
                        scores.append(PairScore(a, b, faces, contact.point, False))
                        bar.update()
                        continue
                    pair = resegment(canvas, labels, contact, point, settings.analysis_radius)
                    steps.append(_collect(pair, scores, bar))
                run_canvases(steps, network, batch_size=batch_size)
            bar.close()
            write_npz(
                job.scores_file(block),
                objects=np.array([(s.a, s.b) for s in scores], np.uint64).reshape(-1, 2),
                scores=np.array(
                    [
                        (s.faces, *s.point, s.tried, s.iou, s.recovered_a, s.recovered_b)
                        for s in scores
                    ],
                    np.float64,
                ).reshape(-1, len(SCORE_FIELDS)),
                steps=np.asarray(sum(s.steps for s in scores)),
                seconds=np.asarray(time.perf_counter() - started),
                network_seconds=np.asarray(network.seconds),
            )


def _pair_canvas(
    job: AgglomerationJob, seg: Volume, contact: Contact
) -> tuple[Canvas | None, npt.NDArray[np.uint64], list[int]]:
    """The canvas over the subvolume around ``contact``'s point, the segmentation there and the
    point, both in the canvas's voxels; no canvas where the volume's faces leave less than a FOV."""
    request = job.request
    box = subvolume(contact.point, job.settings.radius, job.seg_box)
    box_image = read_image(request, box)
    labels = np.pad(
        job.read_seg(seg, box),
        list(zip(box_image.before, box_image.after, strict=True)),
    )
    point = [p - s + o for p, s, o in zip(contact.point, box.start, box_image.before, strict=True)]
    fov = request.settings.fov_size
    if any(n < f for n, f in zip(box_image.image.shape, fov, strict=True)):
        return None, labels, point
    return make_canvas(request, box_image, keep_probabilities=False), labels, point


def _collect(steps: Any, into: list[PairScore], bar: tqdm) -> Any:
    """Drives ``steps`` (a resegmentation) and keeps its score."""
    score = yield from steps
    into.append(score)
    bar.update()


class _Timed:
    """A predictor that adds up the seconds of its calls."""

    def __init__(
        self, predict: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]
    ) -> None:
        self.predict = predict
        self.seconds = 0.0

    def __call__(self, inputs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        started = time.perf_counter()
        out = self.predict(inputs)
        self.seconds += time.perf_counter() - started
        return out


def load_scores(job: AgglomerationJob) -> list[PairScore]:
    scores = []
    for block in job.layout.blocks():
        with np.load(job.scores_file(block)) as data:
            objects = np.asarray(data["objects"], np.uint64).tolist()
            values = np.asarray(data["scores"]).tolist()
        for (a, b), (faces, z, y, x, tried, iou, ra, rb) in zip(objects, values, strict=True):
            point = (int(z), int(y), int(x))
            scores.append(PairScore(a, b, int(faces), point, bool(tried), iou, ra, rb))
    return sorted(scores, key=lambda s: (s.a, s.b))


# ---- relabel ------------------------------------------------------------------------------------


def relabel_blocks(job: AgglomerationJob, output_uri: str, blocks: Sequence[Block]) -> None:
    with np.load(job.workdir / "joined.npz") as data:
        ids, new = np.asarray(data["ids"], np.uint64), np.asarray(data["new"], np.uint64)
    with open_volume(job.seg_uri) as seg, open_volume(output_uri, "r+") as out:
        for block in blocks:
            labels = job.read_seg(seg, block.write)
            where = np.minimum(np.searchsorted(ids, labels), max(len(ids) - 1, 0))
            mapped = np.where(labels > 0, new[where] if len(new) else 0, np.uint64(0))
            out.write(block.write.shifted(job.layout.box.start), mapped.astype(np.uint64))


def never_done(block: Block) -> bool:
    return False


# ---- the job ------------------------------------------------------------------------------------


def run_agglomeration(
    job: AgglomerationJob,
    executor: Executor,
    output_uri: str,
    batch_size: int,
    on_progress: Callable[[str, TaskProgress], None],
) -> tuple[AgglomerationSummary, list[PairScore]]:
    """Contacts, pairs, resegmentation, joining and relabelling; ``output_uri``: the created,
    not yet committed output the workers write."""
    seconds: dict[str, float] = {}
    layout, workdir = job.layout, job.workdir
    started = time.perf_counter()
    contacts = BlockTask(
        "contacts",
        layout,
        partial(contact_blocks, job),
        partial(_exists, job.contacts_file),
        workdir,
    )
    executor.run(contacts, partial(on_progress, "contacts"))
    seconds["contacts"] = time.perf_counter() - started
    ids, touching = plan_pairs(job)
    started = time.perf_counter()
    task = BlockTask(
        "resegment",
        layout,
        partial(resegment_blocks, job, batch_size=batch_size),
        partial(_exists, job.scores_file),
        workdir,
    )
    executor.run(task, partial(on_progress, "resegment"))
    seconds["resegment"] = time.perf_counter() - started
    scores = load_scores(job)
    joined = [(s.a, s.b) for s in scores if s.joins(job.settings)]
    new = joined_ids(ids, np.array(joined, np.uint64).reshape(-1, 2))
    write_npz(workdir / "joined.npz", ids=ids.astype(np.uint64), new=new)
    started = time.perf_counter()
    relabel = BlockTask(
        "relabel", layout, partial(relabel_blocks, job, output_uri), never_done, workdir
    )
    executor.run(relabel, partial(on_progress, "relabel"))
    seconds["relabel"] = time.perf_counter() - started
    steps, network, block_seconds = 0, 0.0, 0.0
    for block in layout.blocks():
        with np.load(job.scores_file(block)) as data:
            steps += int(data["steps"])
            network += float(data["network_seconds"])
            block_seconds += float(data["seconds"])
    summary = AgglomerationSummary(
        len(ids),
        len(np.unique(new)),
        touching,
        len(scores),
        len(joined),
        steps,
        seconds,
        network,
        block_seconds,
    )
    return summary, scores


def write_pairs_csv(
    path: Path, scores: Sequence[PairScore], settings: ResegmentationSettings
) -> None:
    """One row per resegmented pair: its objects, contact, scores and whether it was joined."""
    lines = ["a,b,faces,z,y,x,tried,iou,recovered_a,recovered_b,joined"]
    for s in scores:
        lines.append(
            f"{s.a},{s.b},{s.faces},{s.point[0]},{s.point[1]},{s.point[2]},{int(s.tried)},"
            f"{s.iou:.4f},{s.recovered_a:.4f},{s.recovered_b:.4f},{int(s.joins(settings))}"
        )
    write_text(path, "\n".join(lines) + "\n")
