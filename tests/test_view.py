"""Neuroglancer viewing: the link an inference run publishes opens and draws in a real browser.

The browser test drives Debian's Chromium (WebGL2 through SwiftShader) with selenium; `.ci/run`
installs it. Elsewhere the test is skipped when Chromium is missing, never on CI.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import neuroglancer
import numpy as np
import pytest
from browser import CAN_RENDER, RENDER_REASON, render
from commands import free_port
from omegaconf import OmegaConf

from ffnops.errors import FfnopsError
from ffnops.sample_data import sample_path
from ffnops.segmentation import SegmentationResult
from ffnops.viewing.meshes import largest_segments, object_sizes, shown_segments
from ffnops.viewing.publish import publish_view
from ffnops.viewing.python_viewer import open_viewer
from ffnops.viewing.server import ViewServer
from ffnops.viewing.state import SEGMENTATION_LAYER, in_memory_state, served_run_state
from ffnops.viewing.view_data import RUN_ARTIFACTS, write_view_data
from ffnops.volume import BBox
from ffnops.volumes import open_volume

SAMPLE = sample_path("fib25_crop.h5")


def fetch(
    url: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), b""


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str, int]:
    """An inference run whose view data is published as `ffnops infer` does: (dir, uri, id, port).

    Its "segmentation" is the sample's neuron labels, so the picture is known."""
    path = tmp_path_factory.mktemp("view")
    uri = f"sqlite:///{path}/mlflow.db"
    port = free_port()
    viewer = OmegaConf.create(
        {"host": "127.0.0.1", "port": port, "client_url": "http://client.invalid", "layout": "xy"}
    )
    box = BBox.parse("0:64,0:96,0:96")
    with open_volume(f"h5://{SAMPLE}#image") as image, open_volume(f"h5://{SAMPLE}#labels") as gt:
        em_image, em_labels = image.read(box), gt.read(box)
    result = SegmentationResult(
        labels=em_labels.astype(np.int32),
        offset=(0, 0, 0),
        voxel_size=(8.0, 8.0, 8.0),
        origins={},
        counters={},
    )
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("inference", artifact_location=str(path / "artifacts"))
    with mlflow.start_run(experiment_id=experiment) as run:
        link = publish_view(
            lambda folder: write_view_data(
                folder, em_image, result.labels, result.voxel_size, result.offset, meshes=True
            ),
            run.info.run_id,
            result.voxel_size,
            result.offset,
            result.labels.shape,
            viewer.host,
            viewer.port,
            viewer.client_url,
            viewer.layout,
        )
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    assert link.startswith("http://client.invalid/#!")
    return path, uri, run.info.run_id, port


@pytest.fixture(scope="module")
def serving(published: tuple[Path, str, str, int]) -> Iterator[str]:
    """`ffnops view RUN_ID` running in the background; yields its offline viewer URL."""
    path, uri, run_id, port = published
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ffnops",
            "view",
            run_id,
            f"tracking.tracking_uri={uri}",
            f"viewer.port={port}",
            "viewer.client_url=http://client.invalid/neuroglancer",
            "viewer.layout=xy",
            "timeout_s=300",
        ],
        cwd=path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("offline viewer: ") or time.monotonic() > deadline:
            break
    assert lines and lines[-1].startswith("offline viewer: "), "".join(lines)[-3000:]
    yield lines[-1].split(": ", 1)[1].strip()
    proc.terminate()
    proc.wait(timeout=30)


def test_run_data_is_served_read_only_to_its_clients(
    published: tuple[Path, str, str, int], serving: str
) -> None:
    _, _, run_id, port = published
    base = f"http://127.0.0.1:{port}/data/{run_id}"
    client = {"Origin": "http://client.invalid"}
    status, headers, body = fetch(f"{base}/segmentation/info", headers=client)
    assert status == 200 and b"compressed_segmentation" in body
    assert headers["Access-Control-Allow-Origin"] == "http://client.invalid"
    assert fetch(f"{base}/image/info", "OPTIONS", client)[0] == 204
    # A chunk never written is a 404 the client reads as empty: it keeps the CORS grant.
    status, headers, _ = fetch(f"{base}/segmentation/8_8_8/0-1_0-1_0-1", headers=client)
    assert status == 404 and headers["Access-Control-Allow-Origin"] == "http://client.invalid"
    # Another origin gets no CORS grant (its page cannot read the data) and no pre-flight.
    other = {"Origin": "http://elsewhere.invalid"}
    status, headers, _ = fetch(f"{base}/segmentation/info", headers=other)
    assert status == 200 and "Access-Control-Allow-Origin" not in headers
    assert fetch(f"{base}/image/info", "OPTIONS", other)[0] == 403
    # DNS rebinding: a name that is not this server's is refused, loopback's names are not.
    assert fetch(f"{base}/segmentation/info", headers={"Host": "rebound.invalid"})[0] == 403
    assert fetch(f"{base}/segmentation/info", headers={"Host": f"localhost:{port}"})[0] == 200
    assert fetch(f"{base}/segmentation/%00info")[0] == 400
    assert fetch(f"{base}/image/info", "POST")[0] == 405
    assert fetch(f"{base}/image/info", "PUT")[0] == 405
    for escape in ("/../../mlflow.db", "/%2e%2e/%2e%2e/mlflow.db", "/..%2F..%2Fmlflow.db"):
        assert fetch(base + escape)[0] in (403, 404), escape
    assert fetch(f"http://127.0.0.1:{port}/data/{'0' * 32}/image/info")[0] == 404


def test_published_link_describes_the_served_run(published: tuple[Path, str, str, int]) -> None:
    _, uri, run_id, port = published
    run = mlflow.MlflowClient(uri).get_run(run_id)
    state = neuroglancer.parse_url(run.data.tags["neuroglancer_url"])
    base = f"precomputed://http://127.0.0.1:{port}/data/{run_id}"
    assert [layer.source[0].url for layer in state.layers] == [
        f"{base}/image",
        f"{base}/segmentation",
    ]
    assert list(state.dimensions.scales) == pytest.approx([8e-9] * 3)  # nm, stored in metres
    assert list(state.position) == [48.0, 48.0, 32.0]  # x, y, z centre of the box
    # It opens with the largest objects selected, so the 3-D panel draws their meshes.
    folder = run_folder(uri, run_id) / SEGMENTATION_LAYER
    assert sorted(state.layers[SEGMENTATION_LAYER].segments) == sorted(largest_segments(folder, 10))
    assert run.data.metrics["mesh_objects"] > 10 and run.data.metrics["mesh_triangles"] > 0


def run_folder(uri: str, run_id: str) -> Path:
    """Where a run of the fixture's local store keeps its neuroglancer copy."""
    artifacts = mlflow.MlflowClient(uri).get_run(run_id).info.artifact_uri
    return Path(urllib.parse.urlparse(artifacts).path) / RUN_ARTIFACTS


@pytest.mark.skipif(not CAN_RENDER, reason=RENDER_REASON)
def test_the_3d_panel_draws_the_meshes_the_viewer_fetched(
    published: tuple[Path, str, str, int], tmp_path: Path
) -> None:
    _, uri, run_id, _ = published
    folder = run_folder(uri, run_id)
    segments = shown_segments(folder / SEGMENTATION_LAYER, 10)
    with open_volume(f"precomputed://{folder / SEGMENTATION_LAYER}") as seg:
        geometry = (seg.voxel_size, seg.offset, seg.shape)
    shots = {}
    with ViewServer({run_id: folder}) as server:
        for name, shown in (("empty", []), ("meshes", segments)):
            state = served_run_state(server.url, run_id, *geometry, "3d", segments=shown)
            viewer = open_viewer(state)
            server.allow_origin(viewer.get_viewer_url())
            (tmp_path / name).mkdir()
            ready = (lambda c, d: False) if not shown else (lambda c, d: c > 0.05)
            shots[name] = render(viewer.get_viewer_url(), tmp_path / name, 30, ready)
            if not shown:
                before = len(server.served)
    fetched = [p.rsplit("/", 1)[1] for p in server.served[before:] if "/mesh/" in p]
    # Each selected object's manifest, then its fragments (one block: one each), and no others.
    assert {f"{s}:0" for s in segments} <= set(fetched), fetched
    assert {int(f.split(":")[0]) for f in fetched if f.count(":") == 2} == set(segments)
    # The panel with meshes differs from the empty one (which draws the box's outline only)
    # over much of the screen's centre.
    empty, meshes = (pixels(tmp_path / name / "neuroglancer.png") for name in ("empty", "meshes"))
    changed = float((np.abs(meshes - empty).max(axis=-1) > 0.1).mean())
    assert changed > 0.2, f"no meshes drawn in the 3-D panel ({changed:.1%}); see {tmp_path}"
    assert shots["meshes"].coloured > 0.05 + shots["empty"].coloured
    assert not shots["meshes"].errors, shots["meshes"].errors


def pixels(png: Path) -> np.ndarray:
    """The screen's centre (as the browser helper measures it), RGB in [0, 1]."""
    import matplotlib.image

    rgb = matplotlib.image.imread(png)[..., :3]
    height, width = rgb.shape[:2]
    return np.asarray(rgb[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4])


@pytest.mark.skipif(not CAN_RENDER, reason=RENDER_REASON)
def test_link_renders_image_and_segmentation_in_a_browser(serving: str, tmp_path: Path) -> None:
    rendered = render(serving, tmp_path)
    assert rendered.coloured > 0.05, f"no segmentation colours on screen; see {tmp_path}"
    assert rendered.distinct > 150, f"no EM texture on screen; see {tmp_path}"
    assert not rendered.errors, rendered.errors


def test_view_server_on_another_address_warns_and_still_checks_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "info").write_text("{}")
    lab = ["ffnops.lab.example"]
    with ViewServer({"a": tmp_path}, host="0.0.0.0", allowed_hosts=lab) as server:
        assert "viewer.host=0.0.0.0 is not a loopback address" in capsys.readouterr().err
        url = f"http://127.0.0.1:{server.port}/data/a/info"
        assert fetch(url)[0] == 200
        assert fetch(url, headers={"Host": f"ffnops.lab.example:{server.port}"})[0] == 200
        assert fetch(url, headers={"Host": "rebound.invalid"})[0] == 403
        assert fetch(f"http://127.0.0.1:{server.port}/data/a/")[0] in (403, 404)  # no listing
    with ViewServer({"a": tmp_path}) as server:
        assert capsys.readouterr().err == ""


def test_view_server_refuses_a_port_in_use(tmp_path: Path) -> None:
    with (
        ViewServer({"a": tmp_path}) as server,
        pytest.raises(FfnopsError, match=f"cannot listen on 127.0.0.1:{server.port}"),
    ):
        ViewServer({"a": tmp_path}, port=server.port)


def test_in_memory_volume_is_served_by_neuroglancers_python_viewer(
    em_image: np.ndarray, em_labels: np.ndarray
) -> None:
    state = in_memory_state(em_image[:32, :32, :32], em_labels[:32, :32, :32], (8, 8, 8), (5, 0, 0))
    viewer = open_viewer(state)
    status, _, body = fetch(viewer.get_viewer_url())
    assert status == 200 and b"<html" in body.lower()
    assert [layer.name for layer in viewer.state.layers] == ["image", "segmentation"]
    assert list(viewer.state.position) == [16.0, 16.0, 21.0]  # x, y, z: offset 5 in z


@pytest.mark.skipif(not CAN_RENDER, reason=RENDER_REASON)
def test_an_in_memory_volume_draws_its_largest_objects_in_3d(
    em_labels: np.ndarray, tmp_path: Path
) -> None:
    # `ffnops view URI` selects the largest objects; neuroglancer's Python viewer meshes them.
    labels = em_labels[:32, :48, :48]
    sizes = object_sizes(labels)
    largest = sorted(sizes, key=lambda s: -sizes[s])[:5]
    screens = {}
    for name, shown in (("empty", []), ("meshes", largest)):
        state = in_memory_state(None, labels, (8, 8, 8), (0, 0, 0), "3d", shown)
        viewer = open_viewer(state)
        (tmp_path / name).mkdir()
        ready = (lambda c, d: False) if not shown else (lambda c, d: c > 0.05)
        shot = render(viewer.get_viewer_url(), tmp_path / name, 30, ready)
        screens[name] = (shot, pixels(tmp_path / name / "neuroglancer.png"))
    (empty, before), (meshes, after) = screens["empty"], screens["meshes"]
    changed = float((np.abs(after - before).max(axis=-1) > 0.1).mean())
    assert changed > 0.1, f"no meshes drawn in the 3-D panel ({changed:.1%}); see {tmp_path}"
    assert meshes.coloured > 0.05 + empty.coloured
    assert not meshes.errors, meshes.errors


def test_view_of_a_volume_uri_and_of_an_unknown_run(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable, "-m", "ffnops", "view", f"h5://{SAMPLE}#labels",
            f"image=h5://{SAMPLE}#image", "bbox=0:32,0:64,0:64", "timeout_s=1",
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "offline viewer: http://127.0.0.1:" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "ffnops", "view", "0" * 32, "timeout_s=1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert f"no MLflow run {'0' * 32} in sqlite:///mlflow.db" in proc.stderr


def test_view_latest_picks_the_newest_inference_run(
    published: tuple[Path, str, str, int], tmp_path: Path
) -> None:
    _, uri, run_id, _ = published
    proc = subprocess.run(
        [sys.executable, "-m", "ffnops", "view", "latest", f"tracking.tracking_uri={uri}",
         "viewer.port=0", "timeout_s=1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"serving run {run_id} " in proc.stdout
