"""Whole-volume speed on a GPU: fp32 (TF32 off), bf16 and batched canvases, against Google's
published segmentation, in one run of under 8 minutes on one H100.

Model: Google's released FIB-25 checkpoint (bundled with ffnops) and its inference request. Image:
all of FIB-25 ``training_sample2`` (250^3, ``FFNOPS_FIB25_DIR``, benchmarks/datasets.py);
reference: Google's own segmentation of it, google/ffn's ``results/fib25/sample-training2.npz``
(``FFNOPS_GOOGLE_FIB25_DIR``). Each mode segments the whole box through ffnops's own code paths:

* ``fp32`` and ``bf16``: one canvas (``ffnops.inference.runner.segment_box``), as ``ffnops infer``
  with ``executor=gpu executor.block_size=null``; fp32 with TF32 off, so it is Google's
  arithmetic, and its segmentation should be Google's (ARAND near 0).
* ``<precision>-batch<N>`` (e.g. ``bf16-batch8``): blocks of ``--block`` voxels, N canvases
  sharing every network call, stitched to global ids (``ffnops.inference.blockwise``, the local
  executor), as ``executor=gpu``. This is what fills a GPU: target 250^3 in <= 30 s on one H100.

Per mode it prints seconds, network calls (for batched modes FOV steps / N, a lower bound: a
batch runs part-full when fewer canvases are left), ms per call and per FOV step, voxels/s
(voxels of the box per second) and the adapted Rand error / VOI against the reference (every voxel,
background included, as benchmarks/google_full_volume.py), plus the whole run's wall time
against the 8-minute budget. ``--tiny`` runs the same modes with ffnops's oracle network (FOV
9^3, it reads the labels as its image) on a volume you give: how the tests run this script on
a CPU in seconds.

On a GPU machine without a package index, carry wheels made here:
``pip download -d wheels/ ffnops-deps...`` then ``pip install --no-index -f wheels/ -e .``.

Run::

    python benchmarks/gpu.py [--device cuda] [--modes fp32,bf16,bf16-batch8] [--block 128]
        [--image h5://...#raw --reference seg.npz] [--box 0:250,0:250,0:250] [--tiny]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from datasets import FIB25_IMAGE, GOOGLE_SEGMENTATION, need
from machine import cpu_model, library_versions
from skimage.metrics import adapted_rand_error, variation_of_information

from ffnops.blocks import BlockLayout
from ffnops.config.schemas import ExecutorConfig
from ffnops.executor import make_executor
from ffnops.ffn.model_settings import ModelSettings
from ffnops.ffn.options import InferenceOptions
from ffnops.ffn.oracle import OracleFFN
from ffnops.inference.blockwise import BlockwiseJob, run_blockwise
from ffnops.inference.request import BoxRequest, DeviceSettings
from ffnops.inference.runner import segment_box
from ffnops.interop.google import model_from_checkpoint
from ffnops.interop.inference_request import read_request, request_settings
from ffnops.interop.tf_checkpoint import read_checkpoint
from ffnops.sample_data import GOOGLE_FIB25_CHECKPOINT, GOOGLE_FIB25_REQUEST
from ffnops.volume import BBox, VolumeSpec
from ffnops.volumes import box_of, create_volume, open_volume

BUDGET_S = 480.0  # the whole run, all modes
TARGET_BATCHED_S = 30.0  # 250^3 with batched canvases on one H100


@dataclass(frozen=True)
class Mode:
    """``fp32``, ``bf16``, or either with ``-batch<N>`` (blocks, N canvases a call)."""

    name: str
    precision: str
    batch: int  # 0: one canvas

    @classmethod
    def parse(cls, name: str) -> Mode:
        precision, _, batch = name.partition("-batch")
        if precision not in ("fp32", "bf16") or (batch and not batch.isdigit()):
            raise SystemExit(f"--modes: {name!r} is not fp32, bf16 or <precision>-batch<N>")
        return cls(name, precision, int(batch or 0))


@dataclass(frozen=True)
class Result:
    mode: Mode
    seconds: float
    calls: int
    steps: int
    arand: float
    voi_split: float
    voi_merge: float
    objects: int


def google_request(image_uri: str, box: BBox, device: DeviceSettings) -> BoxRequest:
    """Google's FIB-25 checkpoint and request over ``box`` of ``image_uri``."""
    settings = request_settings(read_request(GOOGLE_FIB25_REQUEST))
    options = InferenceOptions(
        **{k: v for k, v in settings.items() if k not in ("image_mean", "image_stddev")}
    )
    model = model_from_checkpoint(read_checkpoint(GOOGLE_FIB25_CHECKPOINT))
    geometry = ModelSettings((33, 33, 33), (8, 8, 8))
    mean, stddev = settings["image_mean"], settings["image_stddev"]
    return BoxRequest(model, geometry, options, image_uri, box, mean, stddev, device=device)


def oracle_request(image_uri: str, box: BBox, device: DeviceSettings) -> BoxRequest:
    """The oracle network (FOV 9^3, deltas 2) reading ``image_uri``'s labels as its image."""
    options = InferenceOptions(min_segment_size=20, seed_policy="grid")
    geometry = ModelSettings((9, 9, 9), (2, 2, 2))
    return BoxRequest(OracleFFN(9, 2), geometry, options, image_uri, box, 0.0, 1.0, device=device)


def one_canvas(request: BoxRequest) -> tuple[npt.NDArray[np.integer], int]:
    result, _ = segment_box(request)
    return result.labels, int(result.counters["network_calls"])


def batched(request: BoxRequest, block: int, batch: int, workdir: Path) -> tuple[np.ndarray, int]:
    """Blocks of ``block``^3, ``batch`` canvases per call, stitched: the labels and FOV steps."""
    layout = BlockLayout.plan(request.box, [block] * 3, request.settings.fov_size, [8, 8, 8])
    job = BlockwiseJob(request, layout, workdir / "work")
    uri = f"zarr://{workdir / 'labels.zarr'}"
    spec = VolumeSpec(request.box.size, "uint64", chunks=layout.write_chunks(), kind="segmentation")
    output = create_volume(uri, spec)
    assert output.shared_uri is not None
    executor = make_executor(ExecutorConfig(name="local", batch_size=batch))
    summary = run_blockwise(job, executor, output.shared_uri, batch, lambda *_: None)
    output.commit()
    with open_volume(uri) as volume:
        labels = np.asarray(volume.read())
    return labels, int(summary.counters["network_calls"])


def score(ours: npt.NDArray[np.integer], reference: npt.NDArray[np.integer]) -> tuple[float, ...]:
    ours, reference = ours.astype(np.int64), reference.astype(np.int64)
    arand = adapted_rand_error(reference, ours, ignore_labels=())[0]
    split, merge = variation_of_information(reference.ravel(), ours.ravel())
    return float(arand), float(split), float(merge)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--modes", default="fp32,bf16,bf16-batch8")
    parser.add_argument("--block", type=int, default=128, help="block edge of batched modes")
    parser.add_argument("--image", default=None, help="image URI (default: FIB-25 sample 2)")
    parser.add_argument("--reference", default=None, help="npz with 'segmentation' to score")
    parser.add_argument("--box", default=None, help="z0:z1,y0:y1,x0:x1 (default: all)")
    parser.add_argument("--tiny", action="store_true", help="oracle network: a CPU test")
    args = parser.parse_args()
    modes = [Mode.parse(m) for m in args.modes.split(",")]
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: no CUDA device here; --device cpu runs on CPU")
    image = args.image or f"h5://{need(FIB25_IMAGE, 'FFNOPS_FIB25_DIR').resolve()}#raw"
    reference_file = Path(args.reference or need(GOOGLE_SEGMENTATION, "FFNOPS_GOOGLE_FIB25_DIR"))
    with np.load(reference_file, allow_pickle=False) as data:
        reference = data["segmentation"]
    with open_volume(image) as volume:
        box = box_of(volume, args.box, "--box")
    if reference.shape != box.size:
        raise SystemExit(f"{reference_file}: segmentation {reference.shape}, box {box.shape}")
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else cpu_model()
    print(f"device {args.device}: {name}; {library_versions('ffnops', 'torch')}")
    print(f"image {image} [{box}] ({box.num_voxels:,} voxels), reference {reference_file}")
    make = oracle_request if args.tiny else google_request
    started, results = time.perf_counter(), []
    for mode in modes:
        device = DeviceSettings(args.device, mode.precision, channels_last=True)
        request = make(image, box, device)
        synchronize(args.device)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as workdir:
            if mode.batch:
                labels, steps = batched(request, args.block, mode.batch, Path(workdir))
                calls = -(-steps // mode.batch)  # at least (a batch may run part-full)
            else:
                labels, steps = one_canvas(request)
                calls = steps
        synchronize(args.device)
        seconds = time.perf_counter() - start
        objects = len(np.unique(labels[labels > 0]))
        results.append(Result(mode, seconds, calls, steps, *score(labels, reference), objects))
        print(f"  {mode.name}: {seconds:.1f} s", flush=True)
    total = time.perf_counter() - started
    print()
    print(
        f"{'mode':<14} {'seconds':>8} {'calls':>7} {'ms/call':>8} {'FOV steps':>9} "
        f"{'ms/step':>8} {'voxels/s':>10} {'ARAND':>8} {'VOI split':>9} {'VOI merge':>9} "
        f"{'objects':>7}"
    )
    for r in results:
        print(
            f"{r.mode.name:<14} {r.seconds:8.1f} {r.calls:7d} {1000 * r.seconds / r.calls:8.2f} "
            f"{r.steps:9d} {1000 * r.seconds / r.steps:8.2f} {box.num_voxels / r.seconds:10.0f} "
            f"{r.arand:8.4f} {r.voi_split:9.4f} {r.voi_merge:9.4f} {r.objects:7d}"
        )
    for r in results:
        if r.mode.batch and not args.tiny:
            verdict = "PASS" if r.seconds <= TARGET_BATCHED_S else "FAIL"
            print(f"{r.mode.name}: {r.seconds:.1f} s, {verdict} (target <= {TARGET_BATCHED_S} s)")
    verdict = "PASS" if total <= BUDGET_S else "FAIL"
    print(f"whole run {total:.0f} s, {verdict} (budget {BUDGET_S:.0f} s)")


if __name__ == "__main__":
    main()
