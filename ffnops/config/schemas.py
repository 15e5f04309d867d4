"""Structured-config schemas: a misspelt key or a wrong type fails at start-up, naming the key.

Groups that build an object carry ``_target_`` (model, trainer); groups that are settings are
plain dataclasses that ``OmegaConf.to_object`` turns into typed objects (tracking, executor,
inference, dataset, paths). Command configs (``plugins``, ``info``, ``convert``) are schemas too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from ffnops.ffn.lr_schedule import LRSchedule
from ffnops.ffn.options import InferenceOptions

# Keys of ``model/`` that say how the network starts, not how it is built: the train command takes
# them out before ``hydra.utils.instantiate``.
MODEL_START_KEYS = ("init_from",)


@dataclass
class ModelConfig:
    """``model/``: the FFN network, built with ``hydra.utils.instantiate``."""

    _target_: str = "ffnops.ffn.model.ConvStack3DFFNModel"
    fov_size: list[int] = field(default_factory=lambda: [33, 33, 33])
    deltas: list[int] = field(default_factory=lambda: [8, 8, 8])
    depth: int = 12
    features: int = 32
    # Start from a registered model's weights (fine-tuning): models:/NAME@ALIAS or NAME/VERSION.
    init_from: str | None = None


@dataclass
class TrainerConfig:
    """``trainer/``: a Lightning Trainer (the train command adds loggers and callbacks)."""

    _target_: str = "pytorch_lightning.Trainer"
    accelerator: str = "cpu"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    max_steps: int = 10000
    val_check_interval: Any = 500
    check_val_every_n_epoch: Any = None
    log_every_n_steps: int = 10
    limit_val_batches: Any = 1.0
    enable_progress_bar: bool = True
    enable_checkpointing: bool = True
    enable_model_summary: bool = True
    deterministic: Any = False
    default_root_dir: str | None = None
    gradient_clip_val: float | None = 0.7
    gradient_clip_algorithm: str = "value"


@dataclass
class SGDConfig:
    """``optimizer/sgd``: the reference's plain SGD (lr 1e-3, no momentum)."""

    _target_: str = "torch.optim.SGD"
    _partial_: bool = True
    lr: float = 0.001
    momentum: float = 0.0
    weight_decay: float = 0.0


@dataclass
class AdamConfig:
    """``optimizer/adam``: Adam with the reference's beta/epsilon."""

    _target_: str = "torch.optim.Adam"
    _partial_: bool = True
    lr: float = 0.001
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0


@dataclass
class TrackingConfig:
    """``tracking/``: where runs and registered models go (MLflow)."""

    tracking_uri: str = "sqlite:///mlflow.db"  # runs and the model registry, in one store
    experiment_name: str = "ffnops"
    run_name: str | None = None
    model_name: str = "ffn"
    alias: str | None = None
    inference_experiment: str = "inference"
    evaluation_experiment: str = "evaluation"  # runs of `ffnops evaluate` without run_id
    agglomeration_experiment: str = "agglomeration"  # runs of `ffnops agglomerate`
    tags: dict[str, str] = field(default_factory=dict)
    parent_run_id: str | None = None  # nest this command's run under a pipeline's run


@dataclass
class ExecutorConfig:
    """``executor/``: which executor runs inference (``name``, a plugin), and where and how the
    network runs (device, threads, batching, precision). docs/inference.md explains blocks.

    ``local`` runs one canvas in this process, or, with ``block_size``, its blocks one batch
    after another; ``daisy`` runs blocks in ``workers`` processes (on a cluster through
    ``worker_command``). ``batch_size`` canvases (blocks) share each network call.
    """

    name: str = "local"
    device: str = "auto"
    num_threads: int | None = None
    batch_size: int = 1
    precision: str = "fp32"
    channels_last: bool = True
    compile: bool = False  # torch.compile (inductor, frozen weights): fused convolutions
    block_size: list[int] | None = None  # (z, y, x) write box of a block; None: no blocks
    overlap: list[int] = field(default_factory=lambda: [8, 8, 8])  # context beyond the FOV radius
    workers: int = 1
    max_retries: int = 2  # a block whose worker died or failed is tried again this often
    block_timeout_s: float | None = None  # a block running longer is retried (None: no limit)
    worker_command: list[str] = field(default_factory=list)  # e.g. [srun, --gres=gpu:1]
    # Where workers reach the scheduler; None: this machine's name for workers started through
    # worker_command, else 127.0.0.1 (the scheduler private to this machine).
    scheduler_host: str | None = None
    worker_start_timeout_s: float = 600.0  # the first worker through worker_command must answer
    stitch_min_voxels: int = 100
    stitch_min_fraction: float = 0.5
    stitch_fraction_of: str = "smaller"  # of the smaller fragment's voxels, or "each" one's
    stitch_disputes: str = "owner"  # a disputed boundary: its write box's block decides, or "join"
    keep_blocks: bool = False  # keep segmented blocks after publishing: restitch without segmenting
    # Blocks in 8 waves; each canvas starts with its finished neighbours' objects and floods on
    # from those that reach into it, as one canvas would (docs/inference.md, "Continuing objects").
    continue_objects: bool = False
    # Each block's canvas floods from the seeds in its context too (its whole read box), in the
    # policy's order, so its neighbours' objects near its faces compete as in one canvas.
    seed_context: bool = False


@dataclass
class PathsConfig:
    """``paths/``: where outputs go, relative to the working directory by default."""

    root_dir: str = "."
    output_dir: str = "${paths.root_dir}/outputs"


@dataclass
class ViewerConfig:
    """``viewer/``: how results are shown in neuroglancer.

    ``ffnops view`` serves data on ``host:port``; links logged by ``ffnops infer`` point there, so
    they open while ``ffnops view RUN_ID`` runs. ``client_url`` is the neuroglancer client the
    logged link opens in (any deployment; ``ffnops view`` also serves an offline one).
    """

    host: str = "127.0.0.1"
    port: int = 8765
    # The client the logged links open in; its origin is the one allowed to read cross-origin.
    client_url: str = "https://neuroglancer-demo.appspot.com"
    layout: str = "4panel"
    publish: bool = True
    # 3-D meshes of every object in the run's copy (docs/inference.md, "Meshes"): true, false,
    # or null: when the box has at most mesh_auto_voxels voxels (256^3: a minute or less).
    meshes: bool | None = None
    mesh_auto_voxels: int = 256**3
    # How many of the largest objects a link opens with selected (their meshes in 3-D).
    shown: int = 10
    # Names this server answers to besides loopback's (its Host header; against DNS rebinding).
    allowed_hosts: list[str] = field(default_factory=list)
    # Where `ffnops view` keeps copies of a remote run's view data while it serves them.
    cache_dir: str = "~/.cache/ffnops/view"


@dataclass
class PluginsCommand:
    """``ffnops plugins``: list installed plugins (or copy the example one: ``template=DIR``)."""

    verbose: bool = False
    template: str | None = None


@dataclass
class InfoCommand:
    """``ffnops info uri=...``: show a volume's metadata without reading it."""

    uri: str = MISSING
    stats: bool = False
    bbox: str | None = None


@dataclass
class ConvertCommand:
    """``ffnops convert src=... dst=...``: copy a volume into another format, chunk by chunk."""

    src: str = MISSING
    dst: str = MISSING
    bbox: str | None = None
    kind: str = "auto"
    chunks: list[int] | None = None
    block: list[int] = field(default_factory=lambda: [128, 256, 256])
    overwrite: bool = False
    paths: PathsConfig = field(default_factory=PathsConfig)


@dataclass
class MeshCommand:
    """``ffnops mesh seg=URI output=precomputed://DIR``: every object's mesh, for neuroglancer."""

    seg: str = MISSING
    output: str = MISSING
    bbox: str | None = None
    block: list[int] = field(default_factory=lambda: [128, 128, 128])
    overwrite: bool = False
    paths: PathsConfig = field(default_factory=PathsConfig)


@dataclass
class SkeletonsCommand:
    """``ffnops skeletons seg=URI output=precomputed://DIR``: every object's skeleton, for
    neuroglancer."""

    seg: str = MISSING
    output: str = MISSING
    bbox: str | None = None
    block: list[int] = field(default_factory=lambda: [128, 128, 128])
    overwrite: bool = False
    paths: PathsConfig = field(default_factory=PathsConfig)


@dataclass
class ConsensusCommand:
    """``ffnops consensus segs=[URI,URI] output=URI``: where segmentations agree
    (docs/agglomeration.md, "Consensus")."""

    segs: list[str] = field(default_factory=list)
    output: str = MISSING
    rule: str = "split"  # split (google/ffn's CONSENSUS_SPLIT) | agree
    min_size: int = 1000  # pieces smaller than this many voxels become 0
    bbox: str | None = None
    block: list[int] = field(default_factory=lambda: [128, 128, 128])
    overwrite: bool = False
    paths: PathsConfig = field(default_factory=PathsConfig)


@dataclass
class PartitionsCommand:
    """``ffnops partitions labels=URI output=URI``: google/ffn's ``compute_partitions.py``."""

    labels: str = MISSING
    output: str = MISSING
    thresholds: list[float] = field(
        default_factory=lambda: [0.025, 0.05, 0.075, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    )
    lom_radius: list[int] = field(default_factory=lambda: [24, 24, 24])
    min_size: int = 10000
    mask: str | None = None
    id_whitelist: list[int] | None = None
    bbox: str | None = None
    overwrite: bool = False


@dataclass
class CoordinatesCommand:
    """``ffnops coordinates volumes=[name:URI,...] output=FILE``: as ``build_coordinates.py``."""

    volumes: list[str] = MISSING
    output: str = MISSING
    margin: list[int] = field(default_factory=lambda: [24, 24, 24])
    seed: int = 0
    max_per_partition: int | None = None
    overwrite: bool = False


@dataclass
class SegmentValidationConfig:
    """``training.validation``: checkpoint selection by segmenting a labelled box every
    ``every_n_steps`` with ``inference`` options; the weights with the lowest ``metric``
    (adapted_rand_error, voi_split, voi_merge or voi) are registered. Off unless ``box`` is set
    (docs/training.md, "Checkpoint selection")."""

    box: str | None = None  # z0:z1,y0:y1,x0:x1 of `volume`; no training patch may reach into it
    # Voxels of image segmented around the box on each side (z, y, x; cut at the volume's
    # faces), as a whole-volume run would see it; only the box is scored.
    context: list[int] = field(default_factory=lambda: [0, 0, 0])
    volume: str | None = None  # a data.volumes name; None: the first
    every_n_steps: int = 100
    metric: str = "adapted_rand_error"
    inference: InferenceOptions = field(default_factory=InferenceOptions)


@dataclass
class TrainingSettings:
    """How FOVs move during training and what is logged (google/ffn's ``train.py``)."""

    fov_policy: str = "fixed"
    fov_moves: int = 1
    shuffle_moves: bool = True
    threshold: float = 0.9
    seed_pad: float = 0.05
    batch_size: int = 4
    checkpoint_every_n_steps: int = 500  # the best checkpoint, by validation F1
    last_checkpoint_every_n_steps: int = 50  # last.ckpt, which `resume=` continues from
    log_images_every_n_steps: int = 500
    channels_last: bool = False
    lr_schedule: LRSchedule = field(default_factory=LRSchedule)  # docs/training.md
    validation: SegmentValidationConfig = field(default_factory=SegmentValidationConfig)


@dataclass
class AugmentationConfig:
    """Axes (0 = z, 1 = y, 2 = x) permuted among themselves / reflected, as the reference."""

    enabled: bool = True
    permutable_axes: list[int] = field(default_factory=lambda: [1, 2])
    reflectable_axes: list[int] = field(default_factory=lambda: [0, 1, 2])


@dataclass
class HardExamplesConfig:
    """``data.hard_examples``: draw the coordinates a model gets wrong more often
    (docs/training.md, "Hard examples")."""

    # data.volumes name -> that volume's segmentation (URI) by the model being fine-tuned
    segmentation: dict[str, str] = field(default_factory=dict)
    weight: float | None = None  # hard coordinates are drawn this many times as often; None: 4


@dataclass
class TrainData:
    """Coordinates, the volumes they name, validation hold-out, loader workers."""

    coordinates: str = MISSING
    volumes: dict[str, Any] = field(default_factory=dict)
    val_coordinates: str | None = None
    val_fraction: float = 0.02
    max_val_examples: int = 64
    num_workers: int = 1
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    hard_examples: HardExamplesConfig = field(default_factory=HardExamplesConfig)


@dataclass
class TrainCommand:
    """``ffnops train data.coordinates=FILE``: FOV-moving training, tracked in MLflow."""

    data: TrainData = field(default_factory=TrainData)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: Any = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = 0
    resume: str | None = None


@dataclass
class EvaluationConfig:
    """``evaluation``: how a segmentation is scored against a ground truth (docs/evaluation.md).

    A segment counts for an object (a split piece, a merged-in part) when they share at least
    ``min_overlap`` voxels. Without ``skeletons=`` (SWC), ERL runs over kimimaro's skeletons of
    the dense ground truth (objects of at least ``skeleton_dust_voxels``) unless ``skeletonize``
    is false.
    """

    min_overlap: int = 100
    skeletonize: bool = True
    skeleton_dust_voxels: int = 1000
    # nm per voxel (z, y, x) for skeletons and ERL, where the volumes do not store it (they then
    # say 1, e.g. FIB-25's HDF5 files, whose voxels are 8 nm); None: the volumes' own
    voxel_size: list[float] | None = None


@dataclass
class InferCommand:
    """``ffnops infer model=models:/NAME@ALIAS image=URI output=URI``: FFN inference."""

    model_uri: str = "models:/ffn@champion"  # `model=models:/...` on the command line sets this
    image: str = MISSING
    output: str = MISSING
    bbox: str | None = None
    groundtruth: str | None = None
    # The part of bbox scored against groundtruth (volume voxels); the rest of bbox is context
    # a whole-volume run would have given. None: all of bbox the ground truth covers.
    eval_bbox: str | None = None
    skeletons: str | None = None  # SWC skeletons of the ground truth (else kimimaro's)
    mask: str | None = None
    image_mean: float | None = None
    image_stddev: float | None = None
    overwrite: bool = False
    inference: InferenceOptions = field(default_factory=InferenceOptions)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    viewer: ViewerConfig = field(default_factory=ViewerConfig)


@dataclass
class AgglomerateCommand:
    """``ffnops agglomerate model=models:/... seg=URI image=URI output=URI``: join objects that
    the FFN, run again on their contact, floods into each other (docs/agglomeration.md)."""

    model_uri: str = "models:/ffn@champion"
    seg: str = MISSING
    image: str = MISSING
    output: str = MISSING
    bbox: str | None = None
    mask: str | None = None
    image_mean: float | None = None
    image_stddev: float | None = None
    radius: list[int] = field(default_factory=lambda: [24, 24, 24])  # subvolume: 2 r + 1
    analysis_radius: list[int] = field(default_factory=lambda: [16, 16, 16])
    min_contact: int = 20  # voxel faces; smaller contacts are not tried
    min_voxels: int = 1000  # objects smaller than this are not tried
    merge_iou: float = 0.7  # join when the two floods' IoU is at least this ...
    min_recovery: float = 0.6  # ... and each flood recovers this much of its own object
    # Scored before and after against these labels, as `infer groundtruth=` scores (eval_input/
    # and eval/ metrics); eval_bbox: the part of bbox scored, the rest being context.
    groundtruth: str | None = None
    eval_bbox: str | None = None
    skeletons: str | None = None  # SWC skeletons of the ground truth (else kimimaro's)
    overwrite: bool = False
    inference: InferenceOptions = field(default_factory=InferenceOptions)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)


@dataclass
class ViewCommand:
    """``ffnops view RUN_ID|URI``: look at an inference run, or a segmentation, in neuroglancer."""

    target: str = MISSING  # an MLflow run id, or a segmentation URI
    image: str | None = None
    bbox: str | None = None
    open_browser: bool = False
    timeout_s: float | None = None  # stop serving after this long (scripts, tests); None: Ctrl-C
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    viewer: ViewerConfig = field(default_factory=ViewerConfig)


@dataclass
class EvaluateCommand:
    """``ffnops evaluate seg=URI gt=URI [skeletons=SWC]``: VOI, adapted Rand error, ERL and the
    error list, in an MLflow run (``run_id``'s, or a new one in ``evaluation_experiment``)."""

    seg: str = MISSING
    gt: str | None = None  # None: the ground-truth-free queue of likely errors only
    skeletons: str | None = None  # an SWC file or a folder of them (x y z in nm)
    image: str | None = None  # shown under the segmentation in the error links
    bbox: str | None = None
    run_id: str | None = None
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    viewer: ViewerConfig = field(default_factory=ViewerConfig)


@dataclass
class ImportCheckpointCommand:
    """``ffnops import-checkpoint PATH model_name=NAME``: a TF checkpoint as a registered model."""

    checkpoint: str = MISSING
    model_name: str = MISSING
    alias: str | None = None
    request: str | None = None
    # Unset (None): from the request, else Google's FIB-25 values; set: must agree with both.
    fov_size: list[int] | None = None
    deltas: list[int] | None = None
    depth: int | None = None
    features: int | None = None
    image_mean: float | None = None
    image_stddev: float | None = None
    init_activation: float | None = None
    pad_value: float | None = None
    move_threshold: float | None = None
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


@dataclass
class QuickstartSettings:
    """What the quickstart works on: the bundled crop, split into a training and an unseen part."""

    init: str = "pretrained"  # fine-tune Google's model; "scratch": train a new one
    model_name: str = "fib25_quickstart"
    output_dir: str = "quickstart"
    # Three disjoint parts of the 160 x 128 x 128 crop (z, y, x). Partitions and coordinates
    # come from train_box, and training patches stay inside it; val_box chooses the fine-tuned
    # checkpoint; eval_box is only reported. Both are segmented with `context` voxels of image
    # around them (as a whole-volume run would see them) and scored on the box.
    train_box: str = "0:72,0:128,0:128"
    val_box: str = "72:108,16:112,16:112"
    eval_box: str = "116:160,16:112,16:112"
    context: list[int] = field(default_factory=lambda: [8, 8, 8])
    lom_radius: list[int] = field(default_factory=lambda: [24, 24, 24])
    min_size: int = 10000


@dataclass
class QuickstartTrain:
    """The fine-tuning step (any other ``ffnops train`` override goes in ``overrides``).

    The recipe (docs/training.md, "The fine-tuning recipe"): Adam at 1e-5, a hundredth of
    Google's from-scratch rate, the validation box segmented at step 0 and at the end."""

    max_steps: int = 40
    batch_size: int = 4
    optimizer: str = "adam"  # a conf/optimizer option: adam or sgd
    lr: float = 1e-5  # from scratch (quickstart.init=scratch) wants Google's 1e-3
    precision: str = "auto"  # bf16 where the CPU has AVX512-BF16/AMX (or on a GPU), else 32
    validate_every_n_steps: int = 40  # segment val_box and keep the best weights
    overrides: list[str] = field(default_factory=list)


@dataclass
class QuickstartInfer:
    """The two inference steps (the same settings for both models)."""

    executor: str = "cpu"
    overrides: list[str] = field(default_factory=list)


@dataclass
class QuickstartAgglomerate:
    """The last step: agglomeration (docs/agglomeration.md) of the champion's segmentation,
    tried on the validation box and kept for the evaluation box only when it wins there (run
    length up, VOI merge up by at most ``max_merge_rise``). Any other ``ffnops agglomerate``
    override (``merge_iou=0.8``, google/ffn's suggestion) goes in ``overrides``."""

    enabled: bool = True
    max_merge_rise: float = 0.05
    overrides: list[str] = field(default_factory=list)


@dataclass
class QuickstartCommand:
    """``ffnops quickstart``: import -> partitions -> coordinates -> fine-tune -> infer both ->
    agglomerate where it wins."""

    quickstart: QuickstartSettings = field(default_factory=QuickstartSettings)
    train: QuickstartTrain = field(default_factory=QuickstartTrain)
    infer: QuickstartInfer = field(default_factory=QuickstartInfer)
    agglomerate: QuickstartAgglomerate = field(default_factory=QuickstartAgglomerate)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


@dataclass
class Fib25Data:
    """Where FIB-25 ``training_sample2`` lives, and its three disjoint parts (docs/quality.md,
    "Protocol"): training patches stay in train_box, val_box chooses the checkpoint, eval_box
    is only reported; both boxes are segmented with ``context`` voxels of image around them."""

    image: str = MISSING
    labels: str = MISSING
    train_box: str = "0:110,0:250,0:250"
    val_box: str = "125:175,0:125,125:250"
    eval_box: str = "125:175,0:125,0:125"
    context: list[int] = field(default_factory=lambda: [16, 16, 16])
    voxel_size: list[float] = field(default_factory=lambda: [8.0, 8.0, 8.0])  # nm; HDF5 says 1


@dataclass
class Fib25Command:
    """``ffnops fib25``: Google's FIB-25 recipe (partitions -> coordinates -> train -> infer)."""

    data: Fib25Data = field(default_factory=Fib25Data)
    init: str = "scratch"  # scratch: a new network; google: fine-tune Google's released model
    validate_every_n_steps: int = 5000  # segment data.val_box and keep the best weights
    partitions: list[str] = field(default_factory=list)
    coordinates: list[str] = field(default_factory=list)
    train: list[str] = field(default_factory=list)
    infer: list[str] = field(default_factory=list)
    output_dir: str = "fib25"
    dry_run: bool = False
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


@dataclass
class ServerCommand:
    """``ffnops server``: a team's MLflow tracking server (docs/team.md): a database backend
    store (PostgreSQL for a team), artifacts served through the server, MLflow's basic-auth app.

    Secrets come from the environment, never from the config (Hydra writes configs to disk):
    ``MLFLOW_FLASK_SERVER_SECRET_KEY`` and, for the first start, ``MLFLOW_AUTH_ADMIN_PASSWORD``.
    """

    backend_store_uri: str = "sqlite:///mlflow-server/mlflow.db"  # postgresql://user@host/db
    artifacts_destination: str = "mlflow-server/artifacts"  # a folder, or s3://, gs://, ...
    auth_database_uri: str = "sqlite:///mlflow-server/basic_auth.db"  # users and permissions
    state_dir: str = "mlflow-server"  # where the auth config file is written
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 2
    default_permission: str = "READ"  # what a signed-in user may do without a grant
    admin_username: str = "admin"
    allowed_hosts: list[str] = field(default_factory=list)  # Host names besides localhost/LAN IPs
    dry_run: bool = False  # check and print the server command, do not start it


@dataclass
class ModelsCommand:
    """``ffnops models NAME``: a registered model's versions, aliases, parents and scores;
    ``resave=VERSION`` registers a pickled (legacy) version again as safe files."""

    name: str = MISSING
    resave: int | None = None
    score: str = "eval/adapted_rand_error"  # the metric shown per version (its newest scored run)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


@dataclass
class PromoteCommand:
    """``ffnops promote models:/NAME/VERSION ALIAS``: move an alias, with an evaluation gate."""

    model_uri: str = MISSING  # models:/NAME/VERSION or models:/NAME@ALIAS
    alias: str = MISSING
    reason: str | None = None
    evaluation: str | None = None  # the run name of the evaluation both versions are scored on
    metric: str = "eval/adapted_rand_error"
    force: bool = False  # promote even if the gate refuses
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


@dataclass
class TuneCommand:
    """``ffnops tune models:/NAME/VERSION evaluation=RUN_NAME``: register the version again with
    the inference options of its best run named ``evaluation`` (a settings search)."""

    model_uri: str = MISSING  # models:/NAME/VERSION or models:/NAME@ALIAS
    evaluation: str = MISSING  # the run name the search's inference runs share
    metric: str = "eval/adapted_rand_error"
    alias: str | None = None  # given to the new version
    dry_run: bool = False  # print the ranking, register nothing
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
