"""The motion-training task: the motion generator against a frozen image generator (docs/method.md).

One task serves every mode: data, the 5:1 generator/discriminator schedule, optimisers, mixed
precision and DistributedDataParallel. What a mode trains against (its discriminators and losses)
is an `Objective` (training/objectives/); each optional loss term is a `Term` (training/terms/);
the run folder, state and resume, checkpoints, logging, samples and the loop itself are the
engine's (training/engine.py).

Per iteration (one real batch): `g_steps` motion-generator updates, each on fresh content
codes and motion codes, then one discriminator update on a fresh fake batch, then the
objective's after-D hook.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
import functools
import logging
import math
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ..data.clips import DatasetReport, VideoClips, clip_loader
from ..data.video import save_video, to_uint8, video_grid
from ..evaluation.metrics import get_metric
from ..evaluation.run import EvalSettings, run_evaluation
from ..evaluation.sources import GeneratedVideos
from ..infra.console import progress
from ..infra.device import autocast
from ..infra.distributed import DistContext, init_distributed, shutdown
from ..infra.errors import MocohdError
from ..infra.hub import recorded_reference
from ..infra.runs import RunDir
from ..infra.schema import Field, read_fields
from ..infra.settings import torch_seed
from ..infra.tensorboard import log_video
from ..infra.version import __version__
from ..models.backbone import ImageGenerator, load_backbone
from ..models.generation import generate_videos, pool_frames
from ..models.identity import EXTRA_FRAMES
from ..models.latent_prior import read_projections
from ..models.motion import MotionGenerator, Rollout
from ..models.pca import displacement_pca, motion_pca
from .config import (CONFIG_TABLES, DEFAULT_EPOCHS, TrainConfig, check_drift_batch, fit_to_backbone, fit_to_world,
                     parse_term_weights)
from .engine import Cadence, Engine
from .latent_phase import LatentPhase, LatentPhaseSettings
from .objectives import Losses, ObjectiveFactory, objective_for
from .projections import project_training_videos
from .resume import check_compatible, load_state_parts, refuse_out_inside_data, run_folder
from .terms import Step, TermContext, build_terms, registered_terms

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
    Field("latent_phase", dict, default={}),
)


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
        self.backbone.set_truncation(config.truncation)
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
        factory = objective_factory or objective_for(config.objective or config.mode)
        self.objective = factory(config, self.backbone).to(self.device)
        self.opt_g = torch.optim.Adam(self.motion.parameters(), lr=config.lr, betas=(config.beta1, config.beta2))
        self.terms = build_terms(self._term_context())
        self.latent_phase = self._build_latent_phase()
        self.opt_d = torch.optim.Adam(self.objective.optimizer_groups(config), lr=config.lr)
        fp16 = config.precision == "fp16"
        self.scaler_g = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.autocast = lambda: autocast(self.device, config.precision)
        self.step = 0
        self.best_score: float | None = None  # the best --eval-metric so far (lower is better once oriented)
        self.engine = Engine(self, Cadence(log_every=config.log_every, sample_every=config.sample_every,
                                           checkpoint_every=config.checkpoint_every,
                                           checkpoint_minutes=config.checkpoint_minutes,
                                           eval_every=config.eval_every, minutes=config.minutes),
                             run=self.run, runs_root=config.runs_root, resume=config.resume,
                             config_values={**config.to_dict(), "iterations": self.iterations},
                             config_tables=CONFIG_TABLES, context=context,
                             tensorboard=True, progress=progress)
        if config.resume:  # _run_path made sure the state exists
            self.engine.load_state()
        for term in self.terms:
            term.setup(self.motion)
        self.rollout_local = _RolloutModule(self.motion)  # for no-grad rollouts (no DDP bookkeeping)
        self.rollout_net, self.objective_net = self._distribute()
        self.rng = torch.Generator(self.device)
        self.cpu_rng = torch.Generator()
        self.batches = None  # the data stream, opened when the loop starts (at the resumed step)

    # -- the Task the engine drives (training/engine.py) ---------------------------------------------
    label = "training"
    partial_step_is_safe = False  # the optimisers count g_steps per iteration: a half-done one would not resume
    divergence_fix = "resume from the last state with a lower --lr, or use --precision fp32"

    @property
    def total(self) -> int:
        """The latent phase's steps (if any), then the rendered iterations."""
        return self.config.latent_iterations + self.iterations

    @property
    def rendered_steps(self) -> int:
        """Iterations of the rendered training done so far (the steps past the latent phase)."""
        return max(0, self.step - self.config.latent_iterations)

    @property
    def phase(self) -> str | None:
        if not self.config.latent_iterations:
            return None
        # the phase of the step just taken (of the first, before any): what a log line at this step reports
        return "latent" if self.step <= self.config.latent_iterations else "rendered"

    def term(self, name: str):
        """The active term registered as `name` (training/terms/), or None."""
        return next((term for term in self.terms if term.name == name), None)

    def _term_context(self) -> TermContext:
        names = [str(value).partition("=")[0] for value in self.config.terms or []]
        weights = dict(parse_term_weights(self.config.terms or [], known=registered_terms(names)))
        return TermContext(self.config, self.backbone, self.device, self.ctx, lambda: self._projected_videos,
                           self._projections_source, self._progress_bar, self._ddp_if_distributed, weights)

    def on_loop_start(self, engine: Engine) -> None:
        config = self.config
        if engine.is_main:
            log.info("data: %s", self.dataset.report.summary())
        self.batches = clip_loader(self.dataset, config.batch_size, seed=config.seed, rank=self.ctx.rank,
                                   world_size=self.ctx.world_size, start_batch=self.rendered_steps, workers=config.workers,
                                   pin_memory=self.device.type == "cuda")

    def train_step(self) -> dict[str, Tensor]:
        if self.step < self.config.latent_iterations:
            self._seed_step()
            losses = self.latent_phase.step(self.rng)
            self.step += 1
            return {f"latent/{k}": v for k, v in losses.items()}
        return self.iteration(next(self.batches).to(self.device, non_blocking=True))

    def generators(self) -> dict[str, torch.Generator]:
        return {}  # the step's generators are seeded from (seed, rank, step): nothing to keep

    def start_summary(self) -> str:
        return (f"{self.dataset.report.summary()}; world size {self.ctx.world_size}, device {self.device}, "
                f"precision {self.config.precision}")

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

    @functools.cached_property
    def _projected_videos(self) -> Tensor:
        """The training videos projected into the backbone [N, F, D] (`--latent-motion`'s file, or projected
        by rank 0 on first use and cached), read once for the latent motion discriminator and the basis."""
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
                size=self.backbone.resolution, seed=config.seed, count=config.projected_videos)
                if self.ctx.is_main else None)
        return latents

    @property
    def _projections_source(self) -> str:
        """What the projected training videos came from, for error messages."""
        return self.config.latent_motion or f"the projections of {self.config.data}"

    def _build_motion(self) -> MotionGenerator:
        config, latent_dim = self.config, self.backbone.latent_dim
        pca = None
        if config.resume or not config.pca:
            pass  # resumed runs get the basis from the state
        elif config.pca_source == "videos":
            pca = self._video_basis()
        else:
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

    def _build_latent_phase(self) -> LatentPhase | None:
        """The latent phase (training/latent_phase.py) on the projected training videos, or None."""
        config = self.config
        if not config.latent_iterations:
            return None
        projected = self._projected_videos
        frames = config.latent_frames or projected.shape[1]
        if projected.shape[1] < frames:
            raise MocohdError(f"the projected training videos have {projected.shape[1]} frames, fewer than "
                              f"--latent-frames {frames}", path=self._projections_source,
                              fix="lower --latent-frames, or project longer videos")
        settings = LatentPhaseSettings(iterations=config.latent_iterations, lr=config.latent_lr,
                                       batch=config.latent_batch, samples=config.latent_samples, frames=frames,
                                       w_mi=config.w_mi, w_adversarial=config.w_latent_adversarial,
                                       horizon=config.latent_horizon, w_horizon=config.w_latent_horizon)
        return LatentPhase(self.motion, projected, settings, self.device,
                           rollout=lambda w0, n_frames, rng: self.rollout_net(w0, n_frames, rng),
                           wrap=self._ddp_if_distributed)

    def _video_basis(self) -> tuple[Tensor, Tensor]:
        """`--pca-source videos`: the first n_pca directions of the projected training videos' walks, each
        scaled by their spread along it (every rank computes the same from the same projections)."""
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
        with progress() as bar:
            bar.disable = bar.disable or not self.show_progress
            task = bar.add_task(label, total=total)
            yield lambda done, _total: bar.update(task, completed=done)

    def _distribute(self) -> tuple[nn.Module, nn.Module]:
        """The modules whose backward passes are synchronised: DDP wrappers under torchrun."""
        if not self.ctx.enabled:
            return self.rollout_local, self.objective
        return self._ddp(self.rollout_local), self._ddp(self.objective)

    def _ddp_if_distributed(self, module: nn.Module) -> nn.Module:
        return self._ddp(module) if self.ctx.enabled else module

    def _ddp(self, module: nn.Module) -> nn.Module:
        return DDP(module, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {"motion": self.motion.state_dict(), "objective": self.objective.state_dict(),
                 "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                 "scaler_g": self.scaler_g.state_dict(), "scaler_d": self.scaler_d.state_dict(),
                 # the data stream is addressed by (seed, batch index): its state is the next batch
                 "data": {"seed": self.config.seed, "next_batch": self.step},
                 "eval": {"best": self.best_score} if self.best_score is not None else {},
                 "config": {k: v for k, v in self.config.to_dict().items() if v is not None}}
        state.update({term.state_key: term.state_dict() for term in self.terms if term.has_state()})
        if self.latent_phase is not None:
            state["latent_phase"] = self.latent_phase.state_dict()
        return state

    def load_state_dict(self, saved: dict, path: Path) -> None:
        state = read_fields(saved, STATE_FIELDS, source=path, what="training state")
        check_compatible(state["config"], self.config, path)
        parts = [(key, getattr(self, key).load_state_dict, state[key])
                 for key in ("motion", "objective", "opt_g", "opt_d", "scaler_g", "scaler_d")]
        parts += [(term.state_key, term.load_state_dict, saved.get(term.state_key) or {})
                  for term in self.terms if term.has_state()]
        if self.latent_phase is not None:
            parts.append(("latent_phase", self.latent_phase.load_state_dict, state["latent_phase"]))
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
            expected = self.rendered_steps * per_iteration
            if counts and counts != {expected}:
                raise MocohdError(f"the training state says step {self.step}, but its optimiser {name} has taken "
                                  f"{sorted(counts)[0]} steps (expected {expected})", path=path,
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
        walks = sum(term.extra_walks for term in self.terms)
        with self.autocast():
            fake, rollout, later = self.generate(self.rollout_net, real.shape[0], max(horizon, later_horizon or 0),
                                                 extra_frames=EXTRA_FRAMES if later_horizon else 0,
                                                 extra_stop=later_horizon, walks=walks)
            step = Step(real, fake, rollout, later, self.rng, walks=rollout.videos(real.shape[0]) if walks else None)
            for term in self.terms:
                term.prepare_g(step)
            if walks:
                rollout = rollout.videos(0, real.shape[0])
            if rollout.latents.shape[1] > horizon:
                rollout = rollout.first(horizon)
            step.rollout, step.walks = rollout, None
            losses = self.objective.g_loss(real, fake, rollout, rng=self.rng, **self._objective_kwargs(later))
        if config.w_mi != 1.0 and "mi" in losses:
            losses["mi"] = config.w_mi * losses["mi"]
        for term in self.terms:
            losses.update(term.g_loss(step))
        total = sum(losses.values())
        self.opt_g.zero_grad(set_to_none=True)
        # Gradients for the motion generator only: the discriminators are not updated here.
        self.scaler_g.scale(total).backward(inputs=list(self.motion.parameters()))
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        return losses

    def d_step(self, real: Tensor) -> Losses:
        later_horizon = self.config.later_horizon if any(term.needs_later_in_d for term in self.terms) else None
        with torch.no_grad(), self.autocast():
            fake, rollout, later = self.generate(self.rollout_local, real.shape[0], later_horizon,
                                                 extra_frames=EXTRA_FRAMES if later_horizon else 0,
                                                 extra_stop=later_horizon)
        step = Step(real, fake, rollout, later, self.rng)
        term_losses = {}
        for term in self.terms:
            term_losses.update(term.d_update(step))
        with self.autocast():
            losses = self.objective_net(real, fake, self.rng, **self._objective_kwargs(later))
        total = sum(losses.values())
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler_d.scale(total).backward()
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()
        self.objective.after_d_step()
        losses.update(term_losses)
        return losses

    def _objective_kwargs(self, later: Tensor | None) -> dict:
        kwargs = {}
        for term in self.terms:
            kwargs.update(term.objective_kwargs(later))
        return kwargs

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
        backbone = self.backbone
        checkpoint = recorded_reference(backbone.checkpoint_path or None)
        return {"backbone": getattr(backbone, "spec", None) or backbone.name, "backbone_name": backbone.name,
                "backbone_checkpoint": checkpoint, "backbone_sha256": backbone.checkpoint_sha256,
                "n_frames": self.config.frames, "fps": self.config.fps, "time_step": self.config.time_step,
                "video_frame_size": self.config.video_frame_size, "mode": self.config.mode, "step": self.step,
                "latent_iterations": self.config.latent_iterations or None,
                "version": __version__}

    def export(self, path: Path | None = None) -> Path:
        path = path or self.run.motion
        return self.motion.save(path, **{k: v for k, v in self.export_metadata().items() if v is not None})

    def export_step(self, step: int) -> Path:
        return self.export(self.run.motion_at(step))

    def write_samples(self, engine: Engine | None = None, final: bool = False) -> Path | None:
        if self.config.num_samples == 0:
            return None
        videos = generate_videos(self.backbone, self.motion, num_videos=self.config.num_samples,
                                 n_frames=self.config.frames, seed=self.config.seed,
                                 classes=self.config.classes)
        path = self.run.sample_at(self.step, self.config.sample_format)
        path.parent.mkdir(parents=True, exist_ok=True)
        grid = video_grid(videos)
        if engine is not None and engine.writer is not None:  # the same grid in TensorBoard's image tab (a GIF)
            log_video(engine.writer, "samples", to_uint8(grid), self.step, fps=self.config.fps)
        return save_video(grid, path, fps=self.config.fps)

    def fit(self) -> RunResult:
        """Train to the end (training/engine.py drives the loop)."""
        self.engine.fit()
        return RunResult(self.run.path, self.run.motion, self.step, self.engine.last_losses, self.dataset.report)

    def evaluate(self, engine: Engine) -> None:
        """Rank 0 scores the current motion model with --eval-metric on --eval-videos generated
        videos against --data, logs it, and exports best.safetensors when it is the best so far."""
        if self.ctx.is_main:
            config = self.config
            settings = EvalSettings(metrics=[config.eval_metric], real=config.data, num_videos=config.eval_videos,
                                    frames=config.frames, seed=config.seed, device=str(self.device),
                                    detectors=config.eval_detectors)
            fake = GeneratedVideos(self.backbone, self.motion.eval(), num_videos=config.eval_videos, seed=config.seed,
                                   classes=config.classes)
            fake.resolution = self.backbone.resolution
            value = run_evaluation(settings, fake=fake).values[config.eval_metric]
            self.motion.train()
            if engine.writer is not None:
                engine.writer.add_scalar(f"eval/{config.eval_metric}", value, self.step)
            score = value if get_metric(config.eval_metric).lower_is_better else -value
            best = self.best_score is None or score < self.best_score
            engine.append_log(f"eval at step {self.step}: {config.eval_metric}={value:.8g}"
                              + (" (best so far: best.safetensors)" if best else ""))
            if best:
                self.best_score = score
                self.export(self.run.best)
        self.ctx.barrier()


def train(config: TrainConfig, *, backbone: ImageGenerator | None = None,
          objective_factory: ObjectiveFactory | None = None, progress: bool = True) -> RunResult:
    """Train a motion model; alone or, under torchrun, data-parallel. Returns where it went."""
    context = init_distributed(config.device)
    try:
        return Trainer(config, context, backbone=backbone, objective_factory=objective_factory,
                       progress=progress).fit()
    finally:
        shutdown(context)
