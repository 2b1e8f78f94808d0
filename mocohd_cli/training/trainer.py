"""Training the motion generator against a frozen image generator (METHOD.md).

One loop serves every mode: data, the 5:1 generator/discriminator schedule, optimisers,
mixed precision, DistributedDataParallel, checkpoints and resume, logging, samples and
export. What a mode trains against (its discriminators and losses) is an `Objective`:
in-domain training uses `InDomainObjective`; another mode registers its own with
`register_objective` and reuses everything else.

Per iteration (one real batch): `g_steps` motion-generator updates, each on fresh content
codes and motion codes, then one discriminator update on a fresh fake batch, then the
objective's after-D hook.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.backbone import ImageGenerator, load_backbone
from ..data.clips import DatasetReport, VideoClips, clip_loader
from ..infra.device import PRECISIONS, autocast
from ..models.discriminators import image_discriminator, video_discriminator
from ..infra.distributed import DistContext, init_distributed, shutdown
from ..infra.errors import MocohdError
from ..infra.files import atomic_path, torch_load_safely
from ..models.losses import gradient_penalty, ra_lsgan_d_loss, ra_lsgan_g_loss, random_time_reverse
from ..models.motion import MotionGenerator, Rollout, mutual_information_loss
from ..infra.runs import DEFAULT_RUNS_ROOT, RunDir, dumps_flat_toml, new_run_path, read_toml

MODES = ("in-domain", "cross-domain")
SAMPLE_FORMATS = ("mp4", "gif", "png")


@dataclass
class TrainConfig:
    """Every knob of a training run. Defaults are the authors' (METHOD.md) where it gives one."""

    # what to train
    mode: str = "in-domain"
    backbone: str | None = None  # registered name, module:Class or file.py:Class (inferred when absent)
    checkpoint: str | None = None  # image-generator checkpoint
    data: str | None = None  # folder or .zip of videos
    out: str | None = None  # run folder (default: <runs_root>/train-<timestamp>)
    runs_root: str = str(DEFAULT_RUNS_ROOT)
    resume: bool = False
    # real clips
    frames: int = 16
    time_step: int = 2
    video_frame_size: int | None = None  # 128, or the backbone's resolution when smaller
    # motion generator
    h_dim: int = 384
    n_pca: int | None = None  # 384, or the backbone's latent size when smaller
    w_residual: float = 0.2
    pca_samples: int = 100_000
    truncation: float = 1.0
    classes: list[int] | None = None  # conditional backbones: classes the videos cycle over (random if None)
    # discriminators and losses
    d_scales: int = 2
    d_channels: int = 64
    d_layers: int = 3
    gp_weight: float = 10.0
    # cross-domain objective only (contrastive image discriminator, METHOD.md "Training, cross-domain")
    image_d_channels: int = 96
    proj_dim: int = 256
    queue_size: int = 4096
    momentum: float = 0.999
    temperature: float = 0.07
    w_contrastive: float = 2.0
    w_match: float = 1.0
    # optimisation
    batch_size: int = 16
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    g_steps: int = 5
    iterations: int | None = None  # real batches (each: g_steps motion steps + 1 D step)
    epochs: float | None = None  # alternative to iterations; 100 when neither is given
    seed: int = 0
    # machine
    device: str = "auto"
    precision: str = "fp32"
    workers: int = 4
    # outputs
    log_every: int = 10
    sample_every: int = 500  # sample videos + motion_step_N.safetensors
    checkpoint_every: int = 100  # state/latest.pt
    num_samples: int = 4
    sample_format: str = "mp4"
    fps: float = 8.0

    @classmethod
    def from_dict(cls, values: dict, *, source: str | Path | None = None) -> "TrainConfig":
        """Build from (for example TOML) values; dashes in keys are accepted; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        clean = {}
        for key, value in values.items():
            name = key.replace("-", "_")
            if name not in names:
                raise MocohdError(f"unknown training option {key!r}", path=source,
                                  fix=f"known options: {', '.join(sorted(names))}")
            clean[name] = value
        return cls(**clean)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        def need(ok: bool, message: str, fix: str) -> None:
            if not ok:
                raise MocohdError(message, fix=fix)

        need(self.mode in MODES, f"unknown mode {self.mode!r}", f"use one of {', '.join(MODES)}")
        # the video discriminator's pooling between scales is 3 frames deep and, in-domain, it sees T-1 frames
        need(self.frames >= 4, f"--frames must be >= 4, got {self.frames}",
             "the video discriminator needs clips of at least 4 frames: use --frames 4 or more")
        for name in ("time_step", "video_frame_size", "h_dim", "n_pca", "batch_size", "g_steps", "d_scales",
                     "d_channels", "d_layers", "log_every", "sample_every", "checkpoint_every", "pca_samples"):
            need(getattr(self, name) is None or getattr(self, name) >= 1, f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}",
                 "use a positive value")
        need(self.iterations is None or self.iterations >= 1, f"--iterations must be >= 1, got {self.iterations}",
             "use a positive value")
        need(self.epochs is None or self.epochs > 0, f"--epochs must be > 0, got {self.epochs}", "use a positive value")
        need(self.lr > 0, f"--lr must be > 0, got {self.lr}", "the authors use 1e-4")
        need(self.queue_size >= 1 and self.proj_dim >= 1 and self.image_d_channels >= 1,
             "--queue-size, --proj-dim and --image-d-channels must be >= 1", "use positive values")
        need(self.temperature > 0, f"--temperature must be > 0, got {self.temperature}", "the authors use 0.07")
        need(0.0 <= self.momentum <= 1.0, f"--momentum must be in [0, 1], got {self.momentum}",
             "the authors use 0.999")
        need(self.workers >= 0 and self.num_samples >= 0, "--workers and --num-samples must be >= 0", "use 0 or more")
        need(self.precision in PRECISIONS, f"unknown precision {self.precision!r}", "use fp32, bf16 or fp16")
        need(self.sample_format in SAMPLE_FORMATS, f"unknown sample format {self.sample_format!r}",
             f"use one of {', '.join(SAMPLE_FORMATS)}")


# -- objectives ------------------------------------------------------------------------------------
Losses = dict[str, Tensor]


class Objective(nn.Module):
    """What the motion generator trains against: the discriminators and both sides' losses.

    Each loss method returns named terms whose sum is the loss to minimise. `forward` is the
    discriminator loss so that DistributedDataParallel can wrap the whole objective; the
    trainer calls `g_loss` on the unwrapped module and back-propagates into the motion
    generator only. Extra state (queues, momentum copies) belongs in buffers or parameters
    without gradients, so `state_dict` covers it.
    """

    def d_loss(self, real: Tensor, fake: Tensor, *, rng: torch.Generator) -> Losses:
        raise NotImplementedError

    def g_loss(self, real: Tensor, fake: Tensor, rollout: Rollout, *, rng: torch.Generator) -> Losses:
        raise NotImplementedError

    def after_d_step(self) -> None:
        """Called after every discriminator update (e.g. momentum-copy updates)."""

    def forward(self, real: Tensor, fake: Tensor, rng: torch.Generator) -> Losses:
        return self.d_loss(real, fake, rng=rng)


def with_first_frame(clips: Tensor) -> Tensor:
    """[B, T, C, H, W] -> [B, 2C, T-1, H, W]: each frame t >= 1 after frame 0 on the channels."""
    first = clips[:, :1].expand(-1, clips.shape[1] - 1, -1, -1, -1)
    return torch.cat([first, clips[:, 1:]], dim=2).transpose(1, 2)


def random_later_frame(clips: Tensor, rng: torch.Generator) -> Tensor:
    """One random frame index t in 1..T-1 (a one-element tensor on the clips' device), shared by
    the whole batch; the image discriminators of both modes compare frame 0 with frame t."""
    return torch.randint(1, clips.shape[1], (1,), generator=rng, device=clips.device)


def frame_at(clips: Tensor, t: Tensor) -> Tensor:
    """[B, T, C, H, W] and a one-element index tensor -> frame t, [B, C, H, W]."""
    return clips.index_select(1, t).squeeze(1)


def first_frame_pairs(clips: Tensor, t: Tensor) -> Tensor:
    """[B, T, C, H, W] and a one-element index tensor -> [B, 2C, H, W]: (frame 0, frame t)."""
    return torch.cat([clips[:, 0], frame_at(clips, t)], dim=1)


def judge(discriminator: nn.Module, real: Tensor, fake: Tensor, *, rng: torch.Generator | None = None,
          reverse_time_dim: int | None = None) -> tuple[list[list[Tensor]], list[list[Tensor]]]:
    """(outputs on real, outputs on fake) of a multi-scale discriminator, from one pass over both
    batches (instance norm keeps samples independent, so one pass equals two). With
    `reverse_time_dim`, each batch is time-reversed with probability 1/2, independently."""
    if reverse_time_dim is not None:
        real = random_time_reverse(real, reverse_time_dim, rng)
        fake = random_time_reverse(fake, reverse_time_dim, rng)
    n = real.shape[0]
    outputs = discriminator(torch.cat([real, fake]))
    return [[o[:n] for o in scale] for scale in outputs], [[o[n:] for o in scale] for scale in outputs]


class InDomainObjective(Objective):
    """Video PatchGAN on (frame t, frame 0) clips + image PatchGAN on (frame 0, frame t) pairs,
    relativistic-average LSGAN, gradient penalty on the video discriminator, MI loss."""

    def __init__(self, config: TrainConfig, backbone: ImageGenerator | None = None):
        super().__init__()  # (the backbone is part of the factory signature; these discriminators need nothing of it)
        widths = {"num_scales": config.d_scales, "ndf": config.d_channels, "n_layers": config.d_layers}
        self.video_d = video_discriminator(6, config.frames - 1, **widths)
        self.image_d = image_discriminator(6, **widths)
        self.gp_weight = config.gp_weight

    def _video_outputs(self, real: Tensor, fake: Tensor, rng: torch.Generator):
        return judge(self.video_d, with_first_frame(real), with_first_frame(fake), rng=rng,
                     reverse_time_dim=2)

    def _image_outputs(self, real: Tensor, fake: Tensor, rng: torch.Generator):
        t = random_later_frame(real, rng)
        return judge(self.image_d, first_frame_pairs(real, t), first_frame_pairs(fake, t))

    def d_loss(self, real: Tensor, fake: Tensor, *, rng: torch.Generator) -> Losses:
        fake = fake.detach()
        video = ra_lsgan_d_loss(*self._video_outputs(real, fake, rng))
        penalty = gradient_penalty(self.video_d, with_first_frame(real), with_first_frame(fake),
                                   weight=self.gp_weight, rng=rng)
        image = ra_lsgan_d_loss(*self._image_outputs(real, fake, rng))
        return {"video": video, "video_gp": penalty, "image": image}

    def g_loss(self, real: Tensor, fake: Tensor, rollout: Rollout, *, rng: torch.Generator) -> Losses:
        video = ra_lsgan_g_loss(*self._video_outputs(real, fake, rng))
        image = ra_lsgan_g_loss(*self._image_outputs(real, fake, rng))
        return {"video": video, "image": image, "mi": mutual_information_loss(rollout.noise, rollout.noise_pred)}


ObjectiveFactory = Callable[[TrainConfig, ImageGenerator], Objective]
OBJECTIVES: dict[str, ObjectiveFactory] = {"in-domain": InDomainObjective}


# Modules that register the other modes' objectives when imported.
_OBJECTIVE_MODULES = {"cross-domain": "mocohd_cli.training.cross_domain"}


def register_objective(mode: str, factory: ObjectiveFactory) -> None:
    """Make `TrainConfig(mode=mode)` train against `factory(config, backbone)`."""
    OBJECTIVES[mode] = factory


def objective_for(mode: str) -> ObjectiveFactory:
    if mode not in OBJECTIVES and mode in _OBJECTIVE_MODULES:
        import importlib

        try:
            importlib.import_module(_OBJECTIVE_MODULES[mode])
        except ModuleNotFoundError as exc:
            if exc.name != _OBJECTIVE_MODULES[mode]:
                raise
    if mode not in OBJECTIVES:
        raise MocohdError(f"no objective is registered for mode {mode!r}", fix=f"use one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[mode]


# -- pieces of the loop ----------------------------------------------------------------------------
def pool_frames(frames: Tensor, size: int) -> Tensor:
    """[B, T, 3, H, W] at the generator's resolution -> [B, T, 3, size, size] by average pooling."""
    b, t, c, h, w = frames.shape
    if h == size and w == size:
        return frames
    flat = frames.reshape(b * t, c, h, w)
    pooled = F.avg_pool2d(flat, h // size) if h % size == 0 and w == h else F.adaptive_avg_pool2d(flat, size)
    return pooled.reshape(b, t, c, size, size)


class _RolloutModule(nn.Module):
    """`motion.rollout` as a forward pass, so DistributedDataParallel can wrap it."""

    def __init__(self, motion: MotionGenerator):
        super().__init__()
        self.motion = motion

    def forward(self, w0: Tensor, n_frames: int, rng: torch.Generator) -> Rollout:
        return self.motion.rollout(w0, n_frames, rng=rng)


@dataclass
class RunResult:
    run_dir: Path
    motion_path: Path
    steps: int
    losses: dict[str, float] = field(default_factory=dict)
    dataset: DatasetReport | None = None


# Settings a resumed run must share with the run it continues.
_RESUME_KEYS = ("mode", "frames", "time_step", "video_frame_size", "h_dim", "n_pca", "w_residual", "d_scales",
                "d_channels", "d_layers", "batch_size", "g_steps", "seed")


def resume_values(run_dir: str | Path) -> dict:
    """The saved configuration of a run, to continue it (options given again override it)."""
    return read_toml(RunDir(run_dir).config)


def find_resumable_run(root: str | Path) -> Path | None:
    """The run under `root` whose training state was written last."""
    states = list(Path(root).glob("*/state/latest.pt"))
    return max(states, key=lambda p: p.stat().st_mtime).parent.parent if states else None


def fit_to_backbone(config: TrainConfig, backbone: ImageGenerator) -> TrainConfig:
    """Fill the sizes left to the backbone (METHOD.md's 128 px and 384 components, capped by what
    the backbone has) and refuse sizes it cannot provide."""
    frame_size = config.video_frame_size or min(128, backbone.resolution)
    n_pca = config.n_pca or min(384, backbone.latent_dim)
    if frame_size > backbone.resolution:
        raise MocohdError(f"--video-frame-size {frame_size} is larger than the backbone's {backbone.resolution} px "
                          "frames", fix=f"use --video-frame-size <= {backbone.resolution}")
    if n_pca > backbone.latent_dim:
        raise MocohdError(f"--n-pca {n_pca} is larger than the backbone's {backbone.latent_dim}-d latent space",
                          fix=f"use --n-pca <= {backbone.latent_dim}")
    return dataclasses.replace(config, video_frame_size=frame_size, n_pca=n_pca)


class Trainer:
    def __init__(self, config: TrainConfig, context: DistContext, *, backbone: ImageGenerator | None = None,
                 objective_factory: ObjectiveFactory | None = None, progress: bool = True):
        config.validate()
        self.config, self.ctx, self.device = config, context, context.device
        autocast(self.device, config.precision)  # refuses an unsupported pair (fp16 on the CPU) up front
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes every step: let cuDNN pick its fastest kernels
        self.show_progress = progress
        self.run = RunDir(self._run_path())
        if not config.data:
            raise MocohdError("no dataset given", fix="pass --data DIR (a folder or .zip of videos)")
        self.backbone = backbone.to(self.device) if backbone is not None else self._load_backbone()
        self.config = config = fit_to_backbone(config, self.backbone)
        # rank 0 indexes the videos (which decodes every video file once) and shares the index
        self.dataset = self.ctx.broadcast(
            VideoClips(config.data, n_frames=config.frames, time_step=config.time_step,
                       size=config.video_frame_size, seed=config.seed) if self.ctx.is_main else None)
        self.iterations = self._resolve_iterations()
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        self.motion = self._build_motion()
        factory = objective_factory or objective_for(config.mode)
        self.objective = factory(config, self.backbone).to(self.device)
        betas = (config.beta1, config.beta2)
        self.opt_g = torch.optim.Adam(self.motion.parameters(), lr=config.lr, betas=betas)
        self.opt_d = torch.optim.Adam([p for p in self.objective.parameters() if p.requires_grad], lr=config.lr,
                                      betas=betas)
        fp16 = config.precision == "fp16"
        self.scaler_g = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.autocast = lambda: autocast(self.device, config.precision)
        self.step = 0
        if config.resume:  # _run_path made sure the state exists
            self._load_state()
        self.rollout_local = _RolloutModule(self.motion)  # for no-grad rollouts (no DDP bookkeeping)
        self.rollout_net, self.objective_net = self._distribute()
        self.rng = torch.Generator(self.device)
        self.cpu_rng = torch.Generator()

    # -- setup ---------------------------------------------------------------------------------
    def _run_path(self) -> Path:
        config = self.config
        path = None
        if self.ctx.is_main:
            if config.out:
                path = Path(config.out)
            elif config.resume:
                path = find_resumable_run(config.runs_root)
                if path is None:
                    raise MocohdError(f"--resume: no run with a training state under {config.runs_root}",
                                      fix="pass --out RUN_DIR of the run to continue")
            else:
                path = new_run_path(config.runs_root)
            if config.resume and not RunDir(path).state.exists():
                raise MocohdError("--resume: this run folder has no training state (state/latest.pt)", path=path,
                                  fix="check --out, or start a new run without --resume")
            if not config.resume and RunDir(path).state.exists():
                raise MocohdError("this run folder already holds a training run", path=path,
                                  fix="pass --resume to continue it, or choose another --out")
        return Path(self.ctx.broadcast(str(path)))

    def _load_backbone(self) -> ImageGenerator:
        if self.config.checkpoint is None and self.config.backbone is None:
            raise MocohdError("no image generator given", fix="pass --checkpoint PATH (and --backbone NAME)")
        return load_backbone(self.config.backbone, self.config.checkpoint, device=self.device,
                             command_options={"truncation": self.config.truncation})

    def _resolve_iterations(self) -> int:
        config = self.config
        if config.iterations is not None:
            return config.iterations
        epochs = config.epochs if config.epochs is not None else 100
        return max(1, math.ceil(epochs * len(self.dataset) / (config.batch_size * self.ctx.world_size)))

    def _build_motion(self) -> MotionGenerator:
        from ..models.pca import motion_pca

        config, latent_dim = self.config, self.backbone.latent_dim
        pca = None
        if self.ctx.is_main and not config.resume:
            from ..infra.console import progress

            with progress() as bar:
                bar.disable = bar.disable or not self.show_progress
                task = bar.add_task("motion-space PCA", total=config.pca_samples)
                pca = motion_pca(self.backbone, n_pca=config.n_pca, n_samples=config.pca_samples,
                                 truncation=config.truncation, seed=config.seed,
                                 progress=lambda done, _total: bar.update(task, completed=done))
        pca = self.ctx.broadcast(pca)  # resumed runs get the basis from the state instead
        components, stdev = pca if pca is not None else (None, None)
        return MotionGenerator(latent_dim, h_dim=config.h_dim, n_pca=config.n_pca, w_residual=config.w_residual,
                               pca_components=components, pca_stdev=stdev).to(self.device)

    def _distribute(self) -> tuple[nn.Module, nn.Module]:
        """The modules whose backward passes are synchronised: DDP wrappers under torchrun."""
        if not self.ctx.enabled:
            return self.rollout_local, self.objective
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DDP(self.rollout_local, device_ids=ids), DDP(self.objective, device_ids=ids)

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"step": self.step, "motion": self.motion.state_dict(), "objective": self.objective.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "scaler_g": self.scaler_g.state_dict(), "scaler_d": self.scaler_d.state_dict(),
                # the data stream is addressed by (seed, batch index): its state is the next batch
                "data": {"seed": self.config.seed, "next_batch": self.step}, "rng": rng,
                "config": {k: v for k, v in self.config.to_dict().items() if v is not None}}

    def save_state(self) -> None:
        if not self.ctx.is_main:
            return
        with atomic_path(self.run.state) as tmp:
            torch.save(self.state_dict(), tmp)

    def _load_state(self) -> None:
        state = torch_load_safely(self.run.state, "training state")
        saved = state.get("config", {})
        for key in _RESUME_KEYS:
            if key in saved and saved[key] != getattr(self.config, key):
                raise MocohdError(f"--resume: {key} was {saved[key]!r} in this run but is now "
                                  f"{getattr(self.config, key)!r}", path=self.run.state,
                                  fix=f"resume with the run's own settings (drop the {key} option)")
        self.motion.load_state_dict(state["motion"])
        self.objective.load_state_dict(state["objective"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.scaler_g.load_state_dict(state["scaler_g"])
        self.scaler_d.load_state_dict(state["scaler_d"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.step = int(state["step"])

    # -- one iteration ---------------------------------------------------------------------------
    def _seed_step(self) -> None:
        """Every random draw of step s comes from generators seeded by (seed, rank, s), so a
        resumed run draws exactly what an uninterrupted one would."""
        seed = (self.config.seed * 1_000_003 + self.ctx.rank) * 1_000_003 + self.step
        self.rng.manual_seed(seed)
        self.cpu_rng.manual_seed(seed)

    def generate(self, rollout_fn: Callable, batch: int) -> tuple[Tensor, Rollout]:
        """Fake clips [B, T, 3, S, S] (pooled to the real clips' size) and their rollout."""
        w0 = self.backbone.sample_latent(batch, rng=self.rng, truncation=self.config.truncation)
        rollout = rollout_fn(w0, self.config.frames, self.rng)
        condition_gen = self.rng if self.rng.device.type == "cpu" else self.cpu_rng
        condition = self.backbone.sample_condition(batch, self.config.classes, rng=condition_gen)
        frames = self.backbone.synthesize(rollout.latents, condition=condition, noise="random",
                                          rng=self.rng)
        return pool_frames(frames, self.config.video_frame_size), rollout

    def g_step(self, real: Tensor) -> Losses:
        with self.autocast():
            fake, rollout = self.generate(self.rollout_net, real.shape[0])
            losses = self.objective.g_loss(real, fake, rollout, rng=self.rng)
        total = sum(losses.values())
        self.opt_g.zero_grad(set_to_none=True)
        # Gradients for the motion generator only: the discriminators are not updated here.
        self.scaler_g.scale(total).backward(inputs=list(self.motion.parameters()))
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        return losses

    def d_step(self, real: Tensor) -> Losses:
        with torch.no_grad(), self.autocast():
            fake, _ = self.generate(self.rollout_local, real.shape[0])
        with self.autocast():
            losses = self.objective_net(real, fake, self.rng)
        total = sum(losses.values())
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler_d.scale(total).backward()
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()
        self.objective.after_d_step()
        return losses

    def iteration(self, real: Tensor) -> dict[str, Tensor]:
        self._seed_step()
        for _ in range(self.config.g_steps):
            g_losses = self.g_step(real)
        d_losses = self.d_step(real)
        self.step += 1
        logged = {f"g/{k}": v.detach() for k, v in g_losses.items()}
        logged.update({f"d/{k}": v.detach() for k, v in d_losses.items()})
        return logged

    # -- outputs ---------------------------------------------------------------------------------
    def export_metadata(self) -> dict:
        from .. import __version__

        backbone = self.backbone
        checkpoint = str(Path(backbone.checkpoint_path).resolve()) if backbone.checkpoint_path else None
        return {"backbone": getattr(backbone, "spec", None) or backbone.name, "backbone_name": backbone.name,
                "backbone_checkpoint": checkpoint, "backbone_sha256": backbone.checkpoint_sha256,
                "n_frames": self.config.frames, "fps": self.config.fps, "time_step": self.config.time_step,
                "video_frame_size": self.config.video_frame_size, "mode": self.config.mode, "step": self.step,
                "version": __version__}

    def export(self, path: Path) -> Path:
        return self.motion.save(path, **{k: v for k, v in self.export_metadata().items() if v is not None})

    def write_samples(self) -> Path | None:
        if self.config.num_samples == 0:
            return None
        from ..workflows.sampling import generate_videos
        from ..data.video import save_video, video_grid

        videos = generate_videos(self.backbone, self.motion, num_videos=self.config.num_samples,
                                 n_frames=self.config.frames, seed=self.config.seed,
                                 truncation=self.config.truncation, classes=self.config.classes)
        path = self.run.sample_at(self.step, self.config.sample_format)
        path.parent.mkdir(parents=True, exist_ok=True)
        return save_video(video_grid(videos), path, fps=self.config.fps)

    def write_config(self) -> None:
        values = {**self.config.to_dict(), "out": str(self.run.path), "iterations": self.iterations}
        with atomic_path(self.run.config) as tmp:
            tmp.write_text(dumps_flat_toml(values), encoding="utf-8")

    # -- the loop --------------------------------------------------------------------------------
    def _open_run(self):
        """Rank 0: the run folder, its config and log, and a TensorBoard writer."""
        from torch.utils.tensorboard import SummaryWriter

        from ..infra.console import console

        self.run.path.mkdir(parents=True, exist_ok=True)  # only now: a failed start leaves nothing behind
        self.write_config()
        summary = self.dataset.report.summary()
        self.run.append_log(("resumed" if self.step else "started") + f" at step {self.step}/{self.iterations}; "
                            f"{summary}; world size {self.ctx.world_size}, device {self.device}, "
                            f"precision {self.config.precision}")
        console.print(f"run folder: {self.run.path}\ndata: {summary}")
        return SummaryWriter(str(self.run.tensorboard), purge_step=self.step or None)

    def _record(self, writer, losses: dict[str, float], rate: float) -> str:
        """Losses to TensorBoard and log.txt; returns the progress bar's short text (the G and D totals)."""
        for name, value in losses.items():
            writer.add_scalar(f"loss/{name}", value, self.step)
        writer.add_scalar("speed/iterations_per_s", rate, self.step)
        text = " ".join(f"{k}={v:.3f}" for k, v in losses.items())
        self.run.append_log(f"step {self.step}/{self.iterations} {text} ({rate:.2f} it/s)")
        totals = {side: sum(v for k, v in losses.items() if k.startswith(side)) for side in "gd"}
        return f"G {totals['g']:.3f} D {totals['d']:.3f}"

    def fit(self) -> RunResult:
        from rich.progress import TextColumn

        from ..infra.console import progress

        config, main = self.config, self.ctx.is_main
        writer = self._open_run() if main else None
        batches = clip_loader(self.dataset, config.batch_size, seed=config.seed, rank=self.ctx.rank,
                              world_size=self.ctx.world_size, start_batch=self.step, workers=config.workers,
                              pin_memory=self.device.type == "cuda")
        losses: dict[str, float] = {}
        bar = progress(TextColumn("{task.fields[losses]}"))
        bar.disable = bar.disable or not (main and self.show_progress)
        started, start_step = time.perf_counter(), self.step
        with bar:
            task = bar.add_task("training", total=self.iterations, completed=self.step, losses="")
            while self.step < self.iterations:
                logged = self.iteration(next(batches).to(self.device, non_blocking=True))
                step, last = self.step, self.step == self.iterations
                if step % config.log_every == 0 or last:
                    losses = {k: v.item() for k, v in logged.items()}
                    self._check_finite(losses)
                    if main:
                        rate = (step - start_step) / max(time.perf_counter() - started, 1e-9)
                        bar.update(task, losses=self._record(writer, losses, rate))
                if main and step % config.sample_every == 0 and not last:
                    self.export(self.run.motion_at(step))
                    self.write_samples()
                if step % config.checkpoint_every == 0 or last:
                    self.save_state()
                bar.update(task, completed=step)
        if main:
            self.write_samples()
            self.export(self.run.motion)
            writer.close()
            self.run.append_log(f"finished at step {self.step}: {self.run.motion}")
        self.ctx.barrier()
        return RunResult(self.run.path, self.run.motion, self.step, losses, self.dataset.report)

    def _check_finite(self, losses: dict[str, float]) -> None:
        bad = [k for k, v in losses.items() if not math.isfinite(v)]
        if bad:
            raise MocohdError(f"training diverged at step {self.step}: {', '.join(bad)} is not finite",
                              path=self.run.path,
                              fix="resume from the last state with a lower --lr, or use --precision fp32")


def train(config: TrainConfig, *, backbone: ImageGenerator | None = None,
          objective_factory: ObjectiveFactory | None = None, progress: bool = True) -> RunResult:
    """Train a motion model; alone or, under torchrun, data-parallel. Returns where it went."""
    context = init_distributed(config.device)
    try:
        return Trainer(config, context, backbone=backbone, objective_factory=objective_factory,
                       progress=progress).fit()
    finally:
        shutdown(context)
