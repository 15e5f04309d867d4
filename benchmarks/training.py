"""Training throughput of ffnops against a bare PyTorch loop doing the same FOV steps.

The contenders train the same network (``ConvStack3DFFNModel``, same seeded initial weights) with
the same optimiser (plain SGD, lr 1e-3, gradients clipped elementwise to +-0.7):

* **ffnops**: the real pipeline -- ``FFNDataModule`` (coordinate file, ``FovExamples`` read
  through the volume API with augmentation, a DataLoader with ``--num-workers`` workers),
  ``FFNTrainingModule`` (batch slots walking each example's FOV moves with the ``fixed`` policy,
  canvas write-back, mask metrics, ``self.log``) driven by ``pl.Trainer`` on the CPU, with
  ``gradient_clip_val=0.7, gradient_clip_algorithm="value"``, no logger, checkpoints, progress
  bar or validation;
* **bare**: the lower bound for "the same FOV steps on the same batch" -- a plain loop over a
  fixed, pre-built batch of ``--batch-size`` real FOV inputs (B, 2, f, f, f) and soft targets
  (B, 1, f, f, f) (the first FOV of the first examples of the same coordinate file, built with
  ffnops's ``FovStepper``), doing zero_grad, forward, BCE-with-logits (mean), backward,
  ``clip_grad_value_``, ``SGD.step`` and writing the new logits back into a (B, P, P, P) canvas
  each iteration. It reads no data and moves no FOV;
* **lightning** (unless ``--no-lightning``): the bare loop's step as the ``training_step`` of a
  minimal LightningModule, fed by a DataLoader of nothing, under the same ``pl.Trainer``
  settings as ffnops. It splits ffnops's overhead into Lightning's share (lightning - bare) and
  ffnops's own (ffnops - lightning: data, FOV slots, metrics, logging).

``--precision bf16`` runs the forward and loss under ``torch.autocast("cpu", torch.bfloat16)``
in the bare loop and ``Trainer(precision="bf16-mixed")`` (the same autocast) otherwise.
``--channels-last`` puts the weights in ``channels_last_3d`` (ffnops: ``FFNTrainingModule(...,
channels_last=True)``) and converts each step's input batch to it (all contenders).

Data: partitions (``compute_partitions``, Google's FIB-25 thresholds, lom_radius 8, min_size
1000) and balanced coordinates (margin = patch radius) of the FIB-25 crop bundled with ffnops,
written to a temporary directory with ffnops's own functions. With the reference's move
threshold (``--threshold 0.9``) an untrained network accepts no move, so every ffnops example
ends after one FOV step and each step starts ``batch size`` new examples: early training, the
data pipeline's worst case. ``--threshold 0.001`` accepts every move (27 FOV steps per example,
as a network that has learnt to fill big objects). The printed examples/step shows which.

Timing: a *block* runs ``--warmup`` + ``--steps`` training steps of one contender, from fresh
weights (ffnops: a fresh module, data module and Trainer; its DataLoader workers start inside the
warm-up). ``time.perf_counter()`` is read at the end of every step (Lightning: a Callback's
``on_train_batch_end``); a block's time per step is the steady-state window after the warm-up
divided by ``--steps``. Each of ``--repeats`` rounds runs one block of every contender back to
back, reversing the order every other round, so background load on a shared machine hits all
alike. The table shows the median over rounds of each contender's time per step, steps/s and
FOV examples/s (steps/s x batch size), and the median of the per-round ratio of its time per
step to the bare loop's. The target is ffnops <= 1.10 x bare; the exit status is 1 if missed.
The load average is printed before and after: results taken under other load are noise.

``--profile`` then runs one more ffnops block with cProfile enabled for its steady-state window
only (main process; time spent in DataLoader workers shows up as waiting for the next example)
and prints the functions with the most own and cumulative time.

Run::

    python benchmarks/training.py [--model tiny|fib25] [--steps N] [--warmup N] [--repeats N]
                                  [--batch-size 4] [--precision 32|bf16] [--channels-last]
                                  [--threshold 0.9] [--num-workers 1] [--threads N]
                                  [--no-lightning] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import cProfile
import io
import logging
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from machine import cpu_model, library_versions, load_average
from torch import nn
from torch.utils.data import DataLoader

from ffnops.data.coordinate_file import save_coordinates
from ffnops.data.dataset import Dataset
from ffnops.data.examples import Augmentation, FovExamples
from ffnops.ffn.coordinates import CoordinateTable, balanced_coordinates
from ffnops.ffn.model import ConvStack3DFFNModel
from ffnops.ffn.partitions import FIB25_THRESHOLDS, compute_partitions, partition_counts
from ffnops.ffn.training_moves import TrainingGeometry, fixed_shifts, fov_slices
from ffnops.sample_data import sample_path
from ffnops.training.datamodule import FFNDataModule
from ffnops.training.fov_slots import FovStepper
from ffnops.training.module import FFNTrainingModule

TARGET_RATIO = 1.10
LR = 1e-3
CLIP = 0.7
SAMPLE = "fib25_crop.h5"
LOM_RADIUS = 8
MIN_SIZE = 1000
MAX_PER_PARTITION = 500
CHANNELS_LAST = torch.channels_last_3d


@dataclass(frozen=True)
class ModelSpec:
    """A ConvStack3D configuration and the step counts that suit it on a CPU."""

    fov: int
    deltas: int
    depth: int
    features: int
    steps: int
    warmup: int
    repeats: int

    def build(self) -> ConvStack3DFFNModel:
        return ConvStack3DFFNModel(self.fov, self.deltas, self.depth, self.features)


MODELS = {
    "tiny": ModelSpec(fov=17, deltas=4, depth=2, features=8, steps=30, warmup=3, repeats=9),
    "fib25": ModelSpec(fov=33, deltas=8, depth=12, features=32, steps=1, warmup=1, repeats=1),
}


@dataclass(frozen=True)
class Workload:
    """What the contenders train: initial weights, the data, and the fixed bare batch."""

    model: nn.Module
    geometry: TrainingGeometry
    coordinates: Path
    datasets: dict[str, Dataset]
    inputs: torch.Tensor  # (B, 2, f, f, f)
    targets: torch.Tensor  # (B, 1, f, f, f)


@dataclass(frozen=True)
class Block:
    """One contender's steady-state seconds per step, and examples finished per step."""

    seconds_per_step: float
    examples_per_step: float | None = None


@dataclass(frozen=True)
class Row:
    """One line of the result table (medians over rounds)."""

    name: str
    seconds_per_step: float
    batch_size: int
    ratio: float | None = None

    @property
    def steps_per_s(self) -> float:
        return 1.0 / self.seconds_per_step

    @property
    def fovs_per_s(self) -> float:
        return self.steps_per_s * self.batch_size


# ---- data ------------------------------------------------------------------------------------


def make_coordinates(workdir: Path, geometry: TrainingGeometry) -> tuple[Path, CoordinateTable]:
    """Partitions and balanced coordinates of the bundled sample, saved in ``workdir``."""
    with h5py.File(sample_path(SAMPLE), "r") as handle:
        labels = np.asarray(handle["labels"][...])
    start = time.perf_counter()
    parts = compute_partitions(labels, FIB25_THRESHOLDS, LOM_RADIUS, min_size=MIN_SIZE)
    seconds = time.perf_counter() - start
    margin = [p // 2 for p in geometry.patch_size]
    table = balanced_coordinates(
        {"sample": parts}, margin, seed=0, max_per_partition=MAX_PER_PARTITION
    )
    path = workdir / "coordinates.npz"
    save_coordinates(table, path)
    counts = partition_counts(parts)
    print(
        f"Data: {SAMPLE} labels {labels.shape}; partitions in {seconds:.1f} s "
        f"({len(counts)} values); {len(table)} coordinates, margin {margin}"
    )
    return path, table


def fixed_batch(
    table: CoordinateTable,
    datasets: dict[str, Dataset],
    geometry: TrainingGeometry,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first FOV (inputs, soft targets) of the first ``batch_size`` examples, unaugmented."""
    examples = FovExamples(table, datasets, geometry.patch_size, None)
    stepper = FovStepper(geometry, fixed_shifts(geometry.deltas, shuffle=False))
    slots = [stepper.start(examples[i], torch.device("cpu")) for i in range(batch_size)]
    return stepper.inputs(slots)


def make_workload(spec: ModelSpec, workdir: Path, batch_size: int, seed: int) -> Workload:
    torch.manual_seed(seed)
    model = spec.build()
    geometry = TrainingGeometry(model.fov_size, model.deltas, "fixed", 1)
    coordinates, table = make_coordinates(workdir, geometry)
    uri = sample_path(SAMPLE)
    datasets = {"sample": Dataset("sample", f"h5://{uri}#image", f"h5://{uri}#labels")}
    inputs, targets = fixed_batch(table, datasets, geometry, batch_size)
    return Workload(model, geometry, coordinates, datasets, inputs, targets)


# ---- bare loop -------------------------------------------------------------------------------


def autocast(precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def bare_block(work: Workload, args: argparse.Namespace) -> Block:
    """``warmup + steps`` plain SGD steps on the fixed batch; steady-state seconds per step."""
    model = copy.deepcopy(work.model)
    if args.channels_last:
        model = model.to(memory_format=CHANNELS_LAST)  # type: ignore[call-overload]
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    patch = work.geometry.patch_size
    canvas = torch.zeros((args.batch_size, *patch))
    centre = [p // 2 for p in patch]
    box = (slice(None), *fov_slices(centre, (0, 0, 0), work.geometry.fov_size))
    times = []
    for _ in range(args.warmup + args.steps):
        inputs = work.inputs
        if args.channels_last:
            inputs = inputs.contiguous(memory_format=CHANNELS_LAST)
        optimizer.zero_grad()
        with autocast(args.precision):
            logits = model(inputs)
            loss = F.binary_cross_entropy_with_logits(logits.float(), work.targets)
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), CLIP)
        optimizer.step()
        canvas[box] = logits.detach().float()[:, 0]
        times.append(time.perf_counter())
    return Block((times[-1] - times[args.warmup - 1]) / args.steps)


# ---- ffnops ----------------------------------------------------------------------------------


class StepClock(pl.Callback):
    """Records the time and examples finished at the end of every step; optionally profiles the
    steady-state window (after ``warmup`` steps) with cProfile."""

    def __init__(self, warmup: int, profiler: cProfile.Profile | None = None) -> None:
        self.warmup = warmup
        self.profiler = profiler
        self.times: list[float] = []
        self.examples: list[int] = []

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any
    ) -> None:
        self.times.append(time.perf_counter())
        self.examples.append(int(getattr(pl_module, "examples_done", 0)))
        if self.profiler is not None and len(self.times) == self.warmup:
            self.profiler.enable()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.profiler is not None:
            self.profiler.disable()


def make_trainer(args: argparse.Namespace, clock: StepClock) -> pl.Trainer:
    """The Trainer both Lightning contenders run under (the brief's CPU settings)."""
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        precision="bf16-mixed" if args.precision == "bf16" else "32-true",
        max_steps=args.warmup + args.steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        gradient_clip_val=CLIP,
        gradient_clip_algorithm="value",
        callbacks=[clock],
    )


def steady_block(clock: StepClock, args: argparse.Namespace) -> Block:
    """Seconds per step (and examples per step) over the window after the warm-up."""
    if len(clock.times) != args.warmup + args.steps:
        raise RuntimeError(f"ran {len(clock.times)} steps, expected {args.warmup + args.steps}")
    if torch.get_num_threads() != args.threads:  # all contenders must run on as many threads
        raise RuntimeError(f"the Trainer changed torch's threads to {torch.get_num_threads()}")
    w = args.warmup - 1
    return Block(
        (clock.times[-1] - clock.times[w]) / args.steps,
        (clock.examples[-1] - clock.examples[w]) / args.steps,
    )


def ffnops_block(
    work: Workload, args: argparse.Namespace, profiler: cProfile.Profile | None = None
) -> Block:
    """``warmup + steps`` steps of ``pl.Trainer.fit`` on the ffnops module and data module."""
    module = FFNTrainingModule(
        copy.deepcopy(work.model),
        lambda params: torch.optim.SGD(params, lr=LR),
        work.geometry,
        batch_size=args.batch_size,
        threshold=args.threshold,
        channels_last=args.channels_last,
    )
    data = FFNDataModule(
        str(work.coordinates),
        work.datasets,
        work.geometry.patch_size,
        Augmentation(),
        val_fraction=0,
        num_workers=args.num_workers,
    )
    clock = StepClock(args.warmup, profiler)
    make_trainer(args, clock).fit(module, data)
    return steady_block(clock, args)


class FixedBatchModule(pl.LightningModule):
    """The bare loop's step as a LightningModule: fixed batch, canvas write-back, nothing else."""

    def __init__(self, work: Workload, batch_size: int, channels_last: bool) -> None:
        super().__init__()
        self.model = copy.deepcopy(work.model)
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=CHANNELS_LAST)  # type: ignore[call-overload]
        self.inputs, self.targets = work.inputs, work.targets
        patch = work.geometry.patch_size
        self.canvas = torch.zeros((batch_size, *patch))
        centre = [p // 2 for p in patch]
        self.box = (slice(None), *fov_slices(centre, (0, 0, 0), work.geometry.fov_size))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        inputs = self.inputs
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=CHANNELS_LAST)
        logits = self.model(inputs)
        loss = F.binary_cross_entropy_with_logits(logits.float(), self.targets)
        self.canvas[self.box] = logits.detach().float()[:, 0]
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.model.parameters(), lr=LR)

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(range(1 << 20), batch_size=None)


def lightning_block(work: Workload, args: argparse.Namespace) -> Block:
    """``warmup + steps`` steps of ``pl.Trainer.fit`` on :class:`FixedBatchModule`."""
    clock = StepClock(args.warmup)
    make_trainer(args, clock).fit(FixedBatchModule(work, args.batch_size, args.channels_last))
    return steady_block(clock, args)


# ---- measurement -----------------------------------------------------------------------------


Contender = Callable[[Workload, argparse.Namespace], Block]


def contenders(args: argparse.Namespace) -> dict[str, Contender]:
    named: dict[str, Contender] = {"bare": bare_block}
    if args.lightning:
        named["lightning"] = lightning_block
    named["ffnops"] = ffnops_block
    return named


def rounds(work: Workload, args: argparse.Namespace) -> list[dict[str, Block]]:
    """One block per contender per round, in reversed order every other round."""
    named = contenders(args)
    results = []
    for r in range(args.repeats):
        order = list(named) if r % 2 == 0 else list(reversed(named))
        blocks = {name: named[name](work, args) for name in order}
        bare = blocks["bare"].seconds_per_step
        parts = [
            f"{name} {blocks[name].seconds_per_step * 1e3:.1f} ms"
            + (f" ({blocks[name].seconds_per_step / bare:.3f})" if name != "bare" else "")
            for name in named
        ]
        examples = blocks["ffnops"].examples_per_step
        print(
            f"  round {r + 1}: {', '.join(parts)} per step; ffnops {examples:.2f} examples/step",
            flush=True,
        )
        results.append(blocks)
    return results


PROFILED = r"ffnops/|dataloader\.py|_pickle|reductions\.py|result\.py.*\(log\)|clip_grad|sgd\.py"


def profile_ffnops(work: Workload, args: argparse.Namespace, top: int = 30) -> str:
    """cProfile of one ffnops block's steady-state window: the top functions by own time, then
    by cumulative time among ffnops's, the DataLoader's, unpickling and ``self.log``."""
    profiler = cProfile.Profile()
    ffnops_block(work, args, profiler)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(PROFILED, top)
    text = out.getvalue()
    for prefix in (str(Path(torch.__file__).parents[1]), str(Path(__file__).parents[1])):
        text = text.replace(prefix + os.sep, "")
    return f"(per step: divide by {args.steps})\n{text}"


# ---- report ----------------------------------------------------------------------------------


def cpu_features() -> str:
    """The SIMD extensions that decide conv speed, as torch reports them."""
    try:
        flags = next(
            line.split(":", 1)[1].split()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("flags")
        )
    except (OSError, StopIteration):
        flags = []
    wanted = [f for f in flags if f.startswith(("avx512_bf16", "amx"))]
    has_avx512 = any(f.startswith("avx512") for f in flags)
    extra = ", ".join(["avx512" if has_avx512 else "no avx512", *wanted])
    return f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}; {extra}"


def versions() -> str:
    return library_versions("ffnops", "torch", "pytorch_lightning", "numpy")


def summarise(results: list[dict[str, Block]], args: argparse.Namespace) -> list[Row]:
    """Per contender: median seconds per step, median per-round ratio to the bare loop."""
    rows = []
    for name in contenders(args):
        seconds = statistics.median(r[name].seconds_per_step for r in results)
        ratio = statistics.median(
            r[name].seconds_per_step / r["bare"].seconds_per_step for r in results
        )
        rows.append(Row(name, seconds, args.batch_size, None if name == "bare" else ratio))
    return rows


def table(rows: list[Row]) -> str:
    header = (
        f"{'contender':<10} {'ms/step':>10} {'steps/s':>9} {'FOV examples/s':>15} "
        f"{'time vs bare':>13}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        ratio = "1 (ref)" if r.ratio is None else f"{r.ratio:.3f}"
        lines.append(
            f"{r.name:<10} {r.seconds_per_step * 1e3:>10.1f} {r.steps_per_s:>9.3f} "
            f"{r.fovs_per_s:>15.2f} {ratio:>13}"
        )
    return "\n".join(lines)


def quiet_lightning() -> None:
    # Lightning calls the dataloader_iter step "experimental"; ffnops relies on it (train.py).
    warnings.filterwarnings("ignore", message=".*dataloader_iter.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="tiny", help="(tiny)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per block")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per block")
    parser.add_argument("--repeats", type=int, default=None, help="rounds of both contenders")
    parser.add_argument("--batch-size", type=int, default=4, help="FOVs per step (4)")
    parser.add_argument("--precision", choices=("32", "bf16"), default="32", help="(32)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last_3d")
    parser.add_argument("--num-workers", type=int, default=1, help="ffnops DataLoader workers (1)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument(
        "--threshold", type=float, default=0.9, help="FOV move threshold, probability (0.9)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights")
    parser.add_argument(
        "--no-lightning", dest="lightning", action="store_false", help="skip that contender"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile one more ffnops block")
    args = parser.parse_args(argv)
    spec = MODELS[args.model]
    args.steps = spec.steps if args.steps is None else args.steps
    args.warmup = spec.warmup if args.warmup is None else args.warmup
    args.repeats = spec.repeats if args.repeats is None else args.repeats
    if min(args.steps, args.warmup, args.repeats, args.batch_size, args.threads) < 1:
        parser.error("--steps, --warmup, --repeats, --batch-size and --threads must be >= 1")
    if not 0 < args.threshold < 1:
        parser.error("--threshold must be a probability in (0, 1)")
    if args.num_workers < 0:
        parser.error("--num-workers must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_lightning()
    torch.set_num_threads(args.threads)
    spec = MODELS[args.model]
    print(f"CPU: {cpu_model()} ({len(os.sched_getaffinity(0))} usable cores; {cpu_features()})")
    print(f"Python {platform.python_version()}; {versions()}; torch threads {args.threads}")
    print(
        f"Model {args.model}: ConvStack3D fov {spec.fov}^3, deltas {spec.deltas}, depth "
        f"{spec.depth}, {spec.features} features; batch {args.batch_size}; precision "
        f"{args.precision}; {'channels_last_3d' if args.channels_last else 'NCDHW'}; "
        f"move threshold {args.threshold}; ffnops DataLoader workers {args.num_workers}"
    )
    with tempfile.TemporaryDirectory(prefix="ffnops-train-bench-") as tmp:
        work = make_workload(spec, Path(tmp), args.batch_size, args.seed)
        print(
            f"{args.repeats} rounds of {args.warmup} warm-up + {args.steps} timed steps per "
            "contender, order reversed every other round; medians over rounds; target ffnops "
            f"time per step <= {TARGET_RATIO} x bare; load average before: {load_average()}"
        )
        results = rounds(work, args)
        print(f"Load average after: {load_average()}")
        rows = summarise(results, args)
        ratio = rows[-1].ratio
        assert ratio is not None
        print()
        print(table(rows))
        verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
        print(f"ffnops / bare time per step: {ratio:.3f} (target <= {TARGET_RATIO}): {verdict}")
        if args.profile:
            print()
            print("cProfile of one ffnops block (steady-state window, main process):")
            print(profile_ffnops(work, args))
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
