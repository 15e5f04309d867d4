"""Neuroglancer viewer states and links for an image and its segmentation.

Built with the ``neuroglancer`` package's own state classes and URL encoder, so the links follow
whatever the client expects. ffnops keeps arrays in (z, y, x); neuroglancer names its axes
x, y, z, so positions and voxel sizes are reversed here and nowhere else.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import neuroglancer
import numpy as np
import numpy.typing as npt

IMAGE_LAYER = "image"
SEGMENTATION_LAYER = "segmentation"
GROUNDTRUTH_LAYER = "groundtruth"
# In 2-D, objects not selected are drawn this opaque (neuroglancer's default, 0, hides them).
NOT_SELECTED_ALPHA = 0.15
# The 3-D panel's view of meshes: tilted 30 degrees about x, then 30 about y (a unit quaternion,
# x, y, z, w), so objects show depth; neuroglancer's default looks straight down z.
OBLIQUE = (0.25, 0.25, -0.067, 0.933)


def viewer_state(
    image_source: str | None,
    segmentation_source: str | None,
    voxel_size_zyx: Sequence[float],
    center_zyx: Sequence[float],
    layout: str = "4panel",
    box_size_zyx: Sequence[int] | None = None,
) -> neuroglancer.ViewerState:
    """A state that opens ``image_source`` under ``segmentation_source``, centred on the box.

    With ``box_size_zyx`` the 2-D panels are zoomed so the box fills about 400 screen pixels.
    """
    state = neuroglancer.ViewerState()
    state.dimensions = neuroglancer.CoordinateSpace(
        names=["x", "y", "z"], units="nm", scales=[float(v) for v in voxel_size_zyx[::-1]]
    )
    state.position = [float(c) for c in center_zyx[::-1]]
    if image_source:
        state.layers[IMAGE_LAYER] = neuroglancer.ImageLayer(source=image_source)
    if segmentation_source:
        state.layers[SEGMENTATION_LAYER] = neuroglancer.SegmentationLayer(
            source=segmentation_source, selected_alpha=0.4
        )
        state.selected_layer.layer = SEGMENTATION_LAYER
    state.layout = layout
    if box_size_zyx is not None:
        state.cross_section_scale = max(max(box_size_zyx) / 400, 0.05)
    return state


def precomputed_source(base_url: str, path: str) -> str:
    """The data-source string for a precomputed volume served at ``base_url/path``."""
    return f"precomputed://{base_url.rstrip('/')}/{path.strip('/')}"


def state_url(state: neuroglancer.ViewerState, client_url: str) -> str:
    """The link that opens ``state`` in the neuroglancer client at ``client_url``."""
    return str(neuroglancer.to_url(state, prefix=client_url.rstrip("/") + "/"))


def state_json(state: neuroglancer.ViewerState) -> dict[str, object]:
    """The state as JSON (what neuroglancer's "Edit JSON state" shows)."""
    return dict(state.to_json())


def served_run_state(
    base_url: str,
    run_id: str,
    voxel_size_zyx: Sequence[float],
    offset_zyx: Sequence[int],
    shape_zyx: Sequence[int],
    layout: str = "4panel",
    image: bool = True,
    groundtruth: bool = False,
    segments: Sequence[int] = (),
) -> neuroglancer.ViewerState:
    """The state of an inference run whose view data ``ffnops view`` serves under ``base_url``
    (with its image, and its ground truth when the run has one), with ``segments`` selected:
    the 3-D panel draws their meshes; the other objects stay faintly coloured in 2-D.

    ``ffnops view RUN_ID`` mounts the run's ``neuroglancer`` artifacts at ``/data/RUN_ID/``.
    """
    data = f"{base_url.rstrip('/')}/data/{run_id}"
    center = [o + n / 2 for o, n in zip(offset_zyx, shape_zyx, strict=True)]
    state = viewer_state(
        precomputed_source(data, IMAGE_LAYER) if image else None,
        precomputed_source(data, SEGMENTATION_LAYER),
        voxel_size_zyx,
        center,
        layout,
        box_size_zyx=shape_zyx,
    )
    show_in_3d(state, segments)
    if groundtruth:
        state.layers[GROUNDTRUTH_LAYER] = neuroglancer.SegmentationLayer(
            source=precomputed_source(data, GROUNDTRUTH_LAYER),
            selected_alpha=0.3,
            not_selected_alpha=0.0,  # only the objects asked for
        )
        state.layers[GROUNDTRUTH_LAYER].visible = False  # a checkbox away
        state.selected_layer.layer = SEGMENTATION_LAYER
    return state


def show_in_3d(state: neuroglancer.ViewerState, segments: Sequence[int]) -> None:
    """Selects ``segments`` in the segmentation layer, so the 3-D panel draws their meshes seen
    obliquely; the other objects stay faintly coloured in 2-D. Nothing changes without any."""
    if not segments:
        return
    layer = state.layers[SEGMENTATION_LAYER]
    layer.segments = sorted(int(s) for s in segments)
    layer.not_selected_alpha = NOT_SELECTED_ALPHA
    state.projection_orientation = OBLIQUE


def error_state(
    state: neuroglancer.ViewerState,
    position_zyx: Sequence[float],
    segments: Iterable[int],
    groundtruth_segments: Iterable[int] = (),
    view_voxels: int = 96,
) -> neuroglancer.ViewerState:
    """``state`` centred on voxel ``position_zyx`` (the volume's voxels), zoomed to about
    ``view_voxels`` across, with ``segments`` selected (and ``groundtruth_segments`` in the
    ground-truth layer, if the state has one): one error for a proofreader to look at."""
    focused = copy.deepcopy(state)
    focused.position = [float(p) + 0.5 for p in position_zyx[::-1]]  # the voxel's centre
    focused.cross_section_scale = view_voxels / 400
    focused.layers[SEGMENTATION_LAYER].segments = sorted(int(s) for s in segments)
    shown = sorted(int(s) for s in groundtruth_segments)
    if GROUNDTRUTH_LAYER in focused.layers and shown:
        focused.layers[GROUNDTRUTH_LAYER].segments = shown
        focused.layers[GROUNDTRUTH_LAYER].visible = True
    return focused


def in_memory_state(
    image: npt.NDArray[np.generic] | None,
    labels: npt.NDArray[np.integer],
    voxel_size_zyx: Sequence[float],
    offset_zyx: Sequence[int],
    layout: str = "4panel",
    segments: Sequence[int] = (),
) -> neuroglancer.ViewerState:
    """A state holding arrays in memory, for neuroglancer's Python viewer to serve, with
    ``segments`` selected: the Python viewer meshes them itself when the 3-D panel asks."""
    dimensions = neuroglancer.CoordinateSpace(
        names=["z", "y", "x"], units="nm", scales=[float(v) for v in voxel_size_zyx]
    )
    center = [o + n / 2 for o, n in zip(offset_zyx, labels.shape, strict=True)]
    state = viewer_state(None, None, voxel_size_zyx, center, layout, box_size_zyx=labels.shape)
    offset = [int(o) for o in offset_zyx]
    if image is not None:
        state.layers[IMAGE_LAYER] = neuroglancer.ImageLayer(
            source=neuroglancer.LocalVolume(image, dimensions, voxel_offset=offset)
        )
    state.layers[SEGMENTATION_LAYER] = neuroglancer.SegmentationLayer(
        source=neuroglancer.LocalVolume(labels, dimensions, voxel_offset=offset),
        selected_alpha=0.4,
    )
    state.selected_layer.layer = SEGMENTATION_LAYER
    show_in_3d(state, segments)
    return state
