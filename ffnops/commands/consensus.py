"""``ffnops consensus segs=[URI,URI] output=URI``: the consensus of two or more segmentations.

Pieces where the segmentations agree keep an object; where they disagree the cut is kept
(:mod:`ffnops.agglomeration.consensus`; what each ``rule`` does: docs/agglomeration.md,
"Consensus"). With more than two, the first two's consensus is taken with the third, and so on.
The volumes are read ``block`` at a time (twice per segmentation after the first: once to count
pieces, once to write), so they never need to fit in memory. Every input is checked (same
shape, voxel size and offset) before any work, and the output appears complete or not at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import numpy as np
import numpy.typing as npt
from omegaconf import DictConfig
from tqdm import tqdm

from ffnops.agglomeration.consensus import RULES, ConsensusMap, consensus_map, count_pairs
from ffnops.config.checks import vec3_setting
from ffnops.data.dataset import LABEL_DTYPES
from ffnops.errors import FfnopsError
from ffnops.outputs import claim_output
from ffnops.volume import BBox, VolumeSpec
from ffnops.volumes import box_of, check_same_voxels, create_volume, open_volume


def run(cfg: DictConfig) -> None:
    segs = list(cfg.segs or [])
    if len(segs) < 2:
        raise FfnopsError(f"segs={segs}: a consensus needs at least two segmentations")
    if cfg.rule not in RULES:
        raise FfnopsError(f"rule={cfg.rule}: expected one of {', '.join(RULES)}")
    if int(cfg.min_size) < 0:
        raise FfnopsError(f"min_size={cfg.min_size}: expected a number of voxels >= 0")
    block = vec3_setting(cfg.block, "block")
    with ExitStack() as stack:
        volumes = [stack.enter_context(open_volume(s, dtypes=LABEL_DTYPES)) for s in segs]
        for other in volumes[1:]:
            check_same_voxels(
                other, f"segs: {other.uri}", volumes[0], volumes[0].uri,
                "a consensus needs the same voxels",
            )  # fmt: skip
        first = volumes[0]
        box = box_of(first, cfg.bbox)
        spec = VolumeSpec(
            shape=box.size,
            dtype="uint64",
            voxel_size=first.voxel_size,
            offset=tuple(o + s for o, s in zip(first.offset, box.start, strict=True)),  # type: ignore[arg-type]
            kind="segmentation",
        )
        parts = list(BBox.from_shape(box.size).blocks(block))
        with claim_output(cfg.output, cfg.overwrite, box.num_voxels * 8, spec):
            maps: list[ConsensusMap] = []

            def consensus(part: BBox, upto: int) -> npt.NDArray[np.uint64]:
                """Block ``part`` of the consensus of the first ``upto + 1`` segmentations."""
                where = part.shifted([-s for s in box.start])
                labels = np.asarray(volumes[0].read(where)).astype(np.uint64)
                for index, found in enumerate(maps[:upto]):
                    labels = found.apply(labels, np.asarray(volumes[index + 1].read(where)))
                return labels

            for index in range(1, len(volumes)):

                def blocks(index: int = index) -> Iterator[tuple[np.ndarray, np.ndarray]]:
                    for part in tqdm(parts, desc=f"count pieces {index}/{len(volumes) - 1}"):
                        mine = consensus(part, index - 1)
                        where = part.shifted([-s for s in box.start])
                        yield mine, np.asarray(volumes[index].read(where))

                maps.append(consensus_map(count_pairs(blocks()), cfg.rule, int(cfg.min_size)))
            objects: set[int] = set()
            with create_volume(cfg.output, spec, overwrite=cfg.overwrite) as out:
                for part in tqdm(parts, desc="write"):
                    labels = consensus(part, len(maps))
                    objects.update(np.unique(labels[labels > 0]).tolist())
                    out.write(part.start, labels)
    last = maps[-1]
    print(
        f"wrote {cfg.output}: {len(objects)} objects, the consensus ({cfg.rule}) of "
        f"{len(segs)} segmentations; last step: {last.kept} pieces kept their id, "
        f"{last.renumbered} took a new one, {last.too_small} smaller than {cfg.min_size} "
        "voxels dropped"
    )
