"""Pre-training a StyleGAN2 image generator on the frames of a video or image dataset.

The GAN recipe of StyleGAN2: non-saturating logistic loss, lazy R1 penalty on the reals every
`d_reg_every` steps, an exponential moving average of the generator (the exported model), and,
for small datasets, DiffAugment-style differentiable augmentation applied to everything the
discriminator sees (reals and fakes alike, so the generator never learns the augmentation).
Path-length regularisation and style mixing are left out: they matter little at 64 px.

A run folder holds:
    config.json               the settings (architecture + schedule)
    state.pt                  everything needed to resume (tensors only: loads with weights_only=True)
    generator.safetensors     the EMA generator, loadable by every command (--checkpoint)
    samples/step_NNNNNNN.png  sample grids from a fixed set of z
    log.jsonl                 losses per logging interval
"""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mocohd_cli.infra.console import console, progress
from mocohd_cli.infra.device import autocast, resolve_device
from mocohd_cli.infra.errors import MocohdError
from mocohd_cli.infra.files import atomic_path, torch_load_safely

STATE_FILE = "state.pt"
CONFIG_FILE = "config.json"
EXPORT_FILE = "generator.safetensors"
# Settings that define the architecture: a resumed run must keep them.
ARCHITECTURE_KEYS = ("size", "style_dim", "n_mlp", "channels", "d_channels")


def compact_channels(size: int, widest: int = 128, narrowest: int = 32) -> dict[int, int]:
    """Widths halving from `widest` at 4 px towards `narrowest` at `size` (the example backbones)."""
    levels = int(math.log2(size)) - 1
    widths = np.geomspace(widest, narrowest, levels)
    return {2 ** (i + 2): int(round(float(w) / 8) * 8) for i, w in enumerate(widths)}


@dataclass
class PretrainConfig:
    """Architecture and schedule of a pre-training run (stored in config.json and the state)."""

    size: int = 64
    style_dim: int = 256
    n_mlp: int = 4
    channels: dict = field(default_factory=dict)      # resolution -> width; empty = compact_channels(size)
    d_channels: dict = field(default_factory=dict)    # same for the discriminator
    batch_size: int = 16
    steps: int = 5000
    lr: float = 0.002
    # R1 weight. 1.0 trained the example backbones stably; the StyleGAN2-ADA heuristic
    # (0.0002 * size^2 / batch = 0.1 at 64 px, batch 8; pass a negative value) let them collapse.
    r1_gamma: float = 1.0
    d_reg_every: int = 16
    ema_kimg: float = -1.0     # EMA half-life in thousands of images; < 0: batch_size * 10 / 32
    ema_rampup: float = 0.05   # the half-life grows with training up to ema_kimg (ADA's ramp-up)
    augment: str = "auto"      # "diffaug", "none", or "auto" (diffaug below AUTO_AUGMENT_IMAGES images)
    augment_strength: float = 1.0
    mirror: bool = True        # random horizontal flips of the reals (dataset augmentation)
    seed: int = 0
    precision: str = "fp32"
    sample_every: int = 250
    checkpoint_minutes: float = 5.0

    def __post_init__(self):
        self.channels = {int(k): int(v) for k, v in (self.channels or compact_channels(self.size)).items()}
        self.d_channels = {int(k): int(v) for k, v in (self.d_channels or self.channels).items()}
        if self.r1_gamma < 0:
            self.r1_gamma = 0.0002 * self.size ** 2 / self.batch_size
        if self.ema_kimg < 0:
            self.ema_kimg = self.batch_size * 10 / 32
        if self.augment not in ("auto", "diffaug", "none"):
            raise MocohdError(f"unknown augment mode {self.augment!r}", fix="use auto, diffaug or none")
        if self.size < 8 or self.size & (self.size - 1):
            raise MocohdError(f"--size must be a power of two >= 8, got {self.size}")
        if self.batch_size < 2:
            raise MocohdError("--batch-size must be at least 2", fix="pass --batch-size 2 or more")

    def to_json(self) -> str:
        data = asdict(self)
        data["channels"] = {str(k): v for k, v in self.channels.items()}
        data["d_channels"] = {str(k): v for k, v in self.d_channels.items()}
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "PretrainConfig":
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


AUTO_AUGMENT_IMAGES = 20_000


# ------------------------------------------------------------------------------------- data
def load_frames(root: str | Path, size: int, *, max_images: int = 100_000) -> Tensor:
    """Every frame of a dataset (frame folders, loose images, video files, or a .zip of them) as
    uint8 [N, 3, size, size], centre-cropped and resized; kept in memory for fast random batches.

    Above `max_images` frames an evenly spaced subset is kept (deterministic)."""
    from mocohd_cli.data.clips import DatasetReport, decode_image, decode_video_frames, index_videos, open_storage, frames_to_clip

    root = Path(root)
    storage = open_storage(root)
    report = DatasetReport(root)
    entries = index_videos(storage, 1, report)
    if not entries:
        raise MocohdError("no images or videos found", path=root,
                          fix="pass a folder (or .zip) of images, frame folders or video files to --data")
    items = [(e, i) for e, entry in enumerate(entries) for i in range(entry.length)]
    if len(items) > max_images:
        keep = np.linspace(0, len(items) - 1, max_images).round().astype(int)
        items = [items[i] for i in keep]
    wanted_by_entry: dict[int, list[int]] = {}
    for e, i in items:
        wanted_by_entry.setdefault(e, []).append(i)
    frames = torch.empty(len(items), 3, size, size, dtype=torch.uint8)
    with progress() as bar:
        task = bar.add_task("reading frames", total=len(items))
        position = 0
        for e, wanted in wanted_by_entry.items():
            entry = entries[e]
            try:
                if entry.file is not None:
                    decoded = decode_video_frames(storage, entry.file, wanted)
                else:
                    decoded = [decode_image(storage, entry.frames[i]) for i in wanted]
                if len({d.shape for d in decoded}) == 1:
                    clip = frames_to_clip(np.stack(decoded), size)
                else:  # loose images of different sizes in one folder
                    clip = torch.cat([frames_to_clip(d[None], size) for d in decoded])
            except ValueError as exc:
                raise MocohdError(f"cannot read {entry.name} ({exc})", path=root,
                                  fix="replace or remove the broken file") from exc
            frames[position:position + len(wanted)] = ((clip + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
            position += len(wanted)
            bar.advance(task, len(wanted))
    return frames[:position]


def real_batch(frames: Tensor, batch_size: int, rng: torch.Generator, device: torch.device,
               mirror: bool) -> Tensor:
    """A random batch of reals in [-1, 1] on `device`, mirrored left-right half of the time."""
    index = torch.randint(len(frames), (batch_size,), generator=rng)
    images = frames[index].to(device, non_blocking=True).float() / 127.5 - 1.0
    if mirror:
        flip = (torch.rand(batch_size, generator=rng) < 0.5).to(device)
        images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
    return images


# ------------------------------------------------------------------------------ augmentation
def diff_augment(images: Tensor, *, rng: torch.Generator | None = None, strength: float = 1.0) -> Tensor:
    """DiffAugment's colour + translation + cutout policy, differentiable, applied to every image.

    Built from mocohd_cli.models.augment's ops: a colour shift (+-0.3), a translation of up to 1/8 of the
    side with reflection padding, and a cutout of 1/4-1/2 of the side anywhere in the image."""
    from mocohd_cli.models.augment import affine_warp, colour_shift, cutout

    if strength <= 0:
        return images
    images = colour_shift(images, rng=rng, strength=strength, max_shift=0.3)
    images = affine_warp(images, rng=rng, strength=strength, max_rotation=0.0,
                         max_translation=0.25, max_scale=0.0)
    return cutout(images, rng=rng, strength=strength, min_ratio=0.25, max_ratio=0.5,
                  placement="anywhere")


# ------------------------------------------------------------------------------------ losses
def d_logistic_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def g_nonsaturating_loss(fake_logits: Tensor) -> Tensor:
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: Tensor, reals: Tensor) -> Tensor:
    """Mean over the batch of ||d D(x) / d x||^2 at the reals."""
    (grad,) = torch.autograd.grad(real_logits.sum(), reals, create_graph=True)
    return grad.square().flatten(1).sum(1).mean()


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, beta: float) -> None:
    ema_params = dict(ema.named_parameters())
    for name, param in model.named_parameters():
        ema_params[name].lerp_(param.detach(), 1.0 - beta)
    ema_buffers = dict(ema.named_buffers())
    for name, buffer in model.named_buffers():
        if name in ema_buffers and ema_buffers[name] is not None:
            ema_buffers[name].copy_(buffer)


# ----------------------------------------------------------------------------------- models
def build_models(config: PretrainConfig, device: torch.device):
    from mocohd_plugins.stylegan2 import Discriminator, StyleGAN2Generator

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


@torch.no_grad()
def sample_grid(generator, z: Tensor, *, truncation: float = 1.0, nrow: int | None = None) -> np.ndarray:
    """Images of `z` as one uint8 grid [H, W, 3] (constant noise, so grids are comparable)."""
    images = []
    for chunk in z.split(16):
        w = generator.mapping(chunk.to(generator.device), truncation=truncation)
        images.append(generator.synthesize(w[:, None], noise="const")[:, 0].float().cpu())
    images = torch.cat(images)
    n, _, h, w = images.shape
    nrow = nrow or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / nrow))
    canvas = torch.ones(3, rows * h, nrow * w)
    for i, image in enumerate(images):
        r, c = divmod(i, nrow)
        canvas[:, r * h:(r + 1) * h, c * w:(c + 1) * w] = image
    return ((canvas.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def save_grid(grid: np.ndarray, path: str | Path) -> Path:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")
    return Path(path)


def backbone_grid(checkpoint: str | Path, out: str | Path, *, n: int = 36, seed: int = 0, truncation: float = 1.0,
                  scale: int = 1) -> Path:
    """A PNG grid of `n` samples of any exported image generator (used for the docs' sample grids)."""
    from PIL import Image

    from mocohd_cli.models.backbone import load_backbone

    model = load_backbone(None, checkpoint)
    z = torch.randn(n, model.z_dim, generator=torch.Generator().manual_seed(seed))
    grid = sample_grid(model, z, truncation=truncation)
    if scale > 1:
        grid = np.asarray(Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST))
    return save_grid(grid, out)


# ----------------------------------------------------------------------------------- trainer
@dataclass
class StepLosses:
    d: float = float("nan")
    g: float = float("nan")
    r1: float = float("nan")
    real: float = float("nan")   # mean D logit on reals and fakes: how far apart D holds them
    fake: float = float("nan")


class Pretrainer:
    """One pre-training run in a run folder; `run()` trains to `config.steps`, resuming if it can."""

    def __init__(self, config: PretrainConfig, data: str | Path | Tensor, out: str | Path, *,
                 device: str = "auto", log: Callable[[str], None] | None = None):
        self.config, self.out = config, Path(out)
        self.device = resolve_device(device)
        self.log = log or (lambda text: console.print(text))
        self.frames = data if isinstance(data, Tensor) else load_frames(data, config.size)
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
        self.fixed_z = torch.randn(36, config.style_dim, generator=torch.Generator().manual_seed(config.seed + 3))

    # -- state --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"generator": self.generator.state_dict(), "discriminator": self.discriminator.state_dict(),
                "ema": self.ema.state_dict(), "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "step": self.step, "config": self.config.to_json(),
                "rng": {"data": self.data_rng.get_state(), "augment": self.aug_rng.get_state(),
                        "z": self.z_rng.get_state(), "torch": torch.get_rng_state()}}

    def save_state(self) -> Path:
        path = self.out / STATE_FILE
        with atomic_path(path) as tmp:
            torch.save(self.state_dict(), tmp)
        return path

    def load_state(self, path: Path) -> None:
        state = torch_load_safely(path, "pre-training state")
        if not isinstance(state, dict) or "generator" not in state or "config" not in state:
            raise MocohdError("not a mocohd pre-training state", path=path,
                              fix="pass an --out folder written by `mocohd pretrain`, or a new one")
        saved = PretrainConfig.from_json(state["config"])
        changed = [k for k in ARCHITECTURE_KEYS if getattr(saved, k) != getattr(self.config, k)]
        if changed:
            raise MocohdError(f"the run in this folder has a different architecture ({', '.join(changed)})",
                              path=path, fix="resume with the run's own settings (see config.json) or use a new --out")
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.ema.load_state_dict(state["ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step = int(state["step"])
        rng = state["rng"]
        self.data_rng.set_state(rng["data"])
        self.aug_rng.set_state(rng["augment"])
        self.z_rng.set_state(rng["z"])
        torch.set_rng_state(rng["torch"])

    def export(self, path: Path | None = None, **metadata) -> Path:
        """The EMA generator as a .safetensors file every command accepts."""
        path = path or self.out / EXPORT_FILE
        self.ema.set_latent_avg(None)
        self.ema.mean_latent()  # stored with the weights so truncation is reproducible
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

    def train_step(self) -> StepLosses:
        config, device = self.config, self.device
        g, d = self.generator, self.discriminator
        losses = StepLosses()
        reals = real_batch(self.frames, config.batch_size, self.data_rng, device, config.mirror)
        z = torch.randn(config.batch_size, config.style_dim, generator=self.z_rng, device=device)

        # discriminator
        g.requires_grad_(False)
        d.requires_grad_(True)
        with autocast(device, config.precision):
            with torch.no_grad():
                fakes = g(z)
            real_logits = d(self.augment(reals))
            fake_logits = d(self.augment(fakes))
            loss_d = d_logistic_loss(real_logits.float(), fake_logits.float())
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        losses.d, losses.real, losses.fake = loss_d.item(), real_logits.mean().item(), fake_logits.mean().item()

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
            loss_g = g_nonsaturating_loss(d(self.augment(g(z))).float())
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        losses.g = loss_g.item()

        ema_update(self.ema, g, self.ema_beta())
        self.step += 1
        return losses

    def write_samples(self) -> Path:
        grid = sample_grid(self.ema, self.fixed_z)
        save_grid(grid, self.out / "samples" / "latest.png")
        return save_grid(grid, self.out / "samples" / f"step_{self.step:07d}.png")

    def run(self, *, resume: bool = True) -> Path:
        """Train up to config.steps; checkpoint every few minutes and at the end. Returns the export."""
        self.out.mkdir(parents=True, exist_ok=True)
        state_path = self.out / STATE_FILE
        if state_path.exists():
            if not resume:
                raise MocohdError("this folder already holds a pre-training run", path=self.out,
                                  fix="resume it (drop --no-resume) or choose a new --out")
            self.load_state(state_path)
            self.log(f"resumed {self.out} at step {self.step}")
        (self.out / CONFIG_FILE).write_text(self.config.to_json())
        self.log(f"pre-training on {len(self.frames)} frames at {self.config.size} px; "
                 f"augmentation {'on' if self.use_augment else 'off'}; r1 gamma {self.config.r1_gamma:.3g}; "
                 f"{sum(p.numel() for p in self.generator.parameters()) / 1e6:.2f} M generator parameters")
        try:
            self._loop()
        except KeyboardInterrupt:  # Ctrl-C keeps the work done so far (a step may be half done)
            self.save_state()
            self.export()
            self.log(f"interrupted at step {self.step}: state and export saved; run the same command to resume")
            raise
        self.save_state()
        self.write_samples()
        return self.export()

    def _loop(self) -> None:
        last_checkpoint = time.monotonic()
        totals, count = StepLosses(0.0, 0.0, 0.0, 0.0, 0.0), 0
        with progress() as bar, open(self.out / "log.jsonl", "a") as log_file:
            task = bar.add_task("pre-training", total=self.config.steps, completed=self.step)
            while self.step < self.config.steps:
                started = time.monotonic()
                losses = self.train_step()
                for name in ("d", "g", "real", "fake"):
                    setattr(totals, name, getattr(totals, name) + getattr(losses, name))
                count += 1
                if not all(math.isfinite(v) for v in (losses.d, losses.g)):
                    raise MocohdError(f"the losses became non-finite at step {self.step}", path=self.out,
                                      fix="lower --lr or raise --r1-gamma, then resume from the last checkpoint")
                bar.advance(task)
                if self.step % self.config.sample_every == 0 or self.step == self.config.steps:
                    record = {"step": self.step, "images": self.step * self.config.batch_size,
                              **{k: round(getattr(totals, k) / count, 4) for k in ("d", "g", "real", "fake")},
                              "r1": round(losses.r1, 4) if math.isfinite(losses.r1) else None,
                              "sec_per_step": round(time.monotonic() - started, 3), "time": time.time()}
                    log_file.write(json.dumps(record) + "\n")
                    log_file.flush()
                    totals, count = StepLosses(0.0, 0.0, 0.0, 0.0, 0.0), 0
                    self.write_samples()
                    if bar.disable:
                        self.log(f"step {self.step}: D {record['d']:.3f} G {record['g']:.3f} "
                                 f"(real {record['real']:+.2f}, fake {record['fake']:+.2f})")
                if time.monotonic() - last_checkpoint > 60 * self.config.checkpoint_minutes:
                    self.save_state()
                    self.export()
                    last_checkpoint = time.monotonic()


def pretrain(data: str | Path | Tensor, out: str | Path, config: PretrainConfig | None = None, *,
             device: str = "auto", resume: bool = True) -> Path:
    """Pre-train a StyleGAN2 image generator; returns the exported .safetensors path."""
    return Pretrainer(config or PretrainConfig(), data, out, device=device).run(resume=resume)
