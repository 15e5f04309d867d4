"""FFN inference speed: a full ffnops step against a bare forward pass of the same model.

Model: Google's released FIB-25 checkpoint (depth 12, 32 features, FOV 33^3, deltas 8^3), bundled
with ffnops, with Google's inference request. Image: FIB-25 ``training_sample2`` z, y, x in
[0, 100)^3 from the FIB-25 data folder (``--image`` for another HDF5 URI; without that folder the
bundled crop's [0, 100)^3 is used, which is other data and says so).

For each precision (``--precisions fp32,bf16``; fp32 is the faithful default, bf16 the fast mode):

* **bare forward**: ``model(x)`` on one real (1, 2, 33, 33, 33) FOV input, in the same layout
  (``channels_last_3d``) and autocast as ffnops uses, under ``torch.inference_mode``: the lower
  bound of a step. Timed ``--forwards`` times before and after the run; the median is used.
* **ffnops step**: the whole inference loop (``Canvas.segment_all`` driven by ``run_canvas`` with
  ``TorchPredictor``: FOV extraction, the network call, the logit write-back, face-max movement,
  seed checks) divided by its network calls. ``--max-calls N`` stops after N calls (a prefix of
  the run) where a full run would take too long (bf16 without AVX512-BF16/AMX is slower than
  fp32); quality is then not reported.

It prints ms per step, FOV steps/s, segmented voxels/s, the step / bare-forward ratio (target:
<= 1.10 fp32, <= 1.15 bf16), and for complete runs with ground truth (labels exist for z < 175)
adapted Rand error, VOI split/merge and object counts, plus the number of voxels that differ from
fp32, so the fast mode's quality is measured, not assumed. ``bf16-emulated`` runs fp32 arithmetic
rounded where bf16 autocast rounds (see ``emulate_bf16``): bf16's segmentation on CPUs without
AVX512-BF16/AMX, where real bf16 is emulated by oneDNN and about 50x slower than fp32 (its speed
there means nothing). Google's own TF code is not run here
(no TensorFlow); measured on these machines, its step took 94 ms (AMD EPYC with AVX-512) and
134 ms (Intel Xeon with AMX) -- compare with care: the CPU differs by day.

Run::

    python benchmarks/inference.py [--precisions fp32,bf16] [--max-calls N] [--forwards 10]
                                   [--threads N] [--box 0:100,0:100,0:100]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from datasets import FIB25_IMAGE, FIB25_LABELS
from machine import cpu_model, library_versions, load_average

from ffnops.ffn.canvas import Canvas, run_canvas
from ffnops.ffn.metrics import score_segmentation
from ffnops.ffn.options import InferenceOptions
from ffnops.ffn.predictor import TorchPredictor
from ffnops.ffn.seeds import peak_seeds
from ffnops.interop.google import model_from_checkpoint
from ffnops.interop.inference_request import read_request, request_settings
from ffnops.interop.tf_checkpoint import read_checkpoint
from ffnops.sample_data import (
    GOOGLE_FIB25_CHECKPOINT,
    GOOGLE_FIB25_CROP100,
    GOOGLE_FIB25_REQUEST,
    sample_path,
)
from ffnops.volume import BBox
from ffnops.volumes import open_volume

TARGETS = {"fp32": 1.10, "bf16": 1.15}
GOOGLE_CROP100 = GOOGLE_FIB25_CROP100 / "segmentation.npz"  # Google's own fp32 run of the crop


def to_bf16(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to(torch.bfloat16).to(torch.float32)


def emulate_bf16(model: torch.nn.Module) -> torch.nn.Module:
    """fp32 arithmetic with bf16 autocast's rounding points: every Conv3d's input, weights, bias
    and output and every residual sum are rounded to bfloat16 (accumulation stays fp32, as
    oneDNN's). Gives bf16's *numbers* on CPUs where real bf16 is emulated and 50x slow."""
    for module in model.modules():
        if isinstance(module, torch.nn.Conv3d):
            with torch.no_grad():
                module.weight.copy_(to_bf16(module.weight))
                if module.bias is not None:
                    module.bias.copy_(to_bf16(module.bias))
            module.register_forward_pre_hook(lambda _m, args: (to_bf16(args[0]),))
            module.register_forward_hook(lambda _m, _args, out: to_bf16(out))
        elif type(module).__name__ == "ResidualModule":
            module.register_forward_hook(lambda _m, _args, out: to_bf16(out))
    return model


class Stop(Exception):
    """Raised by the counting predictor after ``--max-calls`` network calls."""


class Counting:
    """Wraps a predictor; stops the run after ``limit`` calls (0: never)."""

    def __init__(self, predict: TorchPredictor, limit: int) -> None:
        self.predict, self.limit, self.calls = predict, limit, 0

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        if self.limit and self.calls >= self.limit:
            raise Stop
        self.calls += 1
        return self.predict(inputs)


def bare_forward_ms(predictor: TorchPredictor, fov_input: np.ndarray, repeats: int) -> float:
    """Median ms of ``model(x)`` alone, x already a tensor in the predictor's layout."""
    x = torch.from_numpy(fov_input)
    if predictor.channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    times = []
    with (
        torch.inference_mode(),
        torch.autocast("cpu", torch.bfloat16, enabled=predictor.precision == "bf16"),
    ):
        predictor.model(x)  # warm-up (oneDNN picks its kernels)
        for _ in range(repeats):
            start = time.perf_counter()
            predictor.model(x)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def load_data(box: BBox, image_uri: str | None) -> tuple[np.ndarray, np.ndarray | None, str]:
    if image_uri is None and FIB25_IMAGE.exists():
        image_uri = f"h5://{FIB25_IMAGE.resolve()}#raw"
        label_uri: str | None = f"h5://{FIB25_LABELS.resolve()}#stack"
    elif image_uri is None:
        image_uri = f"h5://{sample_path('fib25_crop.h5')}#image"
        label_uri = f"h5://{sample_path('fib25_crop.h5')}#labels"
    else:
        label_uri = None
    with open_volume(image_uri) as volume:
        raw = np.asarray(volume.read(box))
    labels = None
    if label_uri:
        with open_volume(label_uri) as volume:
            labels = np.asarray(volume.read(box))
    return raw, labels, image_uri


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--max-calls", type=int, default=0)
    parser.add_argument("--forwards", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--box", default="0:100,0:100,0:100")
    parser.add_argument("--image", default=None, help="volume URI (default: FIB-25 sample 2)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    box = BBox.parse(args.box)
    raw, labels, image_uri = load_data(box, args.image)
    request = request_settings(read_request(GOOGLE_FIB25_REQUEST))
    options = InferenceOptions(
        **{k: v for k, v in request.items() if k not in ("image_mean", "image_stddev")}
    )
    image = (raw.astype(np.float32) - np.float32(128)) / np.float32(33)
    variables = read_checkpoint(GOOGLE_FIB25_CHECKPOINT)
    seeds_canvas = Canvas(image, (33, 33, 33), (8, 8, 8), options)
    seeds = peak_seeds(image, seeds_canvas.fov_radius)
    centre = tuple(n // 2 for n in image.shape)
    fov_input = np.stack(
        [
            image[tuple(slice(c - 16, c + 17) for c in centre)],
            np.full((33, 33, 33), 0.05, np.float32),
        ]
    )[None]

    print(f"CPU: {cpu_model()}, {torch.get_num_threads()} threads; load {load_average()}")
    print(library_versions("ffnops", "torch", "numpy"))
    print(f"image {image_uri} [{box}], {len(seeds)} seeds, Google's checkpoint and request")
    rows, results = [], {}
    for precision in args.precisions.split(","):
        model = model_from_checkpoint(variables)
        if precision == "bf16-emulated":
            model = emulate_bf16(model)
        predictor = TorchPredictor(
            model, "cpu", "bf16" if precision == "bf16" else "fp32", channels_last=True
        )
        before = bare_forward_ms(predictor, fov_input, args.forwards)
        canvas = Canvas(image, (33, 33, 33), (8, 8, 8), options)
        counting = Counting(predictor, args.max_calls)
        start = time.perf_counter()
        complete = True
        try:
            run_canvas(canvas.segment_all(seeds), counting)
        except Stop:
            complete = False
        seconds = time.perf_counter() - start
        after = bare_forward_ms(predictor, fov_input, args.forwards)
        bare = statistics.median([before, after])
        step = 1000 * seconds / max(counting.calls, 1)
        rows.append(
            (
                precision,
                bare,
                step,
                step / bare,
                1000 / step,
                canvas.counters.voxels_segmented / seconds,
                counting.calls,
                "all" if complete else "prefix",
            )
        )
        if complete:
            results[precision] = canvas.final_segmentation()
        print(f"  {precision}: {counting.calls} calls in {seconds:.1f} s", flush=True)

    print()
    print(
        f"{'mode':<6} {'bare fwd ms':>11} {'step ms':>8} {'step/bare':>9} {'FOV steps/s':>11} "
        f"{'voxels/s':>9} {'calls':>6} {'run':>6}  result"
    )
    for precision, bare, step, ratio, rate, voxels, calls, run in rows:
        verdict = "PASS" if ratio <= TARGETS.get(precision, 1.10) else "FAIL"
        print(
            f"{precision:<6} {bare:11.1f} {step:8.1f} {ratio:9.3f} {rate:11.2f} {voxels:9.0f} "
            f"{calls:6d} {run:>6}  {verdict} (target <= {TARGETS.get(precision, 1.10):.2f})"
        )
    if labels is not None and results:
        print()
        print(f"quality against ground truth, [{box}] (labels of z < 175 only)")
        print(f"{'mode':<6} {'ARAND':>7} {'VOI split':>9} {'VOI merge':>9} {'objects':>7}  vs fp32")
        fp32 = results.get("fp32")
        if fp32 is None and args.box == "0:100,0:100,0:100" and GOOGLE_CROP100.exists():
            with np.load(GOOGLE_CROP100, allow_pickle=False) as google:
                fp32 = google["segmentation"]  # Google's fp32 run, identical to ours
        for precision, seg in results.items():
            scores = score_segmentation(seg, labels)
            differ = int((seg != fp32).sum()) if fp32 is not None else -1
            print(
                f"{precision:<6} {scores.adapted_rand_error:7.3f} {scores.voi_split:9.3f} "
                f"{scores.voi_merge:9.3f} {len(np.unique(seg)) - 1:7d}  {differ} voxels differ"
            )
    print(f"load after: {load_average()}")


if __name__ == "__main__":
    main()
