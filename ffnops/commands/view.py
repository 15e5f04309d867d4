"""``ffnops view RUN_ID|latest|URI``: look at a segmentation over its image in neuroglancer.

For an inference run, the run's neuroglancer copy (precomputed, in its artifacts) is served
read-only over HTTP on ``viewer.host:viewer.port`` with CORS, which is what the run's
``neuroglancer_url`` tag reads from. For a volume URI, the arrays are read into memory and shown
through neuroglancer's Python viewer. Either way neuroglancer's bundled client is served too, so
a link works offline. Serves until Ctrl-C (or ``timeout_s``).
"""

from __future__ import annotations

import re
import time
import webbrowser

import neuroglancer
import numpy as np
from omegaconf import DictConfig

from ffnops.data.dataset import LABEL_DTYPES
from ffnops.locks import process_folder
from ffnops.tracking.mlflow_tracking import check_tracking_uri
from ffnops.tracking.runs import latest_run, run_artifacts
from ffnops.viewing.meshes import object_sizes, shown_segments
from ffnops.viewing.python_viewer import open_viewer
from ffnops.viewing.server import ViewServer
from ffnops.viewing.state import (
    GROUNDTRUTH_LAYER,
    IMAGE_LAYER,
    SEGMENTATION_LAYER,
    in_memory_state,
    served_run_state,
    state_url,
)
from ffnops.viewing.view_data import RUN_ARTIFACTS
from ffnops.volumes import box_of, open_volume

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def run(cfg: DictConfig) -> None:
    if cfg.target == "latest" or _RUN_ID.match(str(cfg.target)):
        check_tracking_uri(cfg.tracking.tracking_uri)
    if cfg.target == "latest":
        view_run(cfg, latest_run(cfg.tracking.tracking_uri, cfg.tracking.inference_experiment))
    elif _RUN_ID.match(str(cfg.target)):
        view_run(cfg, cfg.target)
    else:
        view_volume(cfg)


def view_run(cfg: DictConfig, run_id: str) -> None:
    with process_folder(cfg.viewer.cache_dir) as cache:
        folder = run_artifacts(
            cfg.tracking.tracking_uri,
            run_id,
            RUN_ARTIFACTS,
            cfg.tracking.inference_experiment,
            cache,
        )
        with open_volume(f"precomputed://{folder / SEGMENTATION_LAYER}") as seg:
            voxel_size, offset, shape = seg.voxel_size, seg.offset, seg.shape
        server = ViewServer(
            {run_id: folder},
            cfg.viewer.host,
            cfg.viewer.port,
            client_origins=[cfg.viewer.client_url],
            allowed_hosts=cfg.viewer.allowed_hosts,
        )
        with server:
            state = served_run_state(
                server.url,
                run_id,
                voxel_size,
                offset,
                shape,
                cfg.viewer.layout,
                image=(folder / IMAGE_LAYER).exists(),
                groundtruth=(folder / GROUNDTRUTH_LAYER).exists(),
                segments=shown_segments(folder / SEGMENTATION_LAYER, cfg.viewer.shown),
            )
            print(f"serving run {run_id} ({folder}) read-only at {server.url}/data/{run_id}/")
            print(f"public client: {state_url(state, cfg.viewer.client_url)}")
            viewer = open_viewer(state, cfg.viewer.host)
            server.allow_origin(viewer.get_viewer_url())
            show(cfg, viewer)


def view_volume(cfg: DictConfig) -> None:
    with open_volume(cfg.target, dtypes=LABEL_DTYPES) as seg:
        box = box_of(seg, cfg.bbox)
        labels = np.asarray(seg.read(box))
        voxel_size = seg.voxel_size
        offset = tuple(o + s for o, s in zip(seg.offset, box.start, strict=True))
    image = None
    if cfg.image:
        with open_volume(cfg.image) as volume:
            image = np.asarray(volume.read(box))
    sizes = object_sizes(labels)
    largest = sorted(sizes, key=lambda s: (-sizes[s], s))[: cfg.viewer.shown]
    state = in_memory_state(image, labels, voxel_size, offset, cfg.viewer.layout, largest)
    show(cfg, open_viewer(state, cfg.viewer.host))


def show(cfg: DictConfig, viewer: neuroglancer.Viewer) -> None:
    """Prints (and opens) the offline viewer's link, then serves until Ctrl-C or the timeout.

    Holds ``viewer`` while serving: neuroglancer's server keeps viewers by weak reference, so a
    dropped one answers 404."""
    offline_url = viewer.get_viewer_url()
    print(f"offline viewer: {offline_url}")
    if cfg.open_browser:
        webbrowser.open(offline_url)
    deadline = None if cfg.timeout_s is None else time.monotonic() + cfg.timeout_s
    print("serving; Ctrl-C to stop", flush=True)
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
