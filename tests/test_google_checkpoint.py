"""Google's released FIB-25 checkpoint: read without TensorFlow, imported, and faithful.

Everything these tests need ships with ffnops (``ffnops/sample_data``): the checkpoint and its
request, the FIB-25 crop, and Google's own segmentation of its [0, 100)^3 corner with each object's
seed and step count (``google_fib25/reference_crop100``), so they run on any machine.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import h5py
import mlflow
import numpy as np
import pytest
import torch
from commands import ffnops
from numpy.lib.stride_tricks import sliding_window_view
from skimage.metrics import adapted_rand_error

from ffnops.errors import FfnopsError
from ffnops.ffn.canvas import Canvas, run_canvas
from ffnops.ffn.options import InferenceOptions
from ffnops.ffn.predictor import TorchPredictor
from ffnops.ffn.seeds import peak_seeds
from ffnops.interop.google import model_from_checkpoint
from ffnops.interop.inference_request import (
    RequestModel,
    parse_request,
    read_request,
    request_model,
    request_settings,
)
from ffnops.interop.tf_checkpoint import CheckpointError, read_checkpoint, read_index
from ffnops.sample_data import (
    GOOGLE_FIB25_CHECKPOINT,
    GOOGLE_FIB25_CROP100,
    GOOGLE_FIB25_REQUEST,
    sample_path,
)
from ffnops.tracking.registry import load_registered_model

PREFIX = GOOGLE_FIB25_CHECKPOINT
REQUEST = GOOGLE_FIB25_REQUEST


def test_bundled_files_are_googles() -> None:
    sums = (PREFIX.parent / "SHA256SUMS").read_text().split()
    expected = dict(zip(sums[1::2], sums[::2], strict=True))
    assert set(expected) == {p.name for p in (*PREFIX.parent.glob(f"{PREFIX.name}.*"), REQUEST)}
    for name, digest in expected.items():
        assert hashlib.sha256((PREFIX.parent / name).read_bytes()).hexdigest() == digest, name


def test_index_lists_the_variables_where_the_spec_says() -> None:
    index = read_index(PREFIX)
    assert index["global_step"].offset == 48 and index["global_step"].dtype == np.int32
    weights = index["seed_update/conv0_a/weights"]
    assert weights.shape == (3, 3, 3, 2, 32) and weights.offset == 180
    assert index["seed_update/conv_lom/weights"].offset == 2_553_656
    variables = read_checkpoint(PREFIX)
    assert int(variables["global_step"]) == 27_465_036
    model = model_from_checkpoint(variables)
    assert model.depth == 12 and sum(p.numel() for p in model.parameters()) == 638_433


def numpy_convstack(variables: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The same network computed independently: zero-padded 3x3x3 correlation with einsum,
    channels last, TensorFlow's weight layout as stored."""

    def conv(v: np.ndarray, name: str) -> np.ndarray:
        w, b = variables[f"seed_update/{name}/weights"], variables[f"seed_update/{name}/biases"]
        k = w.shape[0] // 2
        padded = np.pad(v, [(k, k)] * 3 + [(0, 0)])
        windows = sliding_window_view(padded, w.shape[:3], axis=(0, 1, 2))  # z,y,x,c,kz,ky,kx
        return np.einsum("zyxcabd,abdco->zyxo", windows, w, optimize=True) + b

    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    h = conv(relu(conv(x, "conv0_a")), "conv0_b")
    for i in range(1, 12):
        h = h + conv(relu(conv(relu(h), f"conv{i}_a")), f"conv{i}_b")
    return x[..., 1:2] + conv(relu(h), "conv_lom")


def test_forward_matches_an_independent_numpy_computation() -> None:
    variables = {k: v.astype(np.float64) for k, v in read_checkpoint(PREFIX).items()}
    model = model_from_checkpoint(read_checkpoint(PREFIX)).double()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(9, 10, 11, 2))
    expected = numpy_convstack(variables, x)[..., 0]
    with torch.no_grad():
        actual = model(torch.from_numpy(x.transpose(3, 0, 1, 2)[None].copy()))[0, 0].numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=1e-9)


def test_bad_checkpoints_are_named(tmp_path: Path) -> None:
    (tmp_path / "x.index").write_bytes(b"not a table" * 10)
    with pytest.raises(CheckpointError, match="not a TensorFlow checkpoint index"):
        read_index(tmp_path / "x")
    variables = read_checkpoint(PREFIX)
    with pytest.raises(CheckpointError, match="asked for depth 9, the checkpoint has depth 12"):
        model_from_checkpoint(variables, depth=9)
    del variables["seed_update/conv3_b/weights"]
    with pytest.raises(
        CheckpointError, match=r"conv3_b/weights is missing \(expected shape \(3, 3, 3, 32, 32\)\)"
    ):
        model_from_checkpoint(variables)
    with pytest.raises(CheckpointError, match="no seed_update/conv"):
        model_from_checkpoint({"global_step": np.int32(1)})


def corrupt_copy(tmp_path: Path, suffix: str, byte: int) -> Path:
    """A copy of the bundled checkpoint with one bit of ``byte`` in its ``suffix`` file flipped."""
    tmp_path.mkdir()
    for source in PREFIX.parent.glob(f"{PREFIX.name}.*"):
        data = bytearray(source.read_bytes())
        if source.name.endswith(suffix):
            data[byte] ^= 0x04
        (tmp_path / source.name).write_bytes(bytes(data))
    return tmp_path / PREFIX.name


def test_one_flipped_bit_is_refused(tmp_path: Path) -> None:
    conv3 = read_index(PREFIX)["seed_update/conv3_a/weights"]
    weights = corrupt_copy(tmp_path / "data", ".data-00000-of-00001", conv3.offset + 1000)
    with pytest.raises(CheckpointError, match=r"conv3_a/weights fails its CRC32C check"):
        read_checkpoint(weights)
    index = corrupt_copy(tmp_path / "index", ".index", 200)
    with pytest.raises(CheckpointError, match=r"table block at byte \d+ fails its CRC32C check"):
        read_index(index)


def test_import_refuses_a_corrupt_checkpoint_and_contradicting_options(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    conv3 = read_index(PREFIX)["seed_update/conv3_a/weights"]
    corrupt = corrupt_copy(tmp_path / "ckpt", ".data-00000-of-00001", conv3.offset + 1000)
    cases = {
        "CRC32C check": [str(corrupt), "model_name=m", f"tracking.tracking_uri={uri}"],
        "depth 8, the checkpoint has depth 12": [
            str(PREFIX), "model_name=m", "depth=8", f"tracking.tracking_uri={uri}"
        ],
        "image_mean=100.0 (the request has 128.0)": [
            "google", "model_name=m", "image_mean=100", f"tracking.tracking_uri={uri}"
        ],
    }  # fmt: skip
    for expected, args in cases.items():
        proc = ffnops("import-checkpoint", *args, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert expected in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert mlflow.MlflowClient(uri).search_registered_models() == []


def test_request_is_parsed_as_protobuf_text_format() -> None:
    request = parse_request(
        textwrap.dedent(
            """\
            # a comment, then a string holding a '#' and an escaped quote
            seed_policy: "PolicyPeaks"  # trailing comment
            model_checkpoint_path: "runs/#3/\\"best\\".ckpt"
            model_args: "{\\"depth\\": 9, \\"fov_size\\": [17, 25, 33], \\"deltas\\": [2, 4, 6]}"
            image { hdf5: "a.h5:raw" }
            inference_options {
              min_boundary_dist { x: 1 y: 2 z: 3 }
              init_activation: 0.95
            }
            """
        ),
        "r.pbtxt",
    )
    assert request.model_checkpoint_path == 'runs/#3/"best".ckpt'
    # Google's vectors are (x, y, z): asymmetric values show each axis lands where it belongs.
    assert request_model(request, "r.pbtxt") == RequestModel([33, 25, 17], [6, 4, 2], 9)
    settings = request_settings(request, "r.pbtxt")
    assert settings == {
        "init_activation": 0.95,
        "min_boundary_dist": [3, 2, 1],
        "seed_policy": "peaks",
    }
    with pytest.raises(FfnopsError, match=r'r.pbtxt: 2:1 .*no field named "movement"'):
        parse_request("image_mean: 1\nmovement: 2\n", "r.pbtxt")
    with pytest.raises(FfnopsError, match=r"r\.pbtxt: masks is set, and ffnops does not implement"):
        request_settings(parse_request("masks { invert: true }", "r.pbtxt"), "r.pbtxt")
    with pytest.raises(FfnopsError, match="consistency_threshold is set"):
        request_settings(
            parse_request("inference_options { consistency_threshold: 0.1 }"), "r.pbtxt"
        )
    with pytest.raises(FfnopsError, match="seed_policy 'PolicyMax' is not one ffnops implements"):
        request_settings(parse_request('seed_policy: "PolicyMax"'), "r.pbtxt")


def test_request_maps_to_zyx_settings() -> None:
    settings = request_settings(read_request(REQUEST))
    assert settings == {
        "init_activation": 0.95,
        "pad_value": 0.05,
        "move_threshold": 0.9,
        "segment_threshold": 0.6,
        "min_segment_size": 1000,
        "min_boundary_dist": [1, 1, 1],
        "image_mean": 128.0,
        "image_stddev": 33.0,
        "seed_policy": "peaks",
    }


GOOGLE_SETTINGS = (
    "init_activation",
    "pad_value",
    "move_threshold",
    "segment_threshold",
    "min_segment_size",
    "min_boundary_dist",
)


def crop100_image() -> np.ndarray:
    """FIB-25 ``training_sample2`` [0, 100)^3 (the bundled crop's corner), normalised as
    Google's request says."""
    with h5py.File(sample_path("fib25_crop.h5"), "r") as f:
        raw = f["image"][:100, :100, :100]
    return (raw.astype(np.float32) - np.float32(128)) / np.float32(33)


def googles_crop100() -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Google's own segmentation of the crop and, per object, its seed, FFN steps and size."""
    reference = GOOGLE_FIB25_CROP100
    google = np.load(reference / "segmentation.npz", allow_pickle=False)["segmentation"]
    return google.astype(np.int32), json.loads((reference / "origins.json").read_text())["objects"]


def test_peak_seeds_propose_googles_seeds_in_googles_order() -> None:
    image = crop100_image()
    radius = Canvas(image, (33, 33, 33), (8, 8, 8), InferenceOptions()).fov_radius
    seeds = [tuple(int(c) for c in s) for s in peak_seeds(image, radius)]
    _, objects = googles_crop100()
    where = [seeds.index(tuple(o["seed_zyx"])) for o in objects]
    assert where == sorted(where), "Google's objects come from our seeds in another order"


# Objects whose floods are short (113 FFN steps in all); the crop's other four take 723 steps,
# run by the slow whole-crop test below.
REPLAYED_OBJECTS = (3, 4, 5, 6, 9, 10)


@pytest.mark.parametrize("object_id", REPLAYED_OBJECTS)
def test_imported_model_floods_googles_objects(object_id: int) -> None:
    """Each object replayed on Google's canvas as it stood before that object (its earlier
    objects in place, as the Canvas of google/ffn's ffn/inference/inference.py keeps them): the
    same seed must flood the same voxels in the same number of steps. Objects only see the
    segmentation left by earlier seeds, so this checks flood, movement, thresholds, acceptance
    and the network on Google's own output, per object, in a CI-sized budget."""
    google, objects = googles_crop100()
    expected = objects[object_id - 1]
    assert expected["id"] == object_id
    settings = request_settings(read_request(REQUEST))
    options = InferenceOptions(**{k: settings[k] for k in GOOGLE_SETTINGS})
    model = model_from_checkpoint(read_checkpoint(PREFIX))
    canvas = Canvas(crop100_image(), model.fov_size, model.deltas, options)
    earlier = (google > 0) & (google < object_id)
    canvas.segmentation[earlier] = 1000 + google[earlier]  # ids apart from the new object's
    run_canvas(canvas.try_seed(tuple(expected["seed_zyx"])), TorchPredictor(model))
    assert canvas.counters.objects == 1, "the seed was rejected; Google made an object of it"
    (origin,) = canvas.origins.values()
    assert abs(origin.iters - expected["iters"]) <= max(1, 0.02 * expected["iters"])
    ours = canvas.segmentation == next(iter(canvas.origins))
    assert (canvas.segmentation[earlier] == 1000 + google[earlier]).all()
    theirs = google == object_id
    iou = (ours & theirs).sum() / (ours | theirs).sum()
    assert iou >= 0.99, f"object {object_id}: IoU {iou:.4f} with Google's"


def test_imported_model_reproduces_googles_crop100(tmp_path: Path) -> None:
    """Google's own run on z, y, x in [0, 100)^3: same objects from the same seeds."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ffnops",
            "import-checkpoint",
            str(PREFIX),
            "model_name=google_fib25",
            "alias=baseline",
            f"request={REQUEST}",
            f"tracking.tracking_uri={uri}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "INFO" not in proc.stderr, proc.stderr  # MLflow's table creation is not our output
    registered = load_registered_model(uri, "models:/google_fib25@baseline")
    model = registered.model
    version = mlflow.MlflowClient(uri).get_model_version_by_alias("google_fib25", "baseline")
    assert version.tags["ffnops.global_step"] == "27465036"
    # The request's options are the version's defaults, as `ffnops infer` reads them.
    settings = registered.settings.inference_options()
    assert set(GOOGLE_SETTINGS) | {"seed_policy"} <= set(settings)
    image = crop100_image()
    canvas = Canvas(image, model.fov_size, model.deltas, InferenceOptions(**settings))
    run_canvas(canvas.segment_all(peak_seeds(image, canvas.fov_radius)), TorchPredictor(model))
    google, objects = googles_crop100()
    ours = canvas.final_segmentation()
    error = adapted_rand_error(google.astype(np.int64), ours.astype(np.int64), ignore_labels=())[0]
    assert error <= 0.01
    assert abs(canvas.counters.network_calls - 840) <= 0.02 * 840
    assert len(canvas.origins) == len(objects)
    for expected in objects:
        origin = canvas.origins[expected["id"]]
        assert list(origin.start) == expected["seed_zyx"]
        assert abs(origin.iters - expected["iters"]) <= max(2, 0.02 * expected["iters"])
        assert (
            abs(int((ours == expected["id"]).sum()) - expected["voxels"])
            <= 0.01 * expected["voxels"]
        )
