"""The training loop: the motion generator against a frozen image generator (docs/method.md).

One loop serves every mode: data, the 5:1 generator/discriminator schedule, optimisers,
mixed precision, DistributedDataParallel, checkpoints and resume, logging, samples and
export. What a mode trains against (its discriminators and losses) is an `Objective`
(mocohd_cli/training/objectives/).

Per iteration (one real batch): `g_steps` motion-generator updates, each on fresh content
codes and motion codes, then one discriminator update on a fresh fake batch, then the
objective's after-D hook.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from ..data.clips import DatasetReport, VideoClips, clip_loader
from ..infra.device import autocast
from ..infra.distributed import DistContext, init_distributed, shutdown
from ..infra.errors import MocohdError
from ..infra.files import atomic_path, torch_load_safely
from ..infra.hub import recorded_reference
from ..infra.schema import Field, read_fields
from ..infra.provenance import append_provenance
from ..infra.tensorboard import log_hparams, log_video
from ..infra.runs import RunDir, dumps_flat_toml
from ..infra.settings import torch_seed
from ..models.backbone import ImageGenerator, load_backbone
from ..models.generation import pool_frames
from ..models.identity import EXTRA_FRAMES, identity_loss
from ..models.losses import RunningSharedDrift, ra_lsgan_d_loss, ra_lsgan_g_loss, shared_drift_loss
from ..models.motion import MotionGenerator, Rollout
from .config import DEFAULT_EPOCHS, TrainConfig, check_drift_batch, fit_to_backbone, fit_to_world
from .objectives import Losses, ObjectiveFactory, objective_for
from .resume import (check_compatible, claim_run_folder, load_state_parts, refuse_out_inside_data, run_folder,
                     set_torch_rng)

log = logging.getLogger(__name__)


# -- pieces of the loop ----------------------------------------------------------------------------
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


# What a training state (state/latest.pt) must hold, checked before any of it is used.
STATE_FIELDS = (
    Field("step", int, lo=0, hi=10**9), Field("motion", dict), Field("objective", dict), Field("opt_g", dict),
    Field("opt_d", dict), Field("scaler_g", dict), Field("scaler_d", dict), Field("rng", dict),
    Field("config", dict, default={}), Field("eval", dict, default={}), Field("drift", dict, default={}),
    Field("latent_motion", dict, default={}), Field("identity", dict, default={}),
)


def clips_in_basis(latents: Tensor, frames: int, motion: MotionGenerator) -> Tensor:
    """Every clip of `frames` latents of the projected videos [N, F, D] as displacements from its first frame in
    the motion model's PCA units [M, frames-1, n], on the model's device."""
    from ..models.latent_prior import clip_bank

    return clip_bank(latents, frames, motion.pca_components.cpu(), motion.pca_stdev.cpu()).to(
        motion.pca_components.device)


@dataclass
class LatentPrior:
    """The latent motion discriminator (`--w-latent-motion`, mocohd_cli/models/latent_prior.py), its
    optimiser and the displacements of the projected training clips it learns from."""

    discriminator: nn.Module
    optimizer: torch.optim.Optimizer
    latents: Tensor                  # the projected training videos [N, F, D]
    bank: Tensor | None = None       # their clips' displacements in the motion model's PCA units [M, T-1, n]

    def set_basis(self, motion: MotionGenerator, frames: int) -> None:
        """The clips' displacements in the motion model's PCA units (a resumed run's basis comes with its state)."""
        self.bank = clips_in_basis(self.latents, frames, motion)

    def state_dict(self) -> dict:
        return {"discriminator": self.discriminator.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])


@dataclass
class IdentityTerm:
    """The identity loss's frozen encoder (`--w-identity`, mocohd_cli/models/identity.py) and the within-video
    distance of the videos it learnt from. Kept in the training state, so that a resumed run uses the same one."""

    encoder: nn.Module
    real_distance: float

    def state_dict(self) -> dict:
        return {"encoder": self.encoder.state_dict(), "real_distance": self.real_distance}

    def load_state_dict(self, state: dict) -> None:
        self.encoder.load_state_dict(state["encoder"])
        self.real_distance = float(state["real_distance"])


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
        self.backbone.truncation = config.truncation  # the one way truncation reaches a backbone
        if config.checkpointing:
            if not callable(getattr(self.backbone, "set_checkpointing", None)):
                raise MocohdError(f"the {self.backbone.name} backbone cannot checkpoint its synthesis",
                                  fix="train without --checkpointing")
            self.backbone.set_checkpointing(True)
        self.config = config = fit_to_world(fit_to_backbone(config, self.backbone), self.ctx.world_size)
        check_drift_batch(config, self.ctx.world_size)
        # rank 0 indexes the videos (which decodes every video file once) and shares the index
        self.dataset = self.ctx.broadcast(
            VideoClips(config.data, n_frames=config.frames, time_step=config.time_step,
                       size=config.video_frame_size, seed=config.seed) if self.ctx.is_main else None)
        self.iterations = self._resolve_iterations()
        self.motion = self._build_motion()
        factory = objective_factory or objective_for(config.mode)
        self.objective = factory(config, self.backbone).to(self.device)
        self.opt_g = torch.optim.Adam(self.motion.parameters(), lr=config.lr, betas=(config.beta1, config.beta2))
        self.drift_penalty = self._build_drift_penalty()
        self.latent_prior = self._build_latent_prior()
        self.identity = self._build_identity()
        self.opt_d = torch.optim.Adam(self.objective.optimizer_groups(config), lr=config.lr)
        fp16 = config.precision == "fp16"
        self.scaler_g = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.autocast = lambda: autocast(self.device, config.precision)
        self.step = 0
        self.best_score: float | None = None  # the best --eval-metric so far (lower is better once oriented)
        if config.resume:  # _run_path made sure the state exists
            self._load_state()
        if self.latent_prior is not None:
            self.latent_prior.set_basis(self.motion, config.frames)
        self.walk_bank = self._build_walk_bank()
        self.rollout_local = _RolloutModule(self.motion)  # for no-grad rollouts (no DDP bookkeeping)
        self.rollout_net, self.objective_net = self._distribute()
        self.latent_d_net = self._distribute_latent_d()
        self.rng = torch.Generator(self.device)
        self.cpu_rng = torch.Generator()

    # -- setup ---------------------------------------------------------------------------------
    def _run_path(self) -> Path:
        """Rank 0 resolves the run folder (mocohd_cli/training/resume.py) and tells the others."""
        config = self.config
        path = run_folder(config.out, config.runs_root, config.resume) if self.ctx.is_main else None
        path = Path(self.ctx.broadcast(str(path)))
        refuse_out_inside_data(path, config.data)
        return path

    def _load_backbone(self) -> ImageGenerator:
        if self.config.checkpoint is None and self.config.backbone is None:
            raise MocohdError("no image generator given", fix="pass --checkpoint PATH (and --backbone NAME)")
        return load_backbone(self.config.backbone, self.config.checkpoint, device=self.device)

    def _resolve_iterations(self) -> int:
        config = self.config
        if config.iterations is not None:
            return config.iterations
        epochs = config.epochs if config.epochs is not None else DEFAULT_EPOCHS
        return max(1, math.ceil(epochs * len(self.dataset) / (config.batch_size * self.ctx.world_size)))

    def _build_latent_prior(self) -> LatentPrior | None:
        """The latent motion discriminator with its optimiser and the projected training clips, if asked for."""
        config = self.config
        if not config.w_latent_motion:
            return None
        from ..models.latent_prior import LatentMotionDiscriminator

        disc = LatentMotionDiscriminator(config.frames - 1, config.n_pca).to(self.device)
        opt = torch.optim.Adam(disc.parameters(), lr=config.lr, betas=(config.beta1, config.beta2))
        return LatentPrior(disc, opt, self._projected_videos)

    @functools.cached_property
    def _projected_videos(self) -> Tensor:
        """The training videos projected into the backbone [N, F, D] (`--latent-motion`'s file, or projected
        by rank 0 on first use and cached), read once for the latent motion discriminator and the basis."""
        from ..models.latent_prior import read_projections
        from .projections import project_training_videos

        config = self.config
        if config.latent_motion:
            latents = read_projections(config.latent_motion, backbone_sha256=self.backbone.checkpoint_sha256,
                                       time_step=config.time_step, frames=config.frames,
                                       latent_dim=self.backbone.latent_dim)
        else:  # rank 0 projects (or finds them in the cache) and shares them
            if self.ctx.is_main:
                log.info("projecting the training videos into the backbone (cached for later runs)")
            latents = self.ctx.broadcast(project_training_videos(
                self.backbone, config.data, frames=config.frames, time_step=config.time_step,
                size=self.backbone.resolution, seed=config.seed) if self.ctx.is_main else None)
        return latents

    @property
    def _projections_source(self) -> str:
        """What the projected training videos came from, for error messages."""
        return self.config.latent_motion or f"the projections of {self.config.data}"

    def _build_identity(self) -> IdentityTerm | None:
        """The identity loss's frozen encoder and its training videos' within-video distance, if asked for."""
        config = self.config
        if not config.w_identity:
            return None
        from ..models.identity import DEFAULT_STEPS, IdentityEncoder, read_identity_encoder
        from .identity import identity_encoder_for

        if config.resume:  # the run's encoder comes with its state
            encoder, distance = IdentityEncoder().eval().requires_grad_(False), 0.0
        elif config.identity_encoder:
            encoder, distance = read_identity_encoder(config.identity_encoder)
        else:  # rank 0 trains it (or finds it in the cache) and shares it
            encoder, distance = None, None
            if self.ctx.is_main:
                with self._progress_bar("identity encoder", DEFAULT_STEPS) as report:
                    encoder, distance = identity_encoder_for(config.data, frames=config.frames,
                                                             time_step=config.time_step, seed=config.seed,
                                                             progress=report)
            encoder, distance = self.ctx.broadcast((encoder, distance))
        return IdentityTerm(encoder.to(self.device), distance)

    def _real_displacements(self, batch: int, bank: Tensor | None = None) -> Tensor:
        """Displacements of `batch` projected training clips of `bank` (default: the latent motion discriminator's),
        drawn from the step's random stream (self.rng, on the bank's device: cpu_rng would repeat self.rng's draws
        on the CPU, where both get the same seed)."""
        bank = self.latent_prior.bank if bank is None else bank
        index = torch.randint(0, bank.shape[0], (batch,), generator=self.rng, device=self.rng.device)
        return bank[index.to(bank.device)]

    def _image_later(self, later: Tensor | None) -> dict:
        """The frames past the clip for the image discriminator (`--image-horizon`), as the objective's keyword."""
        return {"later": later} if self.config.image_horizon and later is not None else {}

    def _walk_loss(self, displacements: Tensor) -> Tensor:
        """Walk matching (`--w-walk`, mocohd_cli/models/walk_matching.py): windows of the generated walks
        [B, H-1, n], each starting at a random frame, against as many projected training clips."""
        from ..models.walk_matching import energy_distance, walk_windows

        bank, batch = self.walk_bank, displacements.shape[0]
        length = bank.shape[1] + 1
        starts = torch.randint(0, displacements.shape[1] + 2 - length, (batch,), generator=self.rng,
                               device=self.rng.device)
        return energy_distance(walk_windows(displacements, length, starts), self._real_displacements(batch, bank))

    def _build_walk_bank(self) -> Tensor | None:
        """The projected training clips' displacements in the motion model's PCA units [M, L-1, n] that walk
        matching compares the generated walks with (after the basis is known: a resumed run's comes with its state)."""
        config = self.config
        if not config.w_walk:
            return None
        projected = self._projected_videos
        rollout_frames = max(config.drift_frames, config.later_horizon or 0)
        length = config.walk_frames or min(projected.shape[1], rollout_frames)
        if length > projected.shape[1]:
            raise MocohdError(f"--walk-frames {length} is longer than the projected videos ({projected.shape[1]} "
                              "frames)", path=self._projections_source,
                              fix=f"pass --walk-frames {projected.shape[1]} or less, or project longer videos")
        if length > rollout_frames:
            raise MocohdError(f"--walk-frames {length} is longer than the rollout ({rollout_frames} frames)",
                              fix=f"pass --walk-frames {rollout_frames} or less, or a longer --drift-horizon")
        return clips_in_basis(projected, length, self.motion)

    def _build_drift_penalty(self) -> Callable[[Tensor], Tensor]:
        """The shared-drift penalty's estimator: pairs within the batch, or a running mean."""
        config = self.config
        if not config.drift_momentum:
            return shared_drift_loss
        steps = config.drift_frames - 1
        return RunningSharedDrift(steps, config.n_pca, config.drift_momentum).to(self.device)

    def _build_motion(self) -> MotionGenerator:
        config, latent_dim = self.config, self.backbone.latent_dim
        pca = None
        if config.resume or not config.pca:
            pass  # resumed runs get the basis from the state
        elif config.pca_source == "videos":
            pca = self._video_basis()
        else:
            from ..models.pca import motion_pca

            if self.ctx.is_main:
                with self._progress_bar("motion-space PCA", config.pca_samples) as report:
                    pca = motion_pca(self.backbone, n_pca=config.n_pca, n_samples=config.pca_samples,
                                     seed=config.seed, progress=report)
            pca = self.ctx.broadcast(pca)
        components, stdev = pca if pca is not None else (None, None)
        # identical initial weights on every rank, whatever setting up the basis drew (a first projection)
        torch.manual_seed(config.seed)
        return MotionGenerator(latent_dim, h_dim=config.h_dim, n_pca=config.n_pca, w_residual=config.w_residual,
                               feedback=config.motion_feedback,
                               pca_components=components, pca_stdev=stdev).to(self.device)

    def _video_basis(self) -> tuple[Tensor, Tensor]:
        """`--pca-source videos`: the first n_pca directions of the projected training videos' walks, each
        scaled by their spread along it (every rank computes the same from the same projections)."""
        from ..models.pca import displacement_pca

        n_pca = self.config.n_pca
        components, stdev = displacement_pca(self._projected_videos)
        if stdev[n_pca - 1] <= 1e-6 * stdev[0]:
            spanned = int((stdev > 1e-6 * stdev[0]).sum())
            raise MocohdError(f"the projected training videos move along only {spanned} directions, fewer than "
                              f"--n-pca {n_pca}", path=self._projections_source,
                              fix=f"lower --n-pca to {spanned} or less, or project more (or longer) videos")
        return components[:n_pca], stdev[:n_pca]

    @contextlib.contextmanager
    def _progress_bar(self, label: str, total: int):
        """A progress bar for a setup step (hidden without --progress); yields its report(done, total)."""
        from ..infra.console import progress

        with progress() as bar:
            bar.disable = bar.disable or not self.show_progress
            task = bar.add_task(label, total=total)
            yield lambda done, _total: bar.update(task, completed=done)

    def _distribute(self) -> tuple[nn.Module, nn.Module]:
        """The modules whose backward passes are synchronised: DDP wrappers under torchrun."""
        if not self.ctx.enabled:
            return self.rollout_local, self.objective
        return self._ddp(self.rollout_local), self._ddp(self.objective)

    def _distribute_latent_d(self) -> nn.Module | None:
        if self.latent_prior is None or not self.ctx.enabled:
            return self.latent_prior and self.latent_prior.discriminator
        return self._ddp(self.latent_prior.discriminator)

    def _ddp(self, module: nn.Module) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(module, device_ids=[self.device.index] if self.device.type == "cuda" else None)

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
                "eval": {"best": self.best_score} if self.best_score is not None else {},
                "drift": self.drift_penalty.state_dict() if isinstance(self.drift_penalty, nn.Module) else {},
                "latent_motion": self.latent_prior.state_dict() if self.latent_prior is not None else {},
                "identity": self.identity.state_dict() if self.identity is not None else {},
                "config": {k: v for k, v in self.config.to_dict().items() if v is not None}}

    def save_state(self) -> None:
        if not self.ctx.is_main:
            return
        with atomic_path(self.run.state) as tmp:
            torch.save(self.state_dict(), tmp)

    def _load_state(self) -> None:
        path = self.run.state
        state = read_fields(torch_load_safely(path, "training state"), STATE_FIELDS, source=path,
                            what="training state")
        check_compatible(state["config"], self.config, path)
        parts = [(key, getattr(self, key).load_state_dict, state[key])
                 for key in ("motion", "objective", "opt_g", "opt_d", "scaler_g", "scaler_d")]
        if isinstance(self.drift_penalty, nn.Module):
            parts.append(("drift", self.drift_penalty.load_state_dict, state["drift"]))
        if self.latent_prior is not None:
            parts.append(("latent_motion", self.latent_prior.load_state_dict, state["latent_motion"]))
        if self.identity is not None:
            parts.append(("identity", self.identity.load_state_dict, state["identity"]))
        parts.append(("rng", set_torch_rng, state["rng"].get("torch")))
        if "cuda" in state["rng"] and self.device.type == "cuda":
            parts.append(("cuda rng", lambda value: torch.cuda.set_rng_state(value, self.device), state["rng"]["cuda"]))
        load_state_parts(parts, path)
        self.step = state["step"]
        self._check_step_matches_optimisers(path)
        best = state["eval"].get("best")
        self.best_score = float(best) if isinstance(best, float) and math.isfinite(best) else None

    def _check_step_matches_optimisers(self, path: Path) -> None:
        """Adam counts its own steps: g_steps per iteration for the motion model, one for the
        discriminators. A `step` that disagrees was edited, and would be believed everywhere."""
        for name, optimiser, per_iteration in (("opt_g", self.opt_g, self.config.g_steps), ("opt_d", self.opt_d, 1)):
            counts = set()
            for entry in optimiser.state.values():
                step = entry.get("step")
                if step is None:
                    continue
                if isinstance(step, Tensor):
                    step = step.item() if step.numel() == 1 else None
                if not isinstance(step, (int, float)) or not math.isfinite(step):
                    raise MocohdError(f"the training state's optimiser {name} has a step count that is not a number",
                                      path=path, fix="the state was edited or is damaged; start a new run")
                counts.add(int(step))
            if counts and counts != {self.step * per_iteration}:
                raise MocohdError(f"the training state says step {self.step}, but its optimiser {name} has taken "
                                  f"{sorted(counts)[0]} steps (expected {self.step * per_iteration})", path=path,
                                  fix="the state was edited or is damaged; start a new run")

    # -- one iteration ---------------------------------------------------------------------------
    def _seed_step(self) -> None:
        """Every random draw of step s comes from generators seeded by (seed, rank, s), so a
        resumed run draws exactly what an uninterrupted one would."""
        seed = torch_seed((self.config.seed * 1_000_003 + self.ctx.rank) * 1_000_003 + self.step)
        self.rng.manual_seed(seed)
        self.cpu_rng.manual_seed(seed)

    def generate(self, rollout_fn: Callable, batch: int, horizon: int | None = None, *, extra_frames: int = 0,
                 extra_stop: int | None = None, walks: int = 0) -> tuple[Tensor, Rollout, Tensor | None]:
        """Fake clips [B, T, 3, S, S] (pooled to the real clips' size), their rollout, which runs for
        `horizon` frames (default T), and `extra_frames` more frames per video [B, extra, 3, S, S] (else None),
        each at a random step in [T, extra_stop) of the rollout (default: its end). Only these are synthesised.
        With `walks`, the rollout holds that many more videos after the B clips' (latents only, for walk
        matching): one forward pass, as DistributedDataParallel wants."""
        clip = self.config.frames
        w0 = self.backbone.sample_latent(batch + walks, rng=self.rng)
        rollout = rollout_fn(w0, max(horizon or 0, clip), self.rng)
        shown = rollout.latents[:batch]
        latents = shown[:, :clip]
        if extra_frames:
            stop = extra_stop or shown.shape[1]
            steps = torch.randint(clip, stop, (batch, extra_frames), generator=self.rng, device=self.rng.device)
            index = steps.to(latents.device)[..., None].expand(-1, -1, latents.shape[-1])
            latents = torch.cat([latents, shown.gather(1, index)], 1)
        condition_gen = self.rng if self.rng.device.type == "cpu" else self.cpu_rng
        condition = self.backbone.sample_condition(batch, self.config.classes, rng=condition_gen)
        frames = self.backbone.synthesize(latents, condition=condition, noise="random", rng=self.rng)
        frames = pool_frames(frames, self.config.video_frame_size)
        return frames[:, :clip], rollout, frames[:, clip:] if extra_frames else None

    def g_step(self, real: Tensor) -> Losses:
        config = self.config
        horizon = config.drift_frames  # the identity loss and the image discriminator may look further
        later_horizon = config.later_horizon
        walks = config.walk_batch if config.w_walk else 0
        with self.autocast():
            fake, rollout, later = self.generate(self.rollout_net, real.shape[0], max(horizon, later_horizon or 0),
                                                 extra_frames=EXTRA_FRAMES if later_horizon else 0,
                                                 extra_stop=later_horizon, walks=walks)
            if walks:
                losses_walk = config.w_walk * self._walk_loss(rollout.videos(real.shape[0]).displacements)
                rollout = rollout.videos(0, real.shape[0])
            if rollout.latents.shape[1] > horizon:
                rollout = rollout.first(horizon)
            losses = self.objective.g_loss(real, fake, rollout, rng=self.rng, **self._image_later(later))
        if config.w_mi != 1.0 and "mi" in losses:
            losses["mi"] = config.w_mi * losses["mi"]
        if config.w_drift:
            losses["drift"] = config.w_drift * self.drift_penalty(rollout.displacements)
        if self.latent_prior is not None:
            disc = self.latent_prior.discriminator
            with torch.no_grad():
                real_scores = disc(self._real_displacements(real.shape[0]))
            fake_z = rollout.displacements[:, :config.frames - 1]
            losses["latent"] = config.w_latent_motion * ra_lsgan_g_loss(real_scores, disc(fake_z))
        if walks:
            losses["walk"] = losses_walk
        if self.identity is not None:
            judged_later = later is not None and (config.identity_horizon or 0) > config.frames
            seen = torch.cat([fake, later], 1) if judged_later else fake
            losses["identity"] = config.w_identity * identity_loss(self.identity.encoder, seen,
                                                                   self.identity.real_distance)
        total = sum(losses.values())
        self.opt_g.zero_grad(set_to_none=True)
        # Gradients for the motion generator only: the discriminators are not updated here.
        self.scaler_g.scale(total).backward(inputs=list(self.motion.parameters()))
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        return losses

    def d_step(self, real: Tensor) -> Losses:
        image_horizon = self.config.later_horizon if self.config.image_horizon else None
        with torch.no_grad(), self.autocast():
            fake, rollout, later = self.generate(self.rollout_local, real.shape[0], image_horizon,
                                                 extra_frames=EXTRA_FRAMES if image_horizon else 0,
                                                 extra_stop=image_horizon)
        if self.latent_prior is not None:
            # one pass over real and generated clips together (the MLP treats samples apart), so that the
            # DDP wrapper under torchrun sees one forward per backward
            n = real.shape[0]
            both = torch.cat([self._real_displacements(n), rollout.displacements[:, :self.config.frames - 1]])
            scores = self.latent_d_net(both)[0][0]
            latent_loss = ra_lsgan_d_loss([[scores[:n]]], [[scores[n:]]])
            self.latent_prior.optimizer.zero_grad(set_to_none=True)
            latent_loss.backward()
            self.latent_prior.optimizer.step()
        with self.autocast():
            losses = self.objective_net(real, fake, self.rng, **self._image_later(later))
        total = sum(losses.values())
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler_d.scale(total).backward()
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()
        self.objective.after_d_step()
        if self.latent_prior is not None:
            losses["latent"] = latent_loss.detach()
        return losses

    # Which of the backbone's layers leave fp32 under --precision bf16/fp16: the backbone's policy for
    # this use (plugins/stylegan2/generator.py PRECISION_POLICIES; docs/precision.md, "Training").
    precision_use = "training"

    def _precision_policy(self):
        policy = getattr(self.backbone, "precision_policy", None)
        if self.config.precision == "fp32" or not callable(policy):
            return contextlib.nullcontext()
        return policy(self.precision_use)

    def iteration(self, real: Tensor) -> dict[str, Tensor]:
        self._seed_step()
        with self._precision_policy():
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
        checkpoint = recorded_reference(backbone.checkpoint_path or None)
        return {"backbone": getattr(backbone, "spec", None) or backbone.name, "backbone_name": backbone.name,
                "backbone_checkpoint": checkpoint, "backbone_sha256": backbone.checkpoint_sha256,
                "n_frames": self.config.frames, "fps": self.config.fps, "time_step": self.config.time_step,
                "video_frame_size": self.config.video_frame_size, "mode": self.config.mode, "step": self.step,
                "version": __version__}

    def export(self, path: Path) -> Path:
        return self.motion.save(path, **{k: v for k, v in self.export_metadata().items() if v is not None})

    def write_samples(self, writer=None) -> Path | None:
        if self.config.num_samples == 0:
            return None
        from ..models.generation import generate_videos
        from ..data.video import save_video, to_uint8, video_grid

        videos = generate_videos(self.backbone, self.motion, num_videos=self.config.num_samples,
                                 n_frames=self.config.frames, seed=self.config.seed,
                                 classes=self.config.classes)
        path = self.run.sample_at(self.step, self.config.sample_format)
        path.parent.mkdir(parents=True, exist_ok=True)
        grid = video_grid(videos)
        if writer is not None:  # the same grid in TensorBoard's image tab (an animated GIF)
            log_video(writer, "samples", to_uint8(grid), self.step, fps=self.config.fps)
        return save_video(grid, path, fps=self.config.fps)

    def write_config(self) -> None:
        values = {**self.config.to_dict(), "out": str(self.run.path), "iterations": self.iterations}
        with atomic_path(self.run.config) as tmp:
            tmp.write_text(dumps_flat_toml(values), encoding="utf-8")

    # -- the loop --------------------------------------------------------------------------------
    def _open_run(self):
        """Rank 0: the run folder, its config and log, and a TensorBoard writer."""
        from torch.utils.tensorboard import SummaryWriter

        self.run.path.mkdir(parents=True, exist_ok=True)  # only now: a failed start leaves nothing behind
        self.write_config()
        append_provenance(self.run.path, device=self.device, step=self.step)
        summary = self.dataset.report.summary()
        self.run.append_log(("resumed" if self.step else "started") + f" at step {self.step}/{self.iterations}; "
                            f"{summary}; world size {self.ctx.world_size}, device {self.device}, "
                            f"precision {self.config.precision}")
        log.info("run folder: %s", self.run.path)
        log.info("data: %s", summary)
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
        """Train to the end, holding the run folder's lock (infra/runs.py RunLock) throughout:
        a second process given the same --out stops before writing anything."""
        lock = claim_run_folder(self.run.path, self.config.runs_root, self.config.resume) if self.ctx.is_main else None
        try:
            return self._fit()
        finally:
            if lock is not None:
                lock.release()

    def _fit(self) -> RunResult:
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
                    self.write_samples(writer)
                if config.eval_every and (step % config.eval_every == 0 or last):
                    self.evaluate(writer)
                if step % config.checkpoint_every == 0 or last:
                    self.save_state()
                bar.update(task, completed=step)
        if main:
            self.export(self.run.motion)  # before the samples: nothing optional may cost the run its model
            self.write_samples(writer)
            log_hparams(writer, self.config.to_dict(), losses)
            writer.close()
            self.run.append_log(f"finished at step {self.step}: {self.run.motion}")
        self.ctx.barrier()
        return RunResult(self.run.path, self.run.motion, self.step, losses, self.dataset.report)

    def evaluate(self, writer) -> None:
        """Rank 0 scores the current motion model with --eval-metric on --eval-videos generated
        videos against --data, logs it, and exports best.safetensors when it is the best so far."""
        if self.ctx.is_main:
            from ..evaluation.metrics import get_metric
            from ..evaluation.run import EvalSettings, run_evaluation
            from ..evaluation.sources import GeneratedVideos

            config = self.config
            settings = EvalSettings(metrics=[config.eval_metric], real=config.data, num_videos=config.eval_videos,
                                    frames=config.frames, seed=config.seed, device=str(self.device),
                                    detectors=config.eval_detectors)
            fake = GeneratedVideos(self.backbone, self.motion.eval(), num_videos=config.eval_videos, seed=config.seed,
                                   classes=config.classes)
            fake.resolution = self.backbone.resolution
            value = run_evaluation(settings, fake=fake).values[config.eval_metric]
            self.motion.train()
            writer.add_scalar(f"eval/{config.eval_metric}", value, self.step)
            score = value if get_metric(config.eval_metric).lower_is_better else -value
            best = self.best_score is None or score < self.best_score
            self.run.append_log(f"eval at step {self.step}: {config.eval_metric}={value:.8g}"
                                + (" (best so far: best.safetensors)" if best else ""))
            if best:
                self.best_score = score
                self.export(self.run.best)
        self.ctx.barrier()

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
