"""The configuration of a training run: every knob, its default and its help text, in one place.

`TrainConfig` is the single typed source the commands are built from (mocohd_cli/commands/
options.py turns each field into a command-line option, with the help text below and the default
read from the field), and the TOML files a run writes and reads (`--config`, `config.toml`) hold
the same names. Defaults are the release's (docs/method.md, "Settings of the release") unless a
comment says otherwise.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import math
import os
from pathlib import Path

from ..data.video import check_fps
from ..evaluation.metrics import get_metric
from ..infra.device import DEVICES, PRECISIONS
from ..infra.errors import MocohdError
from ..infra.runs import DEFAULT_RUNS_ROOT
from ..infra.settings import check_setting_types, require_positive, setting, settings_from_dict
from ..models.backbone import BACKBONE_HELP, ImageGenerator, check_truncation
from ..models.motion import DEFAULT_H_DIM, DEFAULT_N_PCA, DEFAULT_W_RESIDUAL, default_n_pca
from .latent_phase import LATENT_PHASE
from .projections import PROJECTED_VIDEOS

MODES = ("in-domain", "cross-domain")
SAMPLE_FORMATS = ("mp4", "gif", "png")
PCA_SOURCES = ("latents", "videos")  # --pca-source: what the motion basis is the PCA of
# --video-d-view: what the video discriminator sees (training/objectives/base.py; each mode defines "clip")
VIDEO_VIEWS = ("clip", "motion")
# The discriminators' frame size left to the backbone: the release's, capped by the backbone's resolution.
DEFAULT_VIDEO_FRAME_SIZE = 128
DEFAULT_EPOCHS = 100


_UNSET = object()


def knob(default, help: str, *, group: str, modes: tuple[str, ...] = MODES, fixed: bool = False, since=_UNSET,
         hi: int | None = None, **cli):
    """A TrainConfig field (mocohd_cli/infra/settings.py) offered by the commands of `modes`
    (train: in-domain, transfer: cross-domain), in the help panel and TOML group `group` (GROUPS).

    fixed: a resumed run must keep the value of the run it continues (it shapes the models or the
    data stream); since: the value that states written before the field existed were trained with
    (a fixed field added later); hi: the largest value accepted (larger ones are typos: far past the
    release's settings and short of what a machine holds)."""
    declared = {"fixed": fixed} | ({"since": since} if since is not _UNSET else {}) | ({"hi": hi} if hi else {})
    return setting(default, help, modes=modes, group=group, **declared, **cli)


CROSS = ("cross-domain",)


@dataclass
class TrainConfig:
    """Every knob of a training run."""

    # what to train
    mode: str = knob("in-domain", "in-domain or cross-domain (set by the command).", cli=False,
                     group="Inputs", fixed=True)
    backbone: str | None = knob(None, BACKBONE_HELP,
                                default_text="inferred from the checkpoint", group="Inputs", metavar="NAME")
    checkpoint: str | None = knob(None, "Image-generator checkpoint (frozen during training).",
                                  group="Inputs", metavar="PATH")
    data: str | None = knob(None, "Videos: a folder (or .zip) of frame folders or video files, or tar shards "
                            "('DIR/NAME-{000000..000099}.tar').",
                            group="Inputs", metavar="PATH")
    preset: str | None = knob(None, "The release's settings for one of its datasets (--list-presets shows "
                              "them); options given override it.", group="Inputs", metavar="NAME")
    out: str | None = knob(None, "Run folder.", default_text=f"{DEFAULT_RUNS_ROOT}/train-<time>",
                           group="Output", metavar="DIR")
    runs_root: str = knob(str(DEFAULT_RUNS_ROOT), "Where new run folders go.", group="Output", metavar="DIR")
    resume: bool = knob(False, "Continue the run in --out (or the latest run with a state) from its state.",
                        group="Output")
    # real clips
    frames: int = knob(16, "Frames per training clip.", group="Data", fixed=True, hi=1024)
    time_step: int = knob(2, "Take every N-th frame of the source videos.", group="Data", fixed=True, hi=1000)
    video_frame_size: int | None = knob(None, "Side of the frames the discriminators see.",
                                        default_text=f"{DEFAULT_VIDEO_FRAME_SIZE}, or the backbone's resolution "
                                                     "if smaller", group="Data", fixed=True)
    # motion generator
    h_dim: int = knob(DEFAULT_H_DIM, "LSTM hidden size.", group="Motion generator", fixed=True, hi=8192)
    n_pca: int | None = knob(None, "PCA components the motion moves along.",
                             default_text=f"{DEFAULT_N_PCA}, or the latent size if smaller",
                             group="Motion generator", fixed=True, hi=65_536)
    w_residual: float = knob(DEFAULT_W_RESIDUAL, "Step size lambda of the latent residual (the authors advise <= 0.5).",
                             group="Motion generator", fixed=True)
    motion_feedback: bool = knob(False, "The LSTM also reads where its walk is (w_{t-1} - w_0 in the basis' units) "
                                 "beside each motion code, so its steps can depend on how far it has gone.",
                                 group="Motion generator", fixed=True, since=False)
    pca_samples: int = knob(1_000_000, "Latents sampled for the motion-space PCA (cached per checkpoint).",
                            group="Motion generator", hi=100_000_000)
    pca: bool = knob(True, "Move along the principal directions of the latent space, scaled by their spread; "
                     "--no-pca moves along the first n_pca latent axes with unit scale (an ablation).",
                     group="Motion generator", fixed=True)
    pca_source: str = knob("latents", "What the motion basis is the PCA of: latents (the release's: sampled "
                           "content codes) or videos (the walks of the training videos projected into the "
                           "backbone).", modes=("in-domain",),
                           group="Motion generator", fixed=True, since="latents", choices=PCA_SOURCES)
    truncation: float = knob(1.0, "Truncation of the content codes.", group="Inputs")
    classes: list[int] | None = knob(None, "Conditional backbones: a class (index, or name with --labels) the "
                                     "videos cycle over; repeat for several.", flag="--class", cli_type=list[str],
                                     default_text="random", group="Inputs")
    # discriminators and losses
    d_scales: int = knob(2, "Scales of the multi-scale PatchGAN discriminators.", group="Objective", fixed=True, hi=8)
    d_channels: int = knob(64, "Width of the PatchGAN discriminators' first layer.",
                           group="Objective", fixed=True, hi=1024)
    d_layers: int = knob(3, "Strided layers per PatchGAN scale.", group="Objective", fixed=True, hi=8)
    gp_weight: float = knob(10.0, "Weight of the video discriminator's gradient penalty.", group="Objective")
    w_mi: float = knob(1.0, "Weight of the mutual-information loss (0: an ablation).", group="Objective")
    # not in the release (docs/method.md, "Additions"): 0 keeps the release's objective
    w_drift: float = knob(0.0, "Weight of the shared-drift penalty: videos of a batch must not all walk the same "
                          "way in the latent space (real videos are stationary).", group="Loss terms")
    drift_momentum: float = knob(0.0, "Shared-drift penalty against the batch (0) or a running mean of the "
                                 "walks with this momentum (docs/method.md).",
                                 group="Loss terms", fixed=True, since=0.0)
    drift_horizon: int | None = knob(None, "Frames the latents are unrolled for the shared-drift penalty "
                                     "(latents only).", default_text="--frames",
                                     group="Loss terms", hi=4096)
    w_latent_motion: float = knob(0.0, "Weight of the latent motion discriminator: generated walks against "
                                  "the projected training videos' walks.", modes=("in-domain",), group="Loss terms",
                                  fixed=True, since=0.0)
    latent_motion: str | None = knob(None, "Projections of the training videos, for the latent motion "
                                     "discriminator and --pca-source videos.",
                                     default_text="the training videos, projected on first use",
                                     modes=("in-domain",), group="Loss terms", metavar="FILE")
    w_walk: float = knob(0.0, "Weight of walk matching: energy distance between the generated walks and the projected "
                         "training videos' walks in the latent space.", modes=("in-domain",),
                         group="Loss terms")
    walk_batch: int = knob(256, "Walks rolled out per step for walk matching (no frames are synthesised for them).",
                           modes=("in-domain",), group="Loss terms", hi=1_000_000)
    walk_frames: int | None = knob(None, "Frames per window that walk matching compares.",
                                   default_text="the projected videos' length, at most the rollout's",
                                   modes=("in-domain",), group="Loss terms", hi=4096)
    w_identity: float = knob(0.0, "Weight of the identity loss: frames keep frame 0's identity as closely "
                             "as the training videos do (needs an identity encoder).", modes=("in-domain",),
                             group="Loss terms", fixed=True, since=0.0)
    identity_encoder: str | None = knob(None, "Identity encoder file for the identity loss (mocohd trains one on "
                                        "the training videos and caches it the first time).",
                                        default_text="trained on the training videos on first use",
                                        modes=("in-domain",), group="Loss terms", metavar="FILE")
    identity_horizon: int | None = knob(None, "Frames the identity loss covers (unrolled past --frames; "
                                        "docs/training.md).", default_text="--frames", modes=("in-domain",),
                                        group="Loss terms", hi=4096)
    image_horizon: int | None = knob(None, "Frames the image discriminator covers (unrolled past --frames; "
                                     "docs/training.md). With --identity-horizon, the same value.",
                                     default_text="--frames", modes=("in-domain",), group="Loss terms", hi=4096)
    # the latent phase (not in the release: docs/method.md, "Additions", "Latent phase"), before the rendered steps
    latent_iterations: int = knob(0, "Steps of the latent phase before rendered training: learn the "
                                  "projected videos' walks without rendering (0: none).", modes=("in-domain",),
                                  group="Latent phase", fixed=True, since=0, hi=1_000_000_000)
    latent_batch: int = knob(LATENT_PHASE.batch, "Projected windows per latent-phase step.", modes=("in-domain",),
                             group="Latent phase", hi=1_000_000)
    latent_samples: int = knob(LATENT_PHASE.samples, "Walks the latent phase rolls out from each window's start "
                               "(at least 2).", modes=("in-domain",), group="Latent phase", hi=1024)
    latent_frames: int | None = knob(None, "Frames per projected window the latent phase learns (its walks are "
                                     "unrolled as far).", default_text="the projected videos' length",
                                     modes=("in-domain",), group="Latent phase", fixed=True, since=None, hi=4096)
    latent_horizon: int = knob(LATENT_PHASE.horizon, "Frames the latent phase unrolls its walks to, matching the "
                               "projected videos' displacements past --latent-frames.",
                               modes=("in-domain",),
                               group="Latent phase", fixed=True, since=LATENT_PHASE.horizon, hi=4096)
    w_latent_horizon: float = knob(LATENT_PHASE.w_horizon, "Weight of that term (energy distance; 0: none).",
                                   modes=("in-domain",), group="Latent phase", fixed=True, since=LATENT_PHASE.w_horizon)
    latent_lr: float = knob(LATENT_PHASE.lr, "Adam learning rate of the latent phase.", modes=("in-domain",),
                            group="Latent phase")
    w_latent_adversarial: float = knob(LATENT_PHASE.w_adversarial, "Weight of the latent phase's conditional "
                                       "trajectory discriminator (it judges a walk given its start) beside its "
                                       "energy score.", modes=("in-domain",),
                                       group="Latent phase", fixed=True, since=0.0)
    projected_videos: int = knob(PROJECTED_VIDEOS, "Training videos projected into the backbone for the latent "
                                 "phase, the latent motion discriminator and --pca-source videos (when no "
                                 "--latent-motion file is given).", modes=("in-domain",),
                                 group="Latent phase", fixed=True, since=64, hi=1_000_000)
    # cross-domain objective only (docs/method.md, "Cross-domain training")
    image_d_channels: int = knob(96, "Base width of the contrastive image discriminator.", modes=CROSS,
                                 group="Objective", hi=1024)
    proj_dim: int = knob(256, "Size of its projection head's features.", modes=CROSS, group="Objective", hi=8192)
    queue_size: int = knob(4096, "Length of its feature queues.", modes=CROSS, group="Objective", hi=1_000_000)
    momentum: float = knob(0.999, "EMA momentum of its momentum copy.", modes=CROSS, group="Objective")
    temperature: float = knob(0.07, "Temperature of the contrastive loss.", modes=CROSS, group="Objective")
    w_contrastive: float = knob(2.0, "Weight of the contrastive terms in its loss.", modes=CROSS, group="Objective")
    w_match: float = knob(1.0, "Weight of the frame-t/frame-0 feature matching in the motion objective.",
                          modes=CROSS, group="Objective")
    image_d_colour_shift: bool = knob(True, "Colour shifts among the contrastive image discriminator's "
                                      "augmentations (the release's); off: a change of colour is penalised.",
                                      modes=CROSS, group="Objective")
    # not in the release (docs/method.md, "Additions"): "clip" is the release's view
    video_d_view: str = knob("clip", "What the video discriminator sees: clip (the release's: frames beside "
                             "frame 0) or motion (each frame minus frame 0).",
                             group="Objective", fixed=True, since="clip", choices=VIDEO_VIEWS)
    # optimisation
    batch_size: int = knob(16, "Clips per batch and process (the release's --batchSize is the total: see "
                           "--global-batch).", group="Optimisation", fixed=True, hi=1_000_000)
    global_batch: int | None = knob(None, "Clips per batch over all processes (as the release counts); sets "
                                    "--batch-size to this divided by the number of processes.",
                                    group="Optimisation", hi=1_000_000)
    lr: float = knob(1e-4, "Adam learning rate, all models.", group="Optimisation")
    beta1: float = knob(0.5, "Adam beta1 of the motion generator and the PatchGAN discriminators.",
                        group="Optimisation")
    beta2: float = knob(0.999, "Adam beta2 of the motion generator and the PatchGAN discriminators.",
                        group="Optimisation")
    g_steps: int = knob(5, "Motion-generator steps per discriminator step.", group="Optimisation", fixed=True, hi=100)
    iterations: int | None = knob(None, "Training iterations (real batches).", default_text="from --epochs",
                                  group="Optimisation", hi=1_000_000_000)
    epochs: float | None = knob(None, "Passes over the dataset when --iterations is absent.",
                                default_text=str(DEFAULT_EPOCHS), group="Optimisation")
    seed: int = knob(0, "Random seed: the same seed, device and thread count give the same run.",
                     group="Optimisation", fixed=True)
    # machine
    device: str = knob("auto", "Where it trains (auto: CUDA when there is one).", group="Machine", choices=DEVICES)
    precision: str = knob("fp32", "Autocast precision (fp16 with a gradient scaler, CUDA only).",
                          group="Machine", choices=PRECISIONS)
    checkpointing: bool = knob(False, "Gradient checkpointing of the frozen generator's synthesis: far less "
                               "memory per clip (1024 px on one GPU) for about a third more generator work.",
                               group="Machine")
    # 2: on 2 cores one worker already hides the reading; a second is headroom (benchmarks/data_speed.py)
    workers: int = knob(2, "DataLoader worker processes.", group="Data", hi=64)
    # outputs
    log_every: int = knob(10, "Log losses every N iterations.", group="Output")
    sample_every: int = knob(500, "Sample videos and export motion_step_N.safetensors every N iterations.",
                             group="Output")
    checkpoint_every: int = knob(100, "Write the training state (state/latest.pt) every N iterations.", group="Output")
    checkpoint_minutes: float | None = knob(None, "Also write the training state every N minutes.",
                                            default_text="off", group="Output")
    minutes: float | None = knob(None, "Stop after N minutes, with the state and the model saved (continue "
                                 "with --resume).", default_text="no limit", group="Output")
    objective: str | None = knob(None, "The objective to train against, by the name a plugin registered it "
                                 "under (entry-point group mocohd.objectives).", default_text="the mode's own",
                                 group="Objective", fixed=True, since=None, metavar="NAME")
    terms: list[str] | None = knob(None, "A loss term a plugin registered, with its weight: NAME=WEIGHT "
                                   "(repeat).", flag="--term", default_text="none", group="Loss terms",
                                   metavar="NAME=WEIGHT")
    num_samples: int = knob(4, "Videos in each sample grid.", group="Output", hi=1024)
    sample_format: str = knob("mp4", "Sample videos as mp4, gif or png.", group="Output", choices=SAMPLE_FORMATS)
    fps: float = knob(8.0, "Frames per second of samples and of the exported model.", group="Output")
    # evaluation during training (mocohd_cli/evaluation, docs/evaluation.md)
    eval_every: int | None = knob(None, "Evaluate every N iterations (and at the end); keeps best.safetensors.",
                                  default_text="off", group="Evaluation")
    eval_metric: str = knob("fvd16", "Metric of --eval-every (`mocohd eval --help` lists them; motion, content "
                            "and frames need a procedural dataset).", group="Evaluation", metavar="NAME")
    eval_videos: int = knob(256, "Generated videos per evaluation (real: as many clips of --data).",
                            group="Evaluation", hi=100_000)
    eval_detectors: list[str] | None = knob(None, "Detector files for --eval-metric: NAME=PATH (repeat).",
                                            flag="--eval-detector", default_text="the cache, else a download",
                                            group="Evaluation", metavar="NAME=PATH")

    @classmethod
    def from_dict(cls, values: dict, *, source: str | Path | None = None) -> "TrainConfig":
        """Build from (for example TOML) values; dashes in keys are accepted; unknown keys are an error.
        Fields may also sit in a table of their group (`[latent-phase]`, `[data]`: group_key names them),
        beside the flat names that config files, presets and run states have always used."""
        return settings_from_dict(cls, ungrouped(values, source=source), what="training", source=source)

    def grouped(self) -> dict[str, dict]:
        """The settings by group, in GROUPS' order: {group_key(group): {field: value}}."""
        tables: dict[str, dict] = {group_key(group): {} for group in GROUPS}
        for field in dataclasses.fields(self):
            if "group" in field.metadata:
                tables[group_key(field.metadata["group"])][field.name] = getattr(self, field.name)
        return tables

    @property
    def drift_frames(self) -> int:
        """Frames of the rollout that the discriminators, the MI loss and the shared-drift penalty see:
        --drift-horizon, at least --frames (the identity loss may look further, --identity-horizon)."""
        return max(self.drift_horizon or 0, self.frames)

    @property
    def later_horizon(self) -> int | None:
        """The horizon of the frames synthesised past the clip for the identity loss and the image
        discriminator (--identity-horizon, --image-horizon: equal when both are given); None when neither
        reaches past --frames."""
        horizon = max(self.identity_horizon or 0, self.image_horizon or 0)
        return horizon if horizon > self.frames else None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        def need(ok: bool, message: str, fix: str) -> None:
            if not ok:
                raise MocohdError(message, fix=fix)

        check_setting_types(self)  # finite floats, 64-bit ints (typer checks only the Python type)
        need(self.mode in MODES, f"unknown mode {self.mode!r}", f"use one of {', '.join(MODES)}")
        too_large = [(name, bound) for name, bound in UPPER_BOUNDS.items()
                     if getattr(self, name) is not None and getattr(self, name) > bound]
        for name, bound in too_large[:1]:
            need(False, f"--{name.replace('_', '-')} must be <= {bound:,}, got {getattr(self, name):,}",
                 "the release's settings are far smaller (docs/method.md); this looks like a typo")
        need(0 <= self.seed, f"--seed must be >= 0, got {self.seed}", "use a non-negative seed")
        check_fps(self.fps, self.sample_format)  # before training: a bad rate must not fail the export at the end
        need(0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0,
             f"--beta1 and --beta2 must be in [0, 1), got {self.beta1} and {self.beta2}", "the authors use 0.5 and 0.999")
        need(self.w_residual >= 0 and self.gp_weight >= 0, "--w-residual and --gp-weight must be >= 0",
             "the authors use 0.2 and 10")
        need(all(w >= 0 for w in (self.w_drift, self.w_mi, self.w_latent_motion, self.w_walk, self.w_identity)),
             "--w-drift, --w-mi, --w-latent-motion, --w-walk and --w-identity must be >= 0", "0 turns a term off")
        need(self.walk_frames is None or self.walk_frames >= 2, f"--walk-frames must be >= 2, got {self.walk_frames}",
             "leave it out (the projected videos' length) or pass 2 or more")
        need(0.0 <= self.drift_momentum < 1.0, f"--drift-momentum must be in [0, 1), got {self.drift_momentum}",
             "0 (pairs within the batch) or e.g. 0.9")
        for name in ("drift_horizon", "identity_horizon", "image_horizon"):
            horizon = getattr(self, name)
            need(horizon is None or horizon >= self.frames,
                 f"--{name.replace('_', '-')} must be at least --frames ({self.frames}), got {horizon}",
                 "leave it out (it defaults to --frames) or make it longer")
        need(self.image_horizon is None or self.mode == "in-domain",
             "--image-horizon is the in-domain image discriminator's", "leave it out of cross-domain runs")
        need(self.identity_horizon is None or self.image_horizon is None or self.identity_horizon == self.image_horizon,
             f"--identity-horizon {self.identity_horizon} and --image-horizon {self.image_horizon} differ; both judge "
             "the same frames past the clip", "give them the same value, or leave one out")
        need(self.identity_horizon is None or self.w_identity > 0,
             "--identity-horizon is the identity loss's, which is off (--w-identity 0)",
             "add --w-identity (e.g. 5) or leave --identity-horizon out")
        # the video discriminator's pooling between scales is 3 frames deep and, in-domain, it sees T-1 frames
        need(self.frames >= 4, f"--frames must be >= 4, got {self.frames}",
             "the video discriminator needs clips of at least 4 frames: use --frames 4 or more")
        require_positive(self, ("time_step", "video_frame_size", "h_dim", "n_pca", "batch_size", "global_batch",
                                "g_steps", "walk_batch", "d_scales", "d_channels", "d_layers", "log_every", "sample_every",
                                "checkpoint_every", "pca_samples", "iterations", "eval_every", "eval_videos"))
        need(all(v is None or v > 0 for v in (self.minutes, self.checkpoint_minutes)),
             "--minutes and --checkpoint-minutes must be > 0", "leave them out, or pass e.g. 30")
        need(self.latent_iterations >= 0 and self.latent_batch >= 1 and self.latent_samples >= 2
             and self.latent_lr > 0 and self.w_latent_adversarial >= 0 and self.projected_videos >= 1
             and (self.latent_frames is None or self.latent_frames >= 2) and self.latent_horizon >= 0
             and self.w_latent_horizon >= 0,
             "--latent-iterations >= 0, --latent-batch >= 1, --latent-samples >= 2, --latent-lr > 0, "
             "--w-latent-adversarial >= 0, --projected-videos >= 1 and --latent-frames >= 2 are needed",
             "leave them at their defaults")
        need(self.latent_iterations == 0 or self.mode == "in-domain",
             "the latent phase learns the training videos' walks in the backbone that renders them: in-domain only",
             "leave --latent-iterations out of cross-domain runs")
        need(self.epochs is None or self.epochs > 0, f"--epochs must be > 0, got {self.epochs}", "use a positive value")
        check_truncation(self.truncation)
        need(self.lr > 0, f"--lr must be > 0, got {self.lr}", "the authors use 1e-4")
        need(self.queue_size >= 1 and self.proj_dim >= 1 and self.image_d_channels >= 1,
             "--queue-size, --proj-dim and --image-d-channels must be >= 1", "use positive values")
        need(self.temperature > 0, f"--temperature must be > 0, got {self.temperature}", "the authors use 0.07")
        need(0.0 <= self.momentum <= 1.0, f"--momentum must be in [0, 1], got {self.momentum}",
             "the authors use 0.999")
        need(self.workers >= 0 and self.num_samples >= 0, "--workers and --num-samples must be >= 0", "use 0 or more")
        need(self.video_d_view in VIDEO_VIEWS, f"unknown --video-d-view {self.video_d_view!r}",
             f"use one of {', '.join(VIDEO_VIEWS)}")
        need(self.pca_source in PCA_SOURCES, f"unknown --pca-source {self.pca_source!r}",
             f"use one of {', '.join(PCA_SOURCES)}")
        need(self.pca or self.pca_source == "latents", "--no-pca and --pca-source videos contradict each other",
             "pass --pca-source latents with --no-pca (the built-in example's default is videos)")
        need(self.precision in PRECISIONS, f"unknown precision {self.precision!r}", "use fp32, bf16 or fp16")
        need(self.sample_format in SAMPLE_FORMATS, f"unknown sample format {self.sample_format!r}",
             f"use one of {', '.join(SAMPLE_FORMATS)}")
        if self.eval_every:
            get_metric(self.eval_metric)  # a clear error before training starts


# The help panels (and the sections of `--help`) in this order; each field names its own.
GROUPS = ("Inputs", "Data", "Motion generator", "Objective", "Loss terms", "Latent phase", "Optimisation", "Machine",
          "Output", "Evaluation")


def group_key(group: str) -> str:
    """A group's table name in TOML files: "Latent phase" -> "latent_phase" (dashes accepted too)."""
    return group.lower().replace(" ", "_")


def ungrouped(values: dict, *, source=None) -> dict:
    """TOML values with group tables flattened into field names; a field given twice, or in the table of
    another group, is an error naming where it belongs. A field named like a group (`data`) is a table
    only when its value is one."""
    groups = {group_key(g): g for g in GROUPS}
    home = {f.name: f.metadata.get("group") for f in dataclasses.fields(TrainConfig)}
    flat = {key: value for key, value in values.items()
            if not (key.replace("-", "_") in groups and isinstance(value, dict))}
    for key, table in values.items():
        group = groups.get(key.replace("-", "_"))
        if group is None or not isinstance(table, dict):
            continue
        for name, value in table.items():
            field = name.replace("-", "_")
            if field in home and home[field] != group:
                raise MocohdError(f"training option {name!r} is in table [{key}]", path=source,
                                  fix=f"put it in [{group_key(home[field])}] (or at the top level)")
            if field in {k.replace("-", "_") for k in flat}:
                raise MocohdError(f"training option {name!r} is given twice (in [{key}] and at the top level)",
                                  path=source, fix="keep one")
            flat[name] = value
    return flat


# Where each setting sits in a run's config.toml: the table of its group, the tables in GROUPS' order.
CONFIG_TABLES = {f.name: group_key(group) for group in GROUPS for f in dataclasses.fields(TrainConfig)
                 if f.metadata.get("group") == group}


def _declared(key: str) -> dict:
    return {f.name: f.metadata[key] for f in dataclasses.fields(TrainConfig) if key in f.metadata}


UPPER_BOUNDS = _declared("hi")
# Settings a resumed run must share with the run it continues (they shape the models or the data stream).
RESUME_KEYS = tuple(name for name, fixed in _declared("fixed").items() if fixed)
# Resume keys that states written before them lack: such a state was trained with these values.
RESUME_KEYS_ADDED = _declared("since")


def parse_term_weights(values: list[str], *, known) -> list[tuple[str, float]]:
    """--term NAME=WEIGHT values as (name, weight), each a term registered under `known`."""
    pairs = []
    for value in values:
        name, sep, weight = str(value).partition("=")
        try:
            number = float(weight) if sep else math.nan
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number < 0:
            raise MocohdError(f"--term {value!r} is not NAME=WEIGHT with a weight >= 0", fix="e.g. --term smooth=0.5")
        if name not in known:
            raise MocohdError(f"--term: no loss term is registered as {name!r}",
                              fix=f"registered terms: {', '.join(known)} (a plugin registers its own)")
        pairs.append((name, number))
    return pairs


def fit_to_backbone(config: TrainConfig, backbone: ImageGenerator) -> TrainConfig:
    """Fill the sizes left to the backbone (the release's 128 px and 384 components, capped by what
    the backbone has) and refuse sizes it cannot provide."""
    frame_size = config.video_frame_size or min(DEFAULT_VIDEO_FRAME_SIZE, backbone.resolution)
    n_pca = config.n_pca or default_n_pca(backbone)
    if frame_size > backbone.resolution:
        raise MocohdError(f"--video-frame-size {frame_size} is larger than the backbone's {backbone.resolution} px "
                          "frames", fix=f"use --video-frame-size <= {backbone.resolution}")
    if n_pca > backbone.latent_dim:
        raise MocohdError(f"--n-pca {n_pca} is larger than the backbone's {backbone.latent_dim}-d latent space",
                          fix=f"use --n-pca <= {backbone.latent_dim}")
    # The frames one motion step synthesises (fp32, before any activation memory): more than the
    # machine holds can only end in an out-of-memory kill, so it is refused before anything starts.
    frames_bytes = config.batch_size * config.frames * 3 * backbone.resolution ** 2 * 4
    if frames_bytes > physical_memory():
        raise MocohdError(f"--batch-size {config.batch_size} x --frames {config.frames} at {backbone.resolution} px "
                          f"needs {frames_bytes / 2 ** 30:.1f} GiB for the generated frames alone, more than this "
                          f"machine's {physical_memory() / 2 ** 30:.0f} GiB", fix="lower --batch-size or --frames")
    return dataclasses.replace(config, video_frame_size=frame_size, n_pca=n_pca)


def physical_memory() -> int:
    """Bytes of memory of this machine (a large number where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2 ** 50


def fit_to_world(config: TrainConfig, world_size: int) -> TrainConfig:
    """--global-batch (the release's way of counting) as the per-process batch size."""
    if config.global_batch is None:
        return config
    if config.global_batch % world_size:
        raise MocohdError(f"--global-batch {config.global_batch} does not divide among {world_size} processes",
                          fix=f"use a multiple of {world_size}, or --batch-size per process")
    return dataclasses.replace(config, batch_size=config.global_batch // world_size)


def check_drift_batch(config: TrainConfig, world_size: int) -> None:
    """The shared-drift penalty compares the videos of one process's batch: it needs two of them."""
    if config.w_drift and config.batch_size < 2:
        per = " per process" if world_size > 1 else ""
        raise MocohdError(f"--w-drift compares the videos of a batch, but the batch holds {config.batch_size} "
                          f"video{per}", fix="use --batch-size 2 or more (per process), or --w-drift 0")
