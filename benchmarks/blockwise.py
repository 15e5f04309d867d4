"""Blockwise inference (``executor=daisy``): what cutting a box into blocks costs in quality,
how it scales over worker processes, and how much memory a worker needs.

Every step is the ordinary ``ffnops infer`` command, run as the pipelines run it (``-P``) in
the work folder, which keeps the MLflow store (``mlflow.db``) and every output: a step whose
output exists is not run again, so a killed run resumes and a finished one only prints again.

* ``--part quality``: Google's FIB-25 checkpoint (``ffnops import-checkpoint google``) on
  ``--box`` of ``training_sample2`` with Google's request, blockwise (``--block``, ``--workers``;
  its blocks kept, ``executor.keep_blocks``) against one canvas (``executor=cpu``, ``cpu_bf16``
  for bf16; for the whole volume in fp32, Google's published segmentation, which ffnops's one
  canvas reproduces, unless ``--with-local``). Each of ``--variants`` segments the blocks its
  own way (``VARIANTS``: apart, the default; ``executor.seed_context``;
  ``executor.continue_objects``), and each stitch rule of ``STITCH_RULES`` restitches the same
  blocks. On the whole volume in bf16, the bf16 canvas is also scored against Google's npz
  (fp32): how far two equally good one-canvas runs differ. Scores: adapted Rand error (0
  counted as a label; target <= 0.02), VOI split/merge,
  object counts, and of the one-canvas objects that cross a block face how many come out split
  (>1 blockwise id of >= 5 % each) or merged (their main blockwise id also holds >= 5 % of
  another object of >= 1000 voxels); target: none. Wall times and ms per FOV step.
  The whole 250^3 volume takes hours on an AVX2-only CPU (0.6 s a step): run it in the
  background (a killed run resumes from its finished blocks), or try a crop
  (``--box 0:100,0:100,0:100 --block 50,50,50``).
* ``--part scaling``: a small random ConvStack (FOV 17^3, depth 4, 16 features) on a synthetic
  volume, blocks of half its size: the segment phase (``seconds_segment``) with 1 worker of 2
  threads against 2 workers of 1 thread, efficiency T(1x2) / T(2x1) (target >= 0.8), outputs
  identical (target: yes); and one canvas (``executor=cpu``) against daisy with the volume as
  one block (1 worker): the overhead of the blockwise machinery (command and inference).
* ``--part memory``: peak RSS of a worker (``peak_rss_mb_per_worker``) and of the scheduler
  process, the command itself (``peak_rss_mb_scheduler``), with the oracle network on a label
  volume of a few cubes (mostly background, so cheap), for two volume sizes (256^3 and 512^3)
  at one block size (target: equal; neither holds the volume) and two block sizes on each; every
  process under 2 GB for 512^3 (target).

``--quick`` makes the synthetic volumes smaller (80^3 instead of 112^3 for scaling; 128^3 and
256^3 with blocks of 32^3 and 64^3 for memory): a smoke test of about 6 minutes on 2 cores.

Run::

    python benchmarks/blockwise.py [--part quality|scaling|memory|all] [--workdir DIR]
        [--box z0:z1,y0:y1,x0:x1] [--block 125,125,125] [--workers 2]
        [--precision auto|fp32|bf16] [--quick] [--with-local]
        [--variants apart,seed_context,continue_objects]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import numpy.typing as npt
import torch
from datasets import FIB25_IMAGE, FIB25_LABELS, GOOGLE_SEGMENTATION, need
from ffnops_pipelines.steps import FFNOPS
from machine import cpu_model, library_versions, load_average
from mlflow.tracking import MlflowClient
from skimage.metrics import adapted_rand_error, variation_of_information

from ffnops.ffn.cpu import cpu_has_fast_bf16
from ffnops.ffn.model import ConvStack3DFFNModel
from ffnops.ffn.oracle import OracleFFN
from ffnops.sample_data.synthetic import synthetic_volume
from ffnops.tracking.mlflow_tracking import register_model
from ffnops.tracking.registry import alias_version
from ffnops.volume import BBox
from ffnops.volumes import open_volume, write_array

REPO = Path(__file__).resolve().parents[1]
SMALL_FOV = {"fov_size": [17, 17, 17], "deltas": [4, 4, 4]}
REQUEST = {"pad_value": 0.05, "init_activation": 0.95, "move_threshold": 0.9}
GRID = ["inference.seed_policy=grid", "+inference.seed_policy_args.step=32"]
# The random network keeps small objects; the oracle's seeds are mostly on background and cost
# one network call each, so it takes one grid pass.
RANDOM_NET = [*GRID, "+inference.seed_policy_args.offsets=[0,16]", "inference.min_segment_size=100"]
ORACLE = [*GRID, "+inference.seed_policy_args.offsets=[0]"]
CUBES = [(0.1, 0.1, 0.1), (0.4, 0.45, 0.2), (0.7, 0.2, 0.6), (0.2, 0.7, 0.48)]  # in a half


def store(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'mlflow.db'}"


def ffnops(workdir: Path, *args: str) -> float:
    """One ffnops command in the work folder, shown as it runs, its output on stderr; seconds."""
    args = (*args, f"tracking.tracking_uri={store(workdir)}")
    print(f"$ ffnops {' '.join(args)}", flush=True)
    env = {**os.environ, "FFNOPS_ROOT": str(workdir)}
    start = time.perf_counter()
    subprocess.run([*FFNOPS, *args], cwd=workdir, env=env, stdout=sys.stderr, check=True)
    return time.perf_counter() - start


def infer(workdir: Path, name: str, model: str, image: str, *overrides: str) -> dict[str, float]:
    """``ffnops infer`` into ``NAME.zarr`` unless that exists; the MLflow run's metrics, with
    ``wall_s`` (the whole command) and ``run_s`` (the MLflow run: the inference itself)."""
    output, times_file = workdir / f"{name}.zarr", workdir / "times.json"
    times = json.loads(times_file.read_text()) if times_file.exists() else {}
    if not output.exists():
        times[name] = ffnops(
            workdir, "infer", f"model={model}", f"image={image}", f"output=zarr://{output}",
            f"tracking.run_name={name}", "viewer.publish=false", *overrides,
        )  # fmt: skip
        times_file.write_text(json.dumps(times, indent=1))
    return {**run_metrics(workdir, name), "wall_s": times.get(name, float("nan"))}


def run_metrics(workdir: Path, name: str) -> dict[str, float]:
    """The latest finished inference run named ``name``: its metrics, with ``run_s`` (the
    MLflow run's own time: the inference itself)."""
    client = MlflowClient(tracking_uri=store(workdir))
    experiment = client.get_experiment_by_name("inference")
    assert experiment is not None, "no inference experiment in the store"
    (run,) = client.search_runs(
        [experiment.experiment_id],
        f"attributes.run_name = '{name}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    run_s = (run.info.end_time - run.info.start_time) / 1000
    return {**run.data.metrics, "run_s": run_s}


def read(workdir: Path, name: str) -> npt.NDArray[np.int64]:
    with open_volume(f"zarr://{workdir / name}.zarr") as volume:
        return np.asarray(volume.read()).astype(np.int64)


def registered(workdir: Path, name: str, alias: str) -> bool:
    return alias_version(MlflowClient(tracking_uri=store(workdir)), name, alias) is not None


def register(workdir: Path, name: str, model: torch.nn.Module, settings: dict) -> str:
    """``model`` as models:/NAME@bench in the work folder's store (once)."""
    if not registered(workdir, name, "bench"):
        client = MlflowClient(tracking_uri=store(workdir))
        found = client.get_experiment_by_name("models")
        experiment_id = found.experiment_id if found else None
        experiment_id = experiment_id or client.create_experiment("models", f"{workdir}/artifacts")
        run = client.create_run(experiment_id)
        register_model(store(workdir), run.info.run_id, model, name, settings, alias="bench")
        client.set_terminated(run.info.run_id)
    return f"models:/{name}@bench"


def timing(name: str, m: dict[str, float]) -> str:
    return (
        f"{name:<10} command {m['wall_s']:7.1f} s, run {m['run_s']:7.1f} s, "
        f"{int(m['network_calls']):6d} FOV steps at {m['ms_per_step']:6.1f} ms, "
        f"{int(m['objects'])} objects"
    )


# ---- quality ------------------------------------------------------------------------------------


def agreement(name: str, reference: npt.NDArray[np.int64], test: npt.NDArray[np.int64]) -> None:
    arand = adapted_rand_error(reference, test, ignore_labels=())[0]
    split, merge = variation_of_information(reference.ravel(), test.ravel())
    n_ref, n_test = len(np.unique(reference[reference > 0])), len(np.unique(test[test > 0]))
    print(
        f"{name:<26} ARAND {arand:.2e} (target <= 0.02)  VOI split {split:.3f} merge "
        f"{merge:.3f}  objects {n_test} vs {n_ref} ({100 * (n_test / max(n_ref, 1) - 1):+.1f} %)"
    )


def face_objects(
    reference: npt.NDArray[np.int64], test: npt.NDArray[np.int64], block: list[int]
) -> tuple[int, int, int]:
    """Of the reference objects whose voxels span more than one block: how many, and how many
    are split (> 1 test id of >= 5 % each) or merged (their main test id also holds >= 5 % of
    another reference object of >= 1000 voxels) in ``test``."""
    cells = [np.arange(n) // b for n, b in zip(reference.shape, block, strict=True)]
    grid = [int(c[-1]) + 1 for c in cells]
    z, y, x = np.meshgrid(*cells, indexing="ij", sparse=True)
    block_of = (z * grid[1] + y) * grid[2] + x
    inside = reference > 0
    pairs = np.unique(reference[inside] << 20 | np.broadcast_to(block_of, reference.shape)[inside])
    ids, spans = np.unique(pairs >> 20, return_counts=True)
    crossing = ids[spans > 1]
    size = np.bincount(reference.ravel())
    keys, shared = np.unique(reference.ravel() << 32 | test.ravel(), return_counts=True)
    ours, theirs = keys >> 32, keys & 0xFFFFFFFF
    split = merged = 0
    for obj in crossing.tolist():
        mine = (ours == obj) & (theirs > 0)
        if not mine.any():
            continue
        split += int((shared[mine] >= 0.05 * size[obj]).sum() > 1)
        main = theirs[mine][shared[mine].argmax()]
        other = (theirs == main) & (ours != obj) & (ours > 0)
        big = size[ours[other]] >= 1000
        merged += int((shared[other][big] >= 0.05 * size[ours[other]][big]).any())
    return len(crossing), split, merged


def face_line(name: str, counts: tuple[int, int, int], objects: int) -> str:
    crossing, split, merged = counts
    return (
        f"{name}: {crossing} of {objects} objects cross a block face; split {split}, merged "
        f"{merged} ({100 * merged / max(crossing, 1):.0f} %)"
    )


# name: the stitch overrides; "join" is the rule before disputed boundaries were decided by
# their owner, "owner" today's default (docs/inference.md, "Stitching").
STITCH_RULES = {
    "smaller_0.5_join": ("executor.stitch_fraction_of=smaller", "executor.stitch_disputes=join"),
    "each_0.5_join": ("executor.stitch_fraction_of=each", "executor.stitch_disputes=join"),
    "smaller_0.5_owner": ("executor.stitch_fraction_of=smaller", "executor.stitch_disputes=owner"),
    "each_0.5_owner": ("executor.stitch_fraction_of=each", "executor.stitch_disputes=owner"),
}


# name: what a blockwise run segments its blocks with ("apart", the default: each block from
# the seeds in its write box; docs/inference.md, "Blockwise inference").
VARIANTS = {
    "apart": (),
    "seed_context": ("executor.seed_context=true",),
    "continue_objects": ("executor.continue_objects=true",),
}


def variants(text: str) -> list[str]:
    """``--variants``: names of ``VARIANTS``, comma-separated."""
    names = text.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"{', '.join(unknown)}: not a variant; expected some of {', '.join(VARIANTS)}"
        )
    return names


def labelled(box: BBox) -> npt.NDArray[np.int64] | None:
    """The neuron labels inside ``box`` (only z < 175 is labelled), or None without them."""
    if not FIB25_LABELS.exists():
        return None
    with h5py.File(FIB25_LABELS, "r") as f:
        stack = f["stack"]
        z1 = min(box.stop[0], stack.shape[0])
        if z1 <= box.start[0]:
            return None
        (z0, y0, x0), (_, y1, x1) = box.start, box.stop
        return np.asarray(stack[z0:z1, y0:y1, x0:x1]).astype(np.int64)


def quality(args: argparse.Namespace, workdir: Path, precision: str) -> None:
    print("\n## quality: blockwise against one canvas (Google's FIB-25 checkpoint)")
    if not registered(workdir, "google_fib25", "baseline"):
        ffnops(workdir, "import-checkpoint", "google", "model_name=google_fib25", "alias=baseline")
    scheme, _, rest = args.image.partition("://")
    path, _, dataset = rest.partition("#")
    image = f"{scheme}://{Path(path).resolve()}#{dataset}"
    with open_volume(image) as volume:
        shape = volume.shape
    box = BBox.parse(args.box) if args.box else BBox.from_shape(shape)
    block = [int(b) for b in args.block.split(",")]
    tag = f"{str(box).replace(':', '-').replace(',', '_')}_{precision}"
    model, common = "models:/google_fib25@baseline", (f"bbox={box}", "inference=fib25")
    local_executor = "executor=cpu" if precision == "fp32" else "executor=cpu_bf16"
    blockwise_name = f"quality_{tag}_b{'x'.join(map(str, block))}_w{args.workers}"
    blockwise_args = (
        *common, "executor=daisy", f"executor.block_size=[{args.block}]",
        f"executor.workers={args.workers}", f"executor.precision={precision}",
        "executor.keep_blocks=true",
    )  # fmt: skip
    # Google's published segmentation is the whole volume's one canvas in fp32: ffnops's own
    # reproduces it (adapted Rand error 4.2e-5, docs/google-ffn.md), so it is not run again
    # (25,800 FOV steps: hours here) unless --with-local.
    whole = box == BBox.from_shape(shape)
    google_is_local = whole and precision == "fp32"
    canvas = None  # the one-canvas run's metrics, where it runs
    if args.with_local or not google_is_local:
        canvas = infer(workdir, f"quality_{tag}_local", model, image, *common, local_executor)
        print(timing("local", canvas))
    google = None
    if whole:
        reference = need(Path(args.reference), "FFNOPS_GOOGLE_FIB25_DIR")
        with np.load(reference, allow_pickle=False) as data:
            google = data["segmentation"][box.slices].astype(np.int64)  # stored as uint8
    local = read(workdir, f"quality_{tag}_local") if canvas else google
    assert local is not None
    reference = "one canvas" if canvas else "Google's npz"
    labels = labelled(box)
    if labels is not None:  # how often one canvas itself splits and merges the labelled neurons
        part = local[: len(labels)]
        agreement("one canvas vs labels", labels, part)
        print(face_line("one canvas vs labels", face_objects(labels, part, block), n_ids(labels)))
    if google is not None and canvas:  # two one-canvas runs (bf16 against fp32)
        agreement("one canvas vs Google's npz", google, local)
        print(face_line("vs Google's npz", face_objects(google, local, block), n_ids(google)))
    for variant in args.variants:
        overrides = VARIANTS[variant]
        name = blockwise_name + ("" if variant == "apart" else f"_{variant}")
        if variant == "continue_objects":  # waves of one block (2 x 2 x 2 blocks) keep one
            overrides = (*overrides, f"executor.num_threads={os.cpu_count()}")  # worker busy
        v = infer(workdir, name, model, image, *blockwise_args, *overrides)
        print(
            f"\n## blocks {variant} ({' '.join(overrides) or 'the default'}): "
            f"{timing(variant, v)}; {int(v['fragments'])} fragments, "
            f"{int(v.get('objects_continued', 0))} continuations; "
            f"segment {v['seconds_segment']:.1f} s"
            + (f"; command {v['wall_s'] / canvas['wall_s']:.2f}x one canvas's" if canvas else "")
        )
        # Each stitch rule on the same segmented blocks (kept): only matching and relabelling
        # run, into the variant's output again (the job's folder is keyed by its output).
        for rule, stitch in STITCH_RULES.items():
            seconds = ffnops(
                workdir, "infer", f"model={model}", f"image={image}", *blockwise_args,
                *overrides, f"output=zarr://{workdir / name}.zarr", "overwrite=true",
                f"tracking.run_name={name}_{rule}", "viewer.publish=false", *stitch,
            )  # fmt: skip
            restitched = run_metrics(workdir, f"{name}_{rule}")
            print(
                f"\n### {variant}, stitch rule {rule} ({' '.join(stitch)}): restitched in "
                f"{seconds:.0f} s, {int(restitched['stitch_links'])} links, "
                f"{int(restitched.get('stitch_links_dropped', 0))} dropped by disputes"
            )
            compare(read(workdir, name), local, reference, labels, google, block)


def compare(
    result: npt.NDArray[np.int64],
    local: npt.NDArray[np.int64],
    reference: str,
    labels: npt.NDArray[np.int64] | None,
    google: npt.NDArray[np.int64] | None,
    block: list[int],
) -> None:
    """A blockwise result against one canvas (``reference`` names it) and the labels."""
    agreement(f"blockwise vs {reference}", local, result)
    print(face_line(f"vs {reference}", face_objects(local, result, block), n_ids(local)))
    if labels is not None:
        part = result[: len(labels)]
        agreement("blockwise vs labels", labels, part)
        print(face_line("vs labels", face_objects(labels, part, block), n_ids(labels)))
    if google is not None and reference != "Google's npz":
        agreement("blockwise vs Google's npz", google, result)
        print(face_line("vs Google's npz", face_objects(google, result, block), n_ids(google)))


def n_ids(labels: npt.NDArray[np.int64]) -> int:
    return len(np.unique(labels[labels > 0]))


# ---- scaling ------------------------------------------------------------------------------------


def random_convstack() -> ConvStack3DFFNModel:
    """Random weights, but blind to its own seed channel and with the output's sign and bias
    set: each object floods a fixed image-dependent field that follows the synthetic cells (a
    random network's feedback through the seed floods everything or nothing)."""
    torch.manual_seed(1)
    network = ConvStack3DFFNModel(fov_size=17, deltas=4, depth=4, features=16)
    with torch.no_grad():
        network.conv0_a.weight[:, 1] = 0
        network.conv_lom.weight.mul_(-4.0)
        network.conv_lom.bias.fill_(-3.92)
    return network


def scaling(workdir: Path, quick: bool) -> None:
    print("\n## scaling: 1 worker x 2 threads against 2 workers x 1 thread (random ConvStack)")
    n = 80 if quick else 112  # 8 blocks; 112^3: about 3000 FOV steps, 2-3 min a run here
    image_path = workdir / f"synthetic_{n}.zarr"
    if not image_path.exists():
        write_array(f"zarr://{image_path}", synthetic_volume((n,) * 3, 40)[0], chunks=(32,) * 3)
    settings = {**SMALL_FOV, "image_mean": 128, "image_stddev": 33, **REQUEST}
    settings.update(pad_value=0.5, move_threshold=0.6)
    model = register(workdir, "random_convstack", random_convstack(), settings)
    image = f"zarr://{image_path}"
    blocks = [f"executor.block_size=[{n // 2},{n // 2},{n // 2}]", "executor=daisy"]
    runs = []
    for workers, threads in ((1, 2), (2, 1)):
        name = f"scaling_{n}_w{workers}t{threads}"
        overrides = (f"executor.workers={workers}", f"executor.num_threads={threads}")
        runs.append(infer(workdir, name, model, image, *RANDOM_NET, *blocks, *overrides))
    a, b = runs
    print(timing("1 x 2", a))
    print(timing("2 x 1", b))
    same = np.array_equal(read(workdir, f"scaling_{n}_w1t2"), read(workdir, f"scaling_{n}_w2t1"))
    print(
        f"segment phase: {a['seconds_segment']:.1f} s (1 x 2) vs {b['seconds_segment']:.1f} s "
        f"(2 x 1): efficiency {a['seconds_segment'] / b['seconds_segment']:.2f} "
        f"(target >= 0.8); outputs identical: {same} (target True)"
    )

    print(f"\n## overhead: one canvas (executor=cpu) against daisy with one block ({n}^3)")
    local = infer(workdir, f"overhead_{n}_local", model, image, *RANDOM_NET, "executor=cpu")
    one = infer(
        workdir, f"overhead_{n}_daisy", model, image, *RANDOM_NET, "executor=daisy",
        f"executor.block_size=[{n},{n},{n}]", "executor.workers=1", "executor.num_threads=2",
    )  # fmt: skip
    print(timing("one canvas", local))
    print(timing("one block", one))
    same = np.array_equal(*(read(workdir, f"overhead_{n}_{k}") for k in ("local", "daisy")))
    print(
        f"daisy / one canvas: command {one['wall_s'] / local['wall_s']:.2f}, MLflow run "
        f"{one['run_s'] / local['run_s']:.2f}, segment pass {one['seconds_segment']:.1f} s / "
        f"canvas {local['seconds']:.1f} s = {one['seconds_segment'] / local['seconds']:.2f} "
        f"(the pass includes starting the worker process); outputs identical: {same}"
    )


# ---- memory -------------------------------------------------------------------------------------


def cubes(n: int) -> npt.NDArray[np.uint8]:
    """A label volume of background with eight 40^3 cubes, some across block faces."""
    labels = np.zeros((n,) * 3, np.uint8)
    for i, corner in enumerate(CUBES):
        for j, shift in enumerate((0, n // 2)):
            z, y, x = (int(c * n / 2) + shift for c in corner)
            labels[z : z + 40, y : y + 40, x : x + 40] = 2 * i + j + 1
    return labels


def memory(workdir: Path, workers: int, quick: bool) -> None:
    print("\n## memory: peak RSS of a worker (oracle network, grid seeds)")
    small, large = (128, 256) if quick else (256, 512)
    block, big_block = (32, 64) if quick else (64, 128)
    settings = {**SMALL_FOV, "image_mean": 0, "image_stddev": 1, **REQUEST}
    model = register(workdir, "oracle", OracleFFN(17, 4), settings)
    rows = []
    # the same block over two volumes; two block sizes over each volume
    for n, b in ((small, big_block), (large, big_block), (small, block), (large, 2 * big_block)):
        path = workdir / f"cubes_{n}.zarr"
        if not path.exists():
            write_array(f"zarr://{path}", cubes(n), chunks=(64,) * 3)
        m = infer(
            workdir, f"memory_{n}_b{b}", model, f"zarr://{path}", *ORACLE, "executor=daisy",
            f"executor.block_size=[{b},{b},{b}]", f"executor.workers={workers}",
        )  # fmt: skip
        rows.append((n, b, m))
    print(
        f"{'volume':>8} {'block':>6} {'blocks':>6} {'peak RSS/worker':>16} {'scheduler':>10} "
        f"{'canvas':>7}"
    )
    for n, b, m in rows:
        read = min(b + 2 * (8 + 8), n)  # the largest read box: FOV radius 8, overlap 8
        print(  # canvas: a block's image, seed (float32) and segmentation (int32) arrays
            f"{n:>7}^3 {b:>5}^3 {int(m['blocks']):>6} {m['peak_rss_mb_per_worker']:>13.0f} MB "
            f"{m['peak_rss_mb_scheduler']:>7.0f} MB {12 * read**3 / 2**20:>4.0f} MB  "
            f"(command {m['wall_s']:.1f} s)"
        )
    rss = [m["peak_rss_mb_per_worker"] for _, _, m in rows]
    scheduler = [m["peak_rss_mb_scheduler"] for _, _, m in rows]
    largest = max(rss + scheduler)
    print(
        f"volume {large}^3 / {small}^3 (block {big_block}^3): worker {rss[1] / rss[0]:.2f}, "
        f"scheduler {scheduler[1] / scheduler[0]:.2f} (target ~1); block {big_block}^3 / "
        f"{block}^3 ({small}^3 volume): worker {rss[0] / rss[2]:.2f}, {2 * big_block}^3 / "
        f"{big_block}^3 ({large}^3 volume): worker {rss[3] / rss[1]:.2f}; largest process "
        f"{largest:.0f} MB (target < 2048 MB for {large}^3: {largest < 2048})"
    )


def header(precision: str) -> None:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    except OSError:
        lscpu = []
    names = [ln.split(":", 1)[1].strip() for ln in lscpu if ln.startswith("Model name")]
    name = names[0] if names else cpu_model()
    print(
        f"CPU: {name}, {os.cpu_count()} cores, AVX512-BF16/AMX: {cpu_has_fast_bf16()}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads "
        f"({torch.get_num_interop_threads()} inter-op); precision {precision}; "
        f"load {load_average()}"
    )
    print(library_versions("ffnops", "daisy", "numpy", "scikit-image"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["quality", "scaling", "memory", "all"], default="all")
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks_out/blockwise"))
    parser.add_argument("--image", default=f"h5://{FIB25_IMAGE}#raw", help="FFNOPS_FIB25_DIR")
    parser.add_argument("--reference", default=str(GOOGLE_SEGMENTATION), help="Google's npz")
    parser.add_argument("--box", default=None, help="z0:z1,y0:y1,x0:x1 (default: the volume)")
    parser.add_argument("--block", default="125,125,125")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    parser.add_argument(
        "--variants", type=variants, default=list(VARIANTS), help=f"of {', '.join(VARIANTS)}"
    )
    parser.add_argument("--quick", action="store_true", help="smaller synthetic volumes")
    parser.add_argument(
        "--with-local", action="store_true", help="also run the whole volume as one canvas"
    )
    args = parser.parse_args()
    precision = args.precision
    if precision == "auto":
        precision = "bf16" if cpu_has_fast_bf16() else "fp32"
    args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = args.workdir.resolve()
    header(precision)
    if args.part in ("quality", "all"):
        quality(args, workdir, precision)
    if args.part in ("scaling", "all"):
        scaling(workdir, args.quick)
    if args.part in ("memory", "all"):
        memory(workdir, args.workers, args.quick)


if __name__ == "__main__":
    main()
