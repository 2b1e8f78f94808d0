"""Pre-training a StyleGAN2 image generator on the frames of a video or image dataset.

The GAN recipe of StyleGAN2: non-saturating logistic loss, lazy R1 penalty on the reals every
`d_reg_every` steps, an exponential moving average of the generator (the exported model), and,
for small datasets, DiffAugment-style differentiable augmentation applied to everything the
discriminator sees (reals and fakes alike, so the generator never learns the augmentation).
Style mixing regularisation (`--style-mixing`, StyleGAN2's 0.9): for that share of the steps, the
generator's images take two codes, the first for the styled layers before a random crossover and
the second for the rest, so that what each layer decides must look right with any other code: the
layers' effects separate (pose in the coarse layers, colours in the fine ones, when it works), which
a motion model that moves only some layers needs. Path-length regularisation is left out.

The generic parts live in the core: reading frames (mocohd_cli/data/frames.py), DiffAugment
(mocohd_cli/models/augment.py), the losses (mocohd_cli/models/losses.py), sample grids
(mocohd_cli/workflows/backbone_grid.py). A run uses the run-folder, TOML and --resume conventions
of `mocohd train` (mocohd_cli/infra/runs.py, mocohd_cli/training/resume.py):

    <run>/config.toml              the resolved settings (flat TOML; `--config` reads the same names)
    <run>/log.txt                  one line per logged step and event
    <run>/state/latest.pt          everything --resume needs (tensors only: loads with weights_only=True)
    <run>/samples/step_N.png       sample grids of the EMA generator from a fixed set of z
    <run>/generator.safetensors    the EMA generator, loadable by every command (--checkpoint)
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
import json
import logging
import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from mocohd_cli.plugin_api import (DEFAULT_RUNS_ROOT, PRECISIONS, Cadence, Engine, Field, MocohdError, RunDir, autocast,
                                   d_logistic_loss, diff_augment, frame_batch, frames_fid_monitor, g_nonsaturating_loss,
                                   given_and_file, load_frames, load_state_parts, new_run_path, r1_penalty, read_fields,
                                   require_positive, resolve_device, resumed_values, run_folder, sample_images, setting,
                                   settings_from_dict, sha256_of, write_image_grid)
from mocohd_plugins.stylegan2 import Discriminator, StyleGAN2Generator

_log = logging.getLogger(__name__)

EXPORT_FILE = "generator.safetensors"
# New runs go to <runs root>/backbone-<time>, under a root of their own so that `train --resume`
# and `pretrain --resume` without --out each find their own latest run.
DEFAULT_PRETRAIN_ROOT = DEFAULT_RUNS_ROOT / "pretrain"
RUN_PREFIX = "backbone"
# Settings that define the architecture: a resumed run must keep them.
ARCHITECTURE_KEYS = ("size", "style_dim", "n_mlp", "channels", "d_channels")
# What a pre-training state (state/latest.pt) must hold, checked before any of it is used.
STATE_FIELDS = tuple(Field(key, dict) for key in ("generator", "discriminator", "ema", "opt_g", "opt_d", "rng",
                                                  "config")) + (
    Field("step", int, lo=0, hi=10**9), Field("init_sha256", str, hi=64, default=None))
# Settings of the invocation rather than of the model: not stored in the exported file.
# (--init is recorded in the export as the sha256 of the checkpoint it started from, not as a path.)
RUN_KEYS = ("data", "out", "runs_root", "resume", "device", "init", "minutes", "detector")
# What --init takes from the checkpoint it starts from, unless given.
INIT_ARCHITECTURE_KEYS = ("size", "style_dim", "n_mlp", "channels")
AUTO_AUGMENT_IMAGES = 20_000
AUGMENT_MODES = ("auto", "diffaug", "none")
SAMPLE_GRID_IMAGES = 36


def compact_channels(size: int, widest: int = 128, narrowest: int = 32) -> dict[int, int]:
    """Widths halving from `widest` at 4 px towards `narrowest` at `size` (the example backbones)."""
    levels = int(math.log2(size)) - 1
    widths = np.geomspace(widest, narrowest, levels)
    return {2 ** (i + 2): int(round(float(w) / 8) * 8) for i, w in enumerate(widths)}


def parse_channels(value: dict | str | list | None, option: str = "--channels") -> dict[int, int]:
    """{resolution: width} from a dict, a "4:128,8:96,..." string or a list of such pairs."""
    if not value:
        return {}
    if isinstance(value, dict):
        items = list(value.items())
    else:
        parts = value.split(",") if isinstance(value, str) else [str(v) for v in value]
        items = [part.split(":") for part in parts if part.strip()]
    try:
        return {int(res): int(width) for res, width in items}
    except (TypeError, ValueError) as exc:
        raise MocohdError(f"cannot read {option} {value!r}",
                          fix="write resolution:width pairs, e.g. 4:128,8:128,16:64,32:64,64:32") from exc


def format_channels(channels: dict[int, int]) -> str:
    """{4: 128, 8: 96} -> "4:128,8:96" (how config.toml and the command line write them)."""
    return ",".join(f"{res}:{width}" for res, width in sorted(channels.items()))


@dataclass
class PretrainConfig:
    """Every knob of a pre-training run (the `pretrain` command is built from these fields, and
    config.toml / --config hold the same names)."""

    # where from and where to
    data: str | None = setting(None, "Frames to learn from: a folder (or .zip) of images, frame folders or video "
                               "files.", group="Data and run")
    out: str | None = setting(None, "Run folder.", default_text=f"{DEFAULT_PRETRAIN_ROOT}/{RUN_PREFIX}-<time>",
                              group="Data and run")
    runs_root: str = setting(str(DEFAULT_PRETRAIN_ROOT), "Where new run folders go.", metavar="DIR",
                             group="Data and run")
    resume: bool = setting(False, "Continue the run in --out (or the latest run with a state under --runs-root) "
                           "from its state.", group="Data and run")
    max_images: int = setting(100_000, "Read at most this many frames (evenly spaced).", group="Data and run")
    init: str | None = setting(None, "Fine-tune: start the generator and its EMA from this StyleGAN2 checkpoint "
                               "(its architecture; the discriminator starts fresh).",
                               default_text="a random init", metavar="PATH", group="Data and run")
    # architecture
    size: int = setting(64, "Image side in pixels (a power of two, at least 8).", group="Architecture")
    style_dim: int = setting(256, "Dimension of z and W (the motion space).", group="Architecture")
    n_mlp: int = setting(4, "Layers of the mapping network.", group="Architecture")
    channels: dict = setting({}, "Generator widths per resolution, e.g. 4:128,8:96,16:64,32:48,64:32.",
                             cli_type=str, default_text="128 at 4 px narrowing to 32 at --size",
                             metavar="RES:WIDTH,...", group="Architecture")
    d_channels: dict = setting({}, "Discriminator widths per resolution.", cli_type=str,
                               default_text="the generator's", metavar="RES:WIDTH,...", group="Architecture")
    # schedule
    batch_size: int = setting(16, "Images per step.", group="Schedule")
    steps: int = setting(5000, "Total training steps (a resumed run continues up to this).", group="Schedule")
    lr: float = setting(0.002, "Adam learning rate (betas 0, 0.99; the discriminator's corrected for lazy R1).",
                        group="Schedule")
    # 1.0 trained the example backbones stably; the StyleGAN2-ADA heuristic (0.0002 * size^2 / batch
    # = 0.1 at 64 px, batch 8) let them collapse.
    r1_gamma: float = setting(1.0, "R1 weight; negative: StyleGAN2-ADA's 0.0002 * size^2 / batch size.",
                              group="Schedule")
    d_reg_every: int = setting(16, "Apply the R1 penalty every N steps (lazy regularisation).", group="Schedule")
    ema_kimg: float | None = setting(None, "Half-life of the generator's EMA, in thousands of images.",
                                     default_text="batch size * 10 / 32", group="Schedule")
    ema_rampup: float = setting(0.05, "EMA ramp-up: the half-life is at most this fraction of the images seen so "
                                "far (0: off).", group="Schedule")
    augment: str = setting("auto", f"DiffAugment (colour, translation, cutout) of what the discriminator sees: "
                           f"diffaug, none, or auto (on for datasets under {AUTO_AUGMENT_IMAGES:,} frames).",
                           choices=AUGMENT_MODES, group="Schedule")
    augment_strength: float = setting(1.0, "Strength of the augmentation, 0..1.", group="Schedule")
    style_mixing: float = setting(0.9, "Share of the steps whose images mix two codes at a random layer "
                                  "(StyleGAN2's style mixing; 0: off).", group="Schedule")
    mirror: bool = setting(True, "Flip the reals left-right at random (dataset augmentation).",
                           flag="--mirror/--no-mirror", group="Schedule")
    seed: int = setting(0, "Random seed: the same seed gives the same run.", group="Schedule")
    # machine and outputs
    device: str = setting("auto", "Where it trains (auto: CUDA when there is one).", group="Machine and outputs")
    precision: str = setting("fp32", "Autocast precision (fp16 on CUDA only).", choices=tuple(PRECISIONS),
                             group="Machine and outputs")
    sample_every: int = setting(250, "Log the losses and write a sample grid (samples/step_N.png) every N steps "
                                "(and the frames FID, with an Inception detector at hand).",
                                group="Machine and outputs")
    detector: str | None = setting(None, "Inception detector file (inception-2015-12-05.pt) for the frames FID "
                                   "logged at each sample step.",
                                   default_text="the cached one if any, else no FID", metavar="FILE",
                                   group="Machine and outputs")
    checkpoint_minutes: float = setting(5.0, "Write the state (state/latest.pt) and the export this often.",
                                        group="Machine and outputs")
    # a budget for machines lent for a fixed time (a session, a GPU lease): the run stops cleanly
    # before the machine goes, and `--resume` carries on elsewhere
    minutes: float = setting(0.0, "Stop after this many minutes of training in this call, writing the state and the "
                             "export (continue with --resume); 0: no limit.", group="Machine and outputs")

    def __post_init__(self):
        self.channels = parse_channels(self.channels) or compact_channels(self.size)
        self.d_channels = parse_channels(self.d_channels, "--d-channels") or dict(self.channels)
        if self.r1_gamma < 0:
            self.r1_gamma = 0.0002 * self.size ** 2 / self.batch_size
        if self.ema_kimg is None or self.ema_kimg < 0:
            self.ema_kimg = self.batch_size * 10 / 32
        self.validate()

    def validate(self) -> None:
        def need(ok: bool, message: str, fix: str = "use a positive value") -> None:
            if not ok:
                raise MocohdError(message, fix=fix)

        need(self.size >= 8 and not self.size & (self.size - 1), f"--size must be a power of two >= 8, got {self.size}",
             "use 8, 16, 32, 64, ...")
        need(self.batch_size >= 2, f"--batch-size must be at least 2, got {self.batch_size}",
             "pass --batch-size 2 or more")
        require_positive(self, ("style_dim", "n_mlp", "steps", "d_reg_every", "sample_every", "max_images"))
        need(self.lr > 0, f"--lr must be > 0, got {self.lr}")
        need(self.minutes >= 0, f"--minutes must be >= 0, got {self.minutes}", "pass 0 for no time limit")
        need(self.augment in AUGMENT_MODES, f"unknown augment mode {self.augment!r}",
             f"use one of {', '.join(AUGMENT_MODES)}")
        need(0.0 <= self.augment_strength <= 1.0, f"--augment-strength must lie in [0, 1], got {self.augment_strength}",
             "use a value from 0 to 1")
        need(0.0 <= self.style_mixing <= 1.0, f"--style-mixing must lie in [0, 1], got {self.style_mixing}",
             "0.9 is StyleGAN2's; 0 turns it off")
        need(self.precision in PRECISIONS, f"unknown precision {self.precision!r}", "use fp32, bf16 or fp16")
        expected = [2 ** k for k in range(2, int(math.log2(self.size)) + 1)]
        for option, widths in (("--channels", self.channels), ("--d-channels", self.d_channels)):
            missing = [res for res in expected if res not in widths]
            need(not missing, f"{option} gives no width for {', '.join(f'{r} px' for r in missing)}",
                 f"give a width for every resolution from 4 to {self.size}, e.g. {format_channels(compact_channels(self.size))}")

    # -- files ---------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict, *, source: str | Path | None = None) -> "PretrainConfig":
        """Build from (for example TOML) values; dashes in keys are accepted; unknown keys are an error."""
        return settings_from_dict(cls, values, what="pre-training", source=source)

    def to_dict(self) -> dict:
        """TOML-ready values: the channel widths as "4:128,8:96,..." strings."""
        values = dataclasses.asdict(self)
        values["channels"], values["d_channels"] = format_channels(self.channels), format_channels(self.d_channels)
        return values

    def to_json(self) -> str:
        """The recipe (no paths or machine settings), as stored in the exported file's metadata."""
        return json.dumps({k: v for k, v in self.to_dict().items() if k not in RUN_KEYS})


def resolve_pretrain_config(options: dict, *, config_file: str | Path | None = None) -> PretrainConfig:
    """The settings of a run, later layers over earlier (as `mocohd train` layers them):
    PretrainConfig defaults < the resumed run's config.toml < --config FILE < options given
    (`options`: None where not given)."""

    given, from_file = given_and_file(options, config_file)
    values = resumed_values(given, from_file, DEFAULT_PRETRAIN_ROOT)
    values.update(from_file)
    init = given.get("init", values.get("init"))
    if init and not given.get("resume", values.get("resume")):
        values.update(init_architecture(load_init_generator(init)))
    values.update(given)
    return PretrainConfig.from_dict(values, source=config_file)


def load_init_generator(path: str | Path):
    """The generator `--init` starts from (a clear error for a file that is no StyleGAN2 checkpoint)."""
    return StyleGAN2Generator.from_checkpoint(path, channels_last=False)


def init_architecture(generator) -> dict:
    """The PretrainConfig architecture values of a generator."""
    config = generator.export_config()
    return {"size": config["size"], "style_dim": config["style_dim"], "n_mlp": config["n_mlp"],
            "channels": {int(res): width for res, width in config["channels"].items()}}


def pretrain_run_folder(config: PretrainConfig) -> Path:
    """--out, else (with --resume) the latest run with a state under --runs-root, else a new
    <runs root>/backbone-<time>; refuses to resume without a state or to start over one."""

    out = config.out
    if not out and not config.resume:
        out = new_run_path(config.runs_root, prefix=RUN_PREFIX)
    return run_folder(out, config.runs_root, config.resume)


# ------------------------------------------------------------------------------------ models
@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, beta: float) -> None:
    ema_params = dict(ema.named_parameters())
    for name, param in model.named_parameters():
        ema_params[name].lerp_(param.detach(), 1.0 - beta)
    ema_buffers = dict(ema.named_buffers())
    for name, buffer in model.named_buffers():
        if name in ema_buffers and ema_buffers[name] is not None:
            ema_buffers[name].copy_(buffer)


def build_models(config: PretrainConfig, device: torch.device):
    torch.manual_seed(config.seed)
    generator = StyleGAN2Generator(config.size, style_dim=config.style_dim, n_mlp=config.n_mlp,
                                   channels=config.channels).to(device)
    generator.requires_grad_(True).train()
    discriminator = Discriminator(config.size, channels=config.d_channels).to(device)
    ema = copy.deepcopy(generator).eval().requires_grad_(False)
    return generator, discriminator, ema


def make_optimizers(config: PretrainConfig, generator, discriminator):
    """Adam with betas (0, 0.99); the discriminator's lr and betas corrected for lazy R1."""
    ratio = config.d_reg_every / (config.d_reg_every + 1)
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr * ratio, betas=(0.0, 0.99 ** ratio))
    return opt_g, opt_d


# ----------------------------------------------------------------------------------- trainer
@dataclass
class StepLosses:
    d: float = float("nan")
    g: float = float("nan")
    r1: float = float("nan")            # NaN on the steps without the lazy R1 penalty
    real_logits: float = float("nan")   # mean D logit on reals and on fakes: how far apart D holds them
    fake_logits: float = float("nan")

    def items(self):
        """(name, value) of what the step measured, as the engine logs it (R1 only where it ran)."""
        return [(k, v) for k, v in dataclasses.asdict(self).items() if k != "r1" or math.isfinite(v)]


class Pretrainer:
    """One pre-training run, a task of mocohd's training engine (mocohd_cli.plugin_api.Engine): the run
    folder is resolved (and a state loaded with --resume) on construction; `run()` trains up to
    `config.steps` and returns the export."""

    label = "pre-training"
    partial_step_is_safe = True  # each model's state is whole after any part of a step
    divergence_fix = "lower --lr or raise --r1-gamma, then --resume from the last state"

    def __init__(self, config: PretrainConfig, frames: Tensor | None = None, *,
                 log: Callable[[str], None] | None = None):

        self.config = config
        self.folder = RunDir(pretrain_run_folder(config))
        self.device = resolve_device(config.device)
        autocast(self.device, config.precision)  # refuses an unsupported pair (fp16 on the CPU) up front
        self.log = log or _log.info
        if frames is None:
            if not config.data:
                raise MocohdError("no dataset given", fix="pass --data DIR (a folder or .zip of images or videos)")
            frames = load_frames(config.data, config.size, max_images=config.max_images)
        self.frames = frames
        if self.frames.shape[-1] != config.size:
            raise MocohdError(f"frames are {self.frames.shape[-1]} px but the run trains at {config.size} px")
        self.use_augment = config.augment == "diffaug" or (
            config.augment == "auto" and len(self.frames) < AUTO_AUGMENT_IMAGES)
        self.generator, self.discriminator, self.ema = build_models(config, self.device)
        self.opt_g, self.opt_d = make_optimizers(config, self.generator, self.discriminator)
        self.step = 0
        self.data_rng = torch.Generator().manual_seed(config.seed)
        self.aug_rng = torch.Generator(device=self.device).manual_seed(config.seed + 1)
        self.z_rng = torch.Generator(device=self.device).manual_seed(config.seed + 2)
        self.init_sha256 = None
        self.fid = None  # the frames FID of the sample steps (set when the run starts, with a detector at hand)
        self.engine = Engine(self, Cadence(log_every=config.sample_every, sample_every=config.sample_every,
                                           checkpoint_minutes=config.checkpoint_minutes,
                                           minutes=config.minutes or None),
                             run=self.folder, runs_root=config.runs_root, resume=config.resume,
                             config_values={k: v for k, v in config.to_dict().items() if k != "resume"},
                             say=self.log)
        if config.resume:  # pretrain_run_folder made sure the state exists
            self.engine.load_state("pre-training state")
        elif config.init:
            self.start_from(Path(config.init))

    def start_from(self, path: Path) -> None:
        """--init: the generator and its EMA take the weights of the checkpoint at `path`."""
        init = load_init_generator(path)
        ours = init_architecture(self.generator)
        theirs = init_architecture(init)
        changed = [k for k in INIT_ARCHITECTURE_KEYS if ours[k] != theirs[k]]
        if changed:
            raise MocohdError(f"--init: the checkpoint's architecture differs from the run's in "
                              f"{', '.join(changed)} (checkpoint: " + ", ".join(f"{k}={theirs[k]}" for k in changed)
                              + ")", path=path, fix="leave those options out (the checkpoint's are used) or give "
                                                    "its values")
        weights = {k: v for k, v in init.state_dict().items()}
        self.generator.load_state_dict(weights)
        self.ema.load_state_dict(weights)
        self.init_sha256 = sha256_of(path)

    # -- the task the engine drives -----------------------------------------------------
    @property
    def total(self) -> int:
        return self.config.steps

    def generators(self) -> dict[str, torch.Generator]:
        return {"data": self.data_rng, "augment": self.aug_rng, "z": self.z_rng}

    def state_dict(self) -> dict:
        return {"generator": self.generator.state_dict(), "discriminator": self.discriminator.state_dict(),
                "ema": self.ema.state_dict(), "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "config": self.config.to_dict(), "init_sha256": self.init_sha256}

    def load_state_dict(self, state: dict, path: Path) -> None:
        if not isinstance(state, dict) or "generator" not in state or not isinstance(state.get("config"), dict):
            raise MocohdError("not a mocohd pre-training state", path=path,
                              fix="pass the --out folder of a `mocohd pretrain` run, or start a new run without --resume")
        known = {f.name for f in dataclasses.fields(PretrainConfig)}
        saved = PretrainConfig.from_dict({k: v for k, v in state["config"].items() if k in known})
        changed = [k for k in ARCHITECTURE_KEYS if getattr(saved, k) != getattr(self.config, k)]
        if changed:
            raise MocohdError(f"--resume: the run in this folder has a different architecture ({', '.join(changed)})",
                              path=path, fix="resume with the run's own settings (see its config.toml) or use a "
                                             "new --out")
        state = read_fields(state, STATE_FIELDS, source=path, what="pre-training state")
        parts = [(key, getattr(self, key).load_state_dict, state[key])
                 for key in ("generator", "discriminator", "ema", "opt_g", "opt_d")]
        load_state_parts(parts, path, what="pre-training state")
        self.step, self.init_sha256 = state["step"], state["init_sha256"]

    def save_state(self) -> Path:
        return self.engine.save_state()

    def start_summary(self) -> str:
        return (f"{len(self.frames)} frames at {self.config.size} px; augmentation "
                f"{'on' if self.use_augment else 'off'}; r1 gamma {self.config.r1_gamma:.3g}; "
                f"{sum(p.numel() for p in self.generator.parameters()) / 1e6:.2f} M generator parameters; "
                f"device {self.device}, precision {self.config.precision}")

    def on_loop_start(self, engine: Engine) -> None:
        self.log(f"pre-training on {self.start_summary()}")
        self.fid = frames_fid_monitor(self.frames, self.device, self.config.detector, log=self.log)

    def export_step(self, step: int) -> Path:
        return self.export()  # generator.safetensors follows the run at each sample step

    def export(self, path: Path | None = None, **metadata) -> Path:
        """The EMA generator as a .safetensors file every command accepts."""
        path = path or self.folder.path / EXPORT_FILE
        self.ema.set_latent_avg(None)
        self.ema.mean_latent()  # stored with the weights so truncation is reproducible
        if self.init_sha256:
            metadata = {"pretrain_init_sha256": self.init_sha256, **metadata}
        return self.ema.save_safetensors(path, pretrain_step=self.step, pretrain_images=self.step * self.config.batch_size,
                                         pretrain_config=self.config.to_json(), **metadata)

    # -- training -----------------------------------------------------------------------
    def augment(self, images: Tensor) -> Tensor:
        if not self.use_augment:
            return images
        return diff_augment(images, rng=self.aug_rng, strength=self.config.augment_strength)

    def ema_beta(self) -> float:
        images = (self.step + 1) * self.config.batch_size
        half_life = self.config.ema_kimg * 1000
        if self.config.ema_rampup > 0:
            half_life = min(half_life, images * self.config.ema_rampup)
        return 0.5 ** (self.config.batch_size / max(half_life, 1e-8))

    def fakes(self, g, z: Tensor) -> Tensor:
        """The generator's images of z; with probability --style-mixing, z's code drives the layers before a
        random crossover and a second code the rest (one coin and crossover per batch, as StyleGAN2 draws them)."""
        p = self.config.style_mixing
        if p <= 0 or torch.rand((), generator=self.z_rng, device=z.device).item() >= p:
            return g(z)
        z2 = torch.randn(z.shape, generator=self.z_rng, device=z.device)
        crossover = int(torch.randint(1, g.n_latent, (), generator=self.z_rng, device=z.device).item())
        return g(z, mix=(z2, crossover))

    def train_step(self) -> StepLosses:
        config, device = self.config, self.device
        g, d = self.generator, self.discriminator
        losses = StepLosses()
        reals = frame_batch(self.frames, config.batch_size, self.data_rng, device, mirror=config.mirror)
        z = torch.randn(config.batch_size, config.style_dim, generator=self.z_rng, device=device)

        # discriminator
        g.requires_grad_(False)
        d.requires_grad_(True)
        with autocast(device, config.precision):
            with torch.no_grad():
                fakes = self.fakes(g, z)
            real_logits = d(self.augment(reals))
            fake_logits = d(self.augment(fakes))
            loss_d = d_logistic_loss(real_logits.float(), fake_logits.float())
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        losses.d, losses.real_logits, losses.fake_logits = loss_d.item(), real_logits.mean().item(), fake_logits.mean().item()

        if self.step % config.d_reg_every == 0 and config.r1_gamma > 0:
            reals = reals.detach().requires_grad_(True)
            real_logits = d(self.augment(reals))  # fp32: the penalty's second derivative needs it
            penalty = r1_penalty(real_logits, reals)
            self.opt_d.zero_grad(set_to_none=True)
            # lazy regularisation: scaled by the interval; 0 * logit keeps every parameter in the graph
            (config.r1_gamma / 2 * penalty * config.d_reg_every + 0 * real_logits[0].sum()).backward()
            self.opt_d.step()
            losses.r1 = penalty.item()

        # generator
        g.requires_grad_(True)
        d.requires_grad_(False)
        z = torch.randn(config.batch_size, config.style_dim, generator=self.z_rng, device=device)
        with autocast(device, config.precision):
            loss_g = g_nonsaturating_loss(d(self.augment(self.fakes(g, z))).float())
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        losses.g = loss_g.item()

        ema_update(self.ema, g, self.ema_beta())
        self.step += 1
        return losses

    def sample_path(self, step: int) -> Path:
        return self.folder.samples / f"step_{step}.png"

    def write_samples(self, engine: Engine | None = None, final: bool = False) -> Path:
        """A grid of the EMA generator's images of a fixed set of z (constant noise), comparable between
        steps; and the frames FID, with a detector at hand."""

        if self.fid is not None:
            fid = self.fid(self.ema)
            self.folder.append_log(f"step {self.step}/{self.config.steps} frames_fid={fid:.2f}")
            self.log(f"step {self.step}: frames fid={fid:.2f} (lower: closer to the data)")
        images = sample_images(self.ema, SAMPLE_GRID_IMAGES, seed=self.config.seed + 3, noise="const")
        return write_image_grid(images, self.sample_path(self.step))

    def run(self) -> Path:
        """Train up to config.steps (or until config.minutes have passed), holding the run folder's
        lock; checkpoint every few minutes and at the end. Returns the export."""
        return self.engine.fit()


def pretrain(config: PretrainConfig, frames: Tensor | None = None) -> Path:
    """Pre-train a StyleGAN2 image generator (frames: uint8 [N, 3, size, size], else read from
    config.data); returns the exported .safetensors path."""
    return Pretrainer(config, frames).run()
