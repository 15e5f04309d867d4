"""``ffnops mesh seg=URI output=precomputed://DIR``: a segmentation as neuroglancer draws it in 3-D.

Copies ``seg`` (or ``bbox`` of it; any format) to a precomputed segmentation with every object's
mesh and the objects' sizes, one block at a time (memory of one block, whatever the volume; an
object across blocks is one mesh of several fragments, so no object is too large for a block).
What is written and why: docs/inference.md, "Meshes". The output appears under its name only
when complete; a segmentation with no objects writes nothing.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from tqdm import tqdm

from ffnops.atomic import fresh_partial, publish, remove_path
from ffnops.config.checks import vec3_setting
from ffnops.data.dataset import LABEL_DTYPES
from ffnops.errors import FfnopsError
from ffnops.outputs import claim_output, local_output_path
from ffnops.uri import VolumeURI
from ffnops.viewing.meshes import largest_segments
from ffnops.viewing.view_data import copy_labels
from ffnops.volumes import box_of, open_volume


def mesh_output(uri: str, what: str = "meshes") -> Path:
    """The local folder of a ``precomputed://`` output (``what``, meshes or skeletons, are
    files beside its chunks)."""
    path = local_output_path(uri)
    if VolumeURI.parse(uri).scheme != "precomputed" or path is None:
        raise FfnopsError(
            f"output={uri}: {what} are files beside a neuroglancer precomputed segmentation; "
            "expected a local precomputed:///DIR"
        )
    return path


def run(cfg: DictConfig) -> None:
    block = vec3_setting(cfg.block, "block")
    path = mesh_output(cfg.output)
    with open_volume(cfg.seg, dtypes=LABEL_DTYPES) as seg:
        box = box_of(seg, cfg.bbox)
        with claim_output(cfg.output, cfg.overwrite, box.num_voxels * seg.dtype.itemsize):
            partial = fresh_partial(path)
            with tqdm(total=len(box.blocks(block)), desc="mesh", unit="block") as bar:
                meshed = copy_labels(partial, seg, box, block, True, lambda _: bar.update())
            assert meshed is not None  # asked for meshes
            if not largest_segments(partial, 1):
                remove_path(partial)
                print(f"seg={cfg.seg} [{box}] has no objects (every voxel is 0): nothing written")
                return
            publish(partial, path)
    objects = f"{meshed.objects} object{'' if meshed.objects == 1 else 's'}"
    print(f"wrote {cfg.output}: {objects}, {meshed.triangles} triangles in {meshed.seconds:.1f} s")
