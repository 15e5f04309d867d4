"""FFN inference speed: a full ffnops step against a bare forward pass of the same model.

Model: Google's released FIB-25 checkpoint (depth 12, 32 features, FOV 33^3, deltas 8^3), bundled
with ffnops, with Google's inference request. Image: FIB-25 ``training_sample2`` z, y, x in
[0, 100)^3 from the FIB-25 data folder (``--image`` for another HDF5 URI; without that folder the
bundled crop's [0, 100)^3 is used, which is other data and says so).

For each mode (``--modes fp32,bf16``; fp32 is the faithful default, bf16 the fast mode;
``-compile`` adds ``torch.compile`` with frozen weights, e.g. ``bf16-compile``):

* **bare forward**: ``model(x)`` on one real (1, 2, 33, 33, 33) FOV input, in the same layout
  (``channels_last_3d``), autocast and compilation as ffnops uses, under
  ``torch.inference_mode``: the lower bound of a step. Timed ``--forwards`` times before and
  after the run; the median is used.
* **ffnops step**: the whole inference loop (``Canvas.segment_all`` driven by ``run_canvas`` with
  ``TorchPredictor``: FOV extraction, the network call, the logit write-back, face-max movement,
  seed checks) divided by its network calls. ``--max-calls N`` stops after N calls (a prefix of
  the run) where a full run would take too long (bf16 without AVX512-BF16/AMX is slower than
  fp32); quality is then not reported.

It prints ms per step, FOV steps/s, segmented voxels/s, the step / bare-forward ratio (target:
<= 1.10 fp32, <= 1.15 bf16), each mode's time against the first mode's (same run), and for
complete runs with ground truth (labels exist for z < 175) adapted Rand error, VOI split/merge
and object counts, plus the number of voxels that differ from fp32, so the fast mode's quality
is measured, not assumed. ``--boxes`` runs several crops and prints each mode's mean.
``bf16-emulated`` runs fp32 arithmetic rounded where bf16 autocast rounds (see
``emulate_bf16``): bf16's segmentation on CPUs without AVX512-BF16/AMX, where real bf16 is
emulated by oneDNN and about 50x slower than fp32 (its speed there means nothing).

``--profile N`` runs the first N steps of each mode under torch's profiler and splits a step
into convolutions, the elementwise ReLU/residual sums, casts and layout copies, the rest of the
network call, and the canvas loop around it (FOV extraction, logit write-back, movement).
``--batch-sizes 1,2,4,8`` times the bare forward per FOV at each batch size (what batched
canvases would gain on this CPU).

Google's own TF code is not run here (no TensorFlow); measured on these machines, its step
took 94-104 ms (AMD EPYC with AVX-512) and 134-205 ms (Intel Xeon with AMX), and ffnops's fp32
step 0.95-1.00x of it in the same runs -- so the fp32 row stands for Google's time.

Run::

    python benchmarks/inference.py [--modes fp32,bf16,bf16-compile] [--max-calls N]
        [--forwards 10] [--threads N] [--boxes 0:100,0:100,0:100;...] [--profile N]
        [--batch-sizes 1,2,4,8]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch
from datasets import FIB25_IMAGE, FIB25_LABELS
from machine import cpu_model, library_versions, load_average

from ffnops.ffn.canvas import Canvas, run_canvas
from ffnops.ffn.metrics import SegmentationScores, score_segmentation
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
    """Wraps a predictor; stops the run after ``limit`` calls (0: never) and sums the seconds
    spent inside the network calls."""

    def __init__(self, predict: TorchPredictor, limit: int) -> None:
        self.predict, self.limit, self.calls, self.seconds = predict, limit, 0, 0.0

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        if self.limit and self.calls >= self.limit:
            raise Stop
        self.calls += 1
        start = time.perf_counter()
        out = self.predict(inputs)
        self.seconds += time.perf_counter() - start
        return out


def bare_forward_ms(predictor: TorchPredictor, fov_input: np.ndarray, repeats: int) -> float:
    """Median ms per FOV of the network alone, x already a tensor in the predictor's layout."""
    times = []
    with (
        torch.inference_mode(),
        torch.autocast("cpu", torch.bfloat16, enabled=predictor.precision == "bf16"),
    ):
        x = torch.from_numpy(fov_input)  # an inference tensor, as the predictor's own
        if predictor.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        predictor.network(x)  # warm-up (oneDNN picks its kernels; compiles)
        for _ in range(repeats):
            start = time.perf_counter()
            predictor.network(x)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / len(fov_input)


def make_predictor(mode: str, variables: dict) -> TorchPredictor:
    """``fp32``, ``bf16`` or ``bf16-emulated``, each with an optional ``-compile``."""
    precision = mode.removesuffix("-compile")
    model = model_from_checkpoint(variables)
    if precision == "bf16-emulated":
        model = emulate_bf16(model)
    return TorchPredictor(
        model,
        "cpu",
        "bf16" if precision == "bf16" else "fp32",
        channels_last=True,
        compile=mode.endswith("-compile"),
    )


# Where a profiled step's time goes: torch operator names by the part of the step they are.
PARTS = {
    "convolutions": ("convolution",),
    "ReLU and residual sums": ("clamp_min", "relu", "aten::add"),
    "casts and layout copies": ("copy_", "_to_copy", "contiguous", "clone"),
}


def profile_steps(canvas: Canvas, seeds: list, predictor: TorchPredictor, steps: int) -> dict:
    """ms per step of each part of the first ``steps`` steps of a run, under torch's profiler."""
    counting = Counting(predictor, steps)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        with contextlib.suppress(Stop):
            run_canvas(canvas.segment_all(seeds), counting)
        wall = time.perf_counter() - start
    parts = dict.fromkeys(PARTS, 0.0)
    for event in prof.key_averages():
        for part, names in PARTS.items():
            if any(name in event.key for name in names):
                parts[part] += event.self_cpu_time_total / 1000  # us -> ms
                break
    per_step = {part: ms / counting.calls for part, ms in parts.items()}
    network = 1000 * counting.seconds / counting.calls
    per_step["rest of the network call"] = network - sum(per_step.values())
    per_step["canvas loop (FOV cut, write-back, moves)"] = 1000 * wall / counting.calls - network
    return per_step


def batch_forwards(
    modes: list[str], variables: dict, fov_input: np.ndarray, sizes: list[int], repeats: int
) -> None:
    """Bare forward ms per FOV at each batch size, each mode (what batched canvases gain)."""
    print()
    print("bare forward, ms per FOV, by batch size (FOVs of several canvases in one call)")
    print(f"{'mode':<14} " + " ".join(f"{'B=' + str(b):>7}" for b in sizes) + "   best/B=1")
    for mode in modes:
        predictor = make_predictor(mode, variables)
        times = [
            bare_forward_ms(predictor, np.repeat(fov_input, b, axis=0), max(3, repeats // b))
            for b in sizes
        ]
        print(
            f"{mode:<14} "
            + " ".join(f"{t:7.1f}" for t in times)
            + f"   {min(times) / times[0]:.3f} at B={sizes[times.index(min(times))]}"
        )


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


@dataclass
class Run:
    """One mode's run on one box."""

    mode: str
    box: str
    bare_ms: float
    step_ms: float
    calls: int
    voxels_per_s: float
    complete: bool
    scores: SegmentationScores | None = None
    objects: int = 0
    differ: int = -1  # voxels that differ from fp32's segmentation (-1: no fp32 to compare)


def quality_target(precision: str) -> float:
    return TARGETS.get(precision.removesuffix("-compile"), 1.10)


def run_box(args: argparse.Namespace, variables: dict, box: BBox) -> list[Run]:
    raw, labels, image_uri = load_data(box, args.image)
    request = request_settings(read_request(GOOGLE_FIB25_REQUEST))
    options = InferenceOptions(
        **{k: v for k, v in request.items() if k not in ("image_mean", "image_stddev")}
    )
    image = (raw.astype(np.float32) - np.float32(128)) / np.float32(33)
    seeds = peak_seeds(image, Canvas(image, (33, 33, 33), (8, 8, 8), options).fov_radius)
    centre = tuple(n // 2 for n in image.shape)
    fov_input = np.stack(
        [
            image[tuple(slice(c - 16, c + 17) for c in centre)],
            np.full((33, 33, 33), 0.05, np.float32),
        ]
    )[None]
    print(f"image {image_uri} [{box}], {len(seeds)} seeds, Google's checkpoint and request")
    modes = args.modes.split(",")
    if args.profile:
        print(f"\nwhere a step's time goes, ms per step (first {args.profile} steps, profiled)")
        table = {}
        for mode in modes:
            canvas = Canvas(image, (33, 33, 33), (8, 8, 8), options)
            predictor = make_predictor(mode, variables)
            bare_forward_ms(predictor, fov_input, 1)  # compiles outside the profile
            table[mode] = profile_steps(canvas, seeds, predictor, args.profile)
        print(f"{'part':<42} " + " ".join(f"{m:>14}" for m in modes))
        for part in next(iter(table.values())):
            print(f"{part:<42} " + " ".join(f"{table[m][part]:14.2f}" for m in modes))
        print(f"{'step':<42} " + " ".join(f"{sum(table[m].values()):14.2f}" for m in modes))
    if args.batch_sizes:
        sizes = [int(b) for b in args.batch_sizes.split(",")]
        batch_forwards(modes, variables, fov_input, sizes, args.forwards)
    runs, segmentations = [], {}
    for mode in modes:
        predictor = make_predictor(mode, variables)
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
        run = Run(
            mode,
            str(box),
            statistics.median([before, after]),
            1000 * seconds / max(counting.calls, 1),
            counting.calls,
            canvas.counters.voxels_segmented / seconds,
            complete,
        )
        if complete:
            segmentations[mode] = canvas.final_segmentation()
            run.objects = len(np.unique(segmentations[mode])) - 1
        runs.append(run)
        print(f"  {mode}: {counting.calls} calls in {seconds:.1f} s", flush=True)
    fp32 = segmentations.get("fp32")
    if fp32 is None and str(box) == "0:100,0:100,0:100" and GOOGLE_CROP100.exists():
        with np.load(GOOGLE_CROP100, allow_pickle=False) as google:
            fp32 = google["segmentation"]  # Google's fp32 run, identical to ours
    for run in runs:
        if run.mode in segmentations:
            if labels is not None:
                run.scores = score_segmentation(segmentations[run.mode], labels)
            if fp32 is not None:
                run.differ = int((segmentations[run.mode] != fp32).sum())
    return runs


def print_runs(runs: list[Run]) -> None:
    base = runs[0]
    print()
    print(
        f"{'mode':<14} {'bare fwd ms':>11} {'step ms':>8} {'step/bare':>9} {'FOV steps/s':>11} "
        f"{'voxels/s':>9} {'calls':>6} {'run':>6} {'vs ' + base.mode:>10}  result"
    )
    for run in runs:
        ratio = run.step_ms / run.bare_ms
        target = quality_target(run.mode)
        print(
            f"{run.mode:<14} {run.bare_ms:11.1f} {run.step_ms:8.1f} {ratio:9.3f} "
            f"{1000 / run.step_ms:11.2f} {run.voxels_per_s:9.0f} {run.calls:6d} "
            f"{'all' if run.complete else 'prefix':>6} {run.step_ms / base.step_ms:10.3f}  "
            f"{'PASS' if ratio <= target else 'FAIL'} (step/bare <= {target:.2f})"
        )
    scored = [run for run in runs if run.scores is not None]
    if scored:
        print(f"quality against ground truth, [{runs[0].box}] (labels of z < 175 only)")
        print(
            f"{'mode':<14} {'ARAND':>7} {'VOI split':>9} {'VOI merge':>9} {'objects':>7}  vs fp32"
        )
        for run in scored:
            assert run.scores is not None
            print(
                f"{run.mode:<14} {run.scores.adapted_rand_error:7.3f} {run.scores.voi_split:9.3f} "
                f"{run.scores.voi_merge:9.3f} {run.objects:7d}  {run.differ} voxels differ"
            )


def print_summary(runs: list[Run]) -> None:
    """Each mode over all boxes: mean step time against the first mode, mean ARAND against
    fp32's (target: within 0.01)."""
    modes = list(dict.fromkeys(run.mode for run in runs))
    boxes = len({run.box for run in runs})
    step = {m: statistics.mean(r.step_ms for r in runs if r.mode == m) for m in modes}
    arand = {
        m: statistics.mean(r.scores.adapted_rand_error for r in runs if r.mode == m and r.scores)
        for m in modes
        if all(r.scores for r in runs if r.mode == m)
    }
    print()
    print(f"all {boxes} boxes: mean step ms, against {modes[0]}; mean ARAND, against fp32")
    for mode in modes:
        line = f"{mode:<14} {step[mode]:8.1f} ms {step[mode] / step[modes[0]]:6.3f}x"
        if mode in arand:
            line += f"   ARAND {arand[mode]:.4f}"
            if "fp32" in arand:
                delta = arand[mode] - arand["fp32"]
                verdict = "PASS" if abs(delta) <= 0.01 else "FAIL"
                line += f" ({delta:+.4f}, {verdict}: within 0.01 of fp32)"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default="fp32,bf16")
    parser.add_argument("--max-calls", type=int, default=0)
    parser.add_argument("--forwards", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--boxes", default="0:100,0:100,0:100", help="crops, ';' between")
    parser.add_argument("--image", default=None, help="volume URI (default: FIB-25 sample 2)")
    parser.add_argument("--profile", type=int, default=0, help="profile the first N steps")
    parser.add_argument("--batch-sizes", default="", help="e.g. 1,2,4,8: forward per FOV")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    variables = read_checkpoint(GOOGLE_FIB25_CHECKPOINT)
    print(f"CPU: {cpu_model()}, {torch.get_num_threads()} threads; load {load_average()}")
    print(library_versions("ffnops", "torch", "numpy"))
    runs = []
    for index, box in enumerate(args.boxes.split(";")):
        if index:  # the profile and the batch sizes: on the first box only
            args.profile, args.batch_sizes = 0, ""
        box_runs = run_box(args, variables, BBox.parse(box))
        print_runs(box_runs)
        runs += box_runs
    print_summary(runs)
    print(f"load after: {load_average()}")


if __name__ == "__main__":
    main()
