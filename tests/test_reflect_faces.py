"""``inference.reflect_faces``: seeds and FOV centres reach the image volume's outermost voxels.

google/ffn keeps every FOV inside the image, so an object within a FOV radius of a face of the
volume is only found if a flood from further in reaches it (docs/inference.md, "Volume faces").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ffnops.blocks import BlockLayout
from ffnops.config.schemas import ExecutorConfig
from ffnops.executor import make_executor
from ffnops.ffn.model_settings import ModelSettings
from ffnops.ffn.options import InferenceOptions
from ffnops.ffn.oracle import OracleFFN
from ffnops.inference.blockwise import BlockwiseJob, run_blockwise
from ffnops.inference.request import BoxRequest
from ffnops.inference.runner import face_mirror, segment_box
from ffnops.volume import BBox, VolumeSpec
from ffnops.volumes import create_volume, open_volume, write_array

SLAB, CORE = 1, 2


def _labels() -> np.ndarray:
    """A slab 3 voxels thick on the y = 0 face (thinner than the FOV radius, 4) and an object
    in the middle."""
    labels = np.zeros((32, 40, 40), np.uint32)
    labels[4:28, 0:3, 4:36] = SLAB
    labels[8:24, 12:28, 12:28] = CORE
    return labels


def _request(tmp_path: Path, reflect: bool, box: BBox | None = None) -> BoxRequest:
    # The oracle's "image" is the labels: it floods exactly the object under its seed.
    return BoxRequest(
        OracleFFN(9, 2),
        ModelSettings((9, 9, 9), (2, 2, 2)),
        InferenceOptions(min_segment_size=50, seed_policy="grid", reflect_faces=reflect),
        f"zarr://{tmp_path}/labels.zarr",
        box or BBox((0, 0, 0), (32, 40, 40)),
        0.0,
        1.0,
    )


def test_face_mirror_pads_only_the_faces_of_the_volume_the_box_touches() -> None:
    shape = (32, 40, 40)
    assert face_mirror(BBox((0, 0, 0), shape), shape, (4, 4, 4)) == ((4, 4, 4), (4, 4, 4))
    inner = BBox((2, 0, 5), (10, 40, 35))  # touches y = 0, y = 40 and x = 40 only
    assert face_mirror(inner, shape, (4, 3, 2)) == ((0, 3, 0), (0, 3, 2))


def test_an_object_on_a_face_is_found_only_with_reflect_faces(tmp_path: Path) -> None:
    labels = _labels()
    write_array(f"zarr://{tmp_path}/labels.zarr", labels)
    google, _ = segment_box(_request(tmp_path, reflect=False))
    mirrored, _ = segment_box(_request(tmp_path, reflect=True))
    slab, core = labels == SLAB, labels == CORE
    assert not google.labels[slab].any()  # no FOV centre fits within 4 voxels of y = 0
    assert mirrored.labels.shape == labels.shape  # the mirror is not output
    found = np.unique(mirrored.labels[slab])
    assert len(found) == 1 and found[0] > 0  # one object, all of the slab
    assert set(np.unique(mirrored.labels[~slab])) == set(np.unique(mirrored.labels[core])) | {0}
    assert mirrored.probabilities is not None
    assert mirrored.probabilities.shape == labels.shape
    # origins are voxels of the box: the slab's seed lies in it, on the face
    seed = mirrored.origins[int(found[0])].start
    assert slab[seed] and seed[1] < 4
    # the middle object, far from every face, is flooded the same either way
    np.testing.assert_array_equal(mirrored.labels[core] > 0, google.labels[core] > 0)


def test_a_box_inside_the_volume_is_not_mirrored(tmp_path: Path) -> None:
    write_array(f"zarr://{tmp_path}/labels.zarr", _labels())
    box = BBox((0, 1, 0), (32, 39, 40))  # one voxel off the y faces: real image there
    google, _ = segment_box(_request(tmp_path, reflect=False, box=box))
    mirrored, _ = segment_box(_request(tmp_path, reflect=True, box=box))
    slab_in_box = _labels()[box.slices] == SLAB
    np.testing.assert_array_equal(google.labels[slab_in_box], mirrored.labels[slab_in_box])


def test_blockwise_blocks_on_the_faces_are_mirrored_too(tmp_path: Path) -> None:
    labels = _labels()
    write_array(f"zarr://{tmp_path}/labels.zarr", labels)
    request = _request(tmp_path, reflect=True)
    layout = BlockLayout.plan(request.box, [32, 20, 40], request.settings.fov_size, [2, 2, 2])
    job = BlockwiseJob(request, layout, tmp_path / "work")
    spec = VolumeSpec(labels.shape, "uint64", chunks=layout.write_chunks(), kind="segmentation")
    output = create_volume(f"zarr://{tmp_path}/out.zarr", spec)
    assert output.shared_uri is not None
    executor = make_executor(ExecutorConfig(name="local"))
    run_blockwise(job, executor, output.shared_uri, 1, lambda phase, progress: None)
    output.commit()
    with open_volume(f"zarr://{tmp_path}/out.zarr") as volume:
        blocks = np.asarray(volume.read())
    found = np.unique(blocks[labels == SLAB])
    assert len(found) == 1 and found[0] > 0  # seeded on the face in the first block
    assert len(np.unique(blocks[labels == CORE])) == 1  # stitched across the two blocks
