"""``ffnops skeletons seg=URI output=precomputed://DIR``: a segmentation with its centre lines.

Copies ``seg`` (or ``bbox`` of it; any format) to a precomputed segmentation with segment
properties and every object's skeleton (kimimaro), one block at a time (memory of one block; an
object across blocks is one skeleton, joined at the block faces). Neuroglancer draws the
skeleton of each selected object in its 3-D panel. What is written and why: docs/inference.md,
"Skeletons". The output appears under its name only when complete; a segmentation with no
objects writes nothing.
"""

from __future__ import annotations

import time

from omegaconf import DictConfig
from tqdm import tqdm

from ffnops.atomic import fresh_partial, publish, remove_path
from ffnops.commands.mesh import mesh_output
from ffnops.config.checks import vec3_setting
from ffnops.data.dataset import LABEL_DTYPES
from ffnops.outputs import claim_output
from ffnops.viewing.meshes import largest_segments
from ffnops.viewing.skeletons import skeletonize_volume, write_skeletons
from ffnops.viewing.view_data import copy_labels
from ffnops.volumes import box_of, open_volume


def run(cfg: DictConfig) -> None:
    block = vec3_setting(cfg.block, "block")
    path = mesh_output(cfg.output, "skeletons")
    with open_volume(cfg.seg, dtypes=LABEL_DTYPES) as seg:
        box = box_of(seg, cfg.bbox)
        with claim_output(cfg.output, cfg.overwrite, box.num_voxels * seg.dtype.itemsize):
            partial = fresh_partial(path)
            started = time.perf_counter()
            blocks = len(box.blocks(block))
            with tqdm(total=2 * blocks, desc="skeletons", unit="block") as bar:
                copy_labels(partial, seg, box, block, False, lambda _: bar.update())
                if not largest_segments(partial, 1):
                    remove_path(partial)
                    empty = f"seg={cfg.seg} [{box}] has no objects (every voxel is 0)"
                    print(f"{empty}: nothing written")
                    return
                skeletons = skeletonize_volume(seg, box, block, lambda _: bar.update())
            summary = write_skeletons(partial, skeletons, started)
            publish(partial, path)
    print(
        f"wrote {cfg.output}: {summary.objects} skeletons, {summary.vertices} vertices, "
        f"{summary.cable_nm / 1000:.1f} um of cable in {summary.seconds:.1f} s"
    )
