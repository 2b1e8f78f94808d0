"""`mocohd train-encoder` as a library: `EncoderSettings` (every option) and `train_encoder`.

The encoder (mocohd_cli/models/encoder.py) learns from the backbone's own samples, drawn fresh at
every step: a latent w ~ the backbone's content codes, its image x = G(w) (with a fresh noise draw
and, for conditional backbones, a random class), and the loss

    latent_weight  * mean (E(x) - u)^2              u = (w - mean) / spread: the latent regressed
  + pixel_weight   * mean (G(E(x)) - x)^2           the prediction rendered (same noise and class)
  + feature_weight * d_feat(E's maps of G(E(x)), E's maps of x)   (LPIPS-like, the targets' maps fixed)

Adam, seeded per step: the same settings give the same encoder on the CPU.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
import math
import time

import torch

from ..infra.device import resolve_device
from ..infra.errors import MocohdError
from ..infra.files import sha256_of
from ..infra.settings import require_positive, setting
from ..models.backbone import BACKBONE_HELP, NOISE_MODES, load_backbone
from ..models.encoder import DEFAULT_ARCH, LatentEncoder, backbone_record, load_pretrained
from ..models.generation import stream_seed
from ..models.inversion import feature_distance, latent_statistics
from ..training.engine import Cadence, Engine


@dataclass
class EncoderSettings:
    """Every knob of `mocohd train-encoder`."""

    checkpoint: str | None = setting(None, "Image-generator checkpoint the encoder learns to invert.")
    backbone: str | None = setting(None, BACKBONE_HELP, default_text="inferred from the checkpoint")
    out: str = setting("encoder.safetensors", "Encoder file to write (.safetensors).")
    arch: str = setting(DEFAULT_ARCH, "timm architecture of the encoder (any timm.list_models() name).")
    encoder_weights: str | None = setting(None, "Start from these weights of --arch (.safetensors or a torch "
                                          "state dict, e.g. ImageNet-pretrained); the head is new.",
                                          default_text="random initialisation")
    steps: int = setting(2000, "Training steps (each on a fresh batch of the backbone's samples).")
    batch_size: int = setting(32, "Samples per step.")
    lr: float = setting(1e-3, "Adam learning rate (cosine decay to 0 over the steps).")
    latent_weight: float = setting(1.0, "Weight of the latent regression (in units of the latent space's spread).")
    pixel_weight: float = setting(1.0, "Weight of the reconstruction in pixels (mean squared error in [-1, 1]).")
    feature_weight: float = setting(0.1, "Weight of the reconstruction in the encoder's own features.")
    noise: str = setting("random", f"Per-layer noise of the training images: {', '.join(NOISE_MODES)}.")
    truncation: float = setting(1.0, "Truncation of the sampled latents.")
    seed: int = setting(0, "Random seed: the same seed gives the same encoder (on the CPU).")
    device: str = setting("auto", "Where it runs (auto: CUDA when there is one).")
    log_every: int = setting(50, "Print the losses every this many steps.")

    def validate(self) -> None:
        require_positive(self, ("steps", "batch_size", "log_every"))
        if not self.checkpoint:
            raise MocohdError("no --checkpoint given", fix="pass the backbone checkpoint the encoder is for")
        if not str(self.out).endswith(".safetensors"):
            raise MocohdError("the encoder is written as .safetensors", path=self.out, fix="pass --out FILE.safetensors")
        if self.noise not in NOISE_MODES:
            raise MocohdError(f"unknown --noise {self.noise!r}", fix=f"use {', '.join(NOISE_MODES)}")
        weights = (self.latent_weight, self.pixel_weight, self.feature_weight)
        if min(weights) < 0 or not any(weights):
            raise MocohdError("the loss weights must be >= 0 and not all 0",
                              fix="use e.g. --latent-weight 1 --pixel-weight 1 --feature-weight 0.1")


@dataclass
class EncoderResult:
    path: str
    history: list[dict] = field(default_factory=list)  # one entry per logged step: step and each loss


def encoder_loss(encoder, backbone, settings: EncoderSettings, rng: torch.Generator, *, mean, scale) -> dict:
    """The losses of one batch of fresh samples drawn with `rng` ({name: scalar tensor}, "total" included)."""
    with torch.no_grad():
        w = backbone.sample_latent(settings.batch_size, rng=rng)
        condition = backbone.sample_condition(settings.batch_size, rng=rng)
        noise_state = rng.get_state()  # the reconstruction gets the same noise maps
        images = backbone.synthesize(w[:, None], condition=condition, noise=settings.noise, rng=rng)[:, 0].float()
    units, maps = encoder.encode(images)
    losses = {"latent": (units - (w - mean) / scale).pow(2).mean()}
    if settings.pixel_weight or settings.feature_weight:
        rng.set_state(noise_state)
        rebuilt = backbone.synthesize(encoder.to_latent(units)[:, None], condition=condition, noise=settings.noise,
                                      rng=rng)[:, 0].float()
        losses["pixel"] = (rebuilt - images).pow(2).mean()
        if settings.feature_weight:
            losses["feature"] = feature_distance(encoder.feature_maps(rebuilt), [m.detach() for m in maps]).mean()
    weights = {"latent": settings.latent_weight, "pixel": settings.pixel_weight, "feature": settings.feature_weight}
    losses["total"] = sum(weights[name] * value for name, value in losses.items())
    return losses


class EncoderTask:
    """The encoder's training as a task of the engine (training/engine.py): no run folder, one output file."""

    label = "training the encoder"
    partial_step_is_safe = True

    def __init__(self, settings: EncoderSettings, encoder, backbone, *, mean, scale, log=None):
        self.settings, self.encoder, self.backbone, self.log = settings, encoder, backbone, log
        self.mean, self.scale = mean, scale
        self.optimiser = torch.optim.Adam(encoder.parameters(), lr=settings.lr)
        self.rng = torch.Generator().manual_seed(0)
        self.step, self.total = 0, settings.steps
        self.history: list[dict] = []
        self.started = time.perf_counter()

    def train_step(self) -> dict:
        settings = self.settings
        self.rng.manual_seed(stream_seed(settings.seed, self.step, "encoder-batch"))
        for group in self.optimiser.param_groups:
            group["lr"] = settings.lr * 0.5 * (1 + math.cos(math.pi * self.step / settings.steps))
        losses = encoder_loss(self.encoder, self.backbone, settings, self.rng, mean=self.mean, scale=self.scale)
        self.optimiser.zero_grad(set_to_none=True)
        losses["total"].backward()
        self.optimiser.step()
        self.step += 1
        return losses

    def on_log(self, losses: dict[str, float]) -> None:
        entry = {"step": self.step, **losses}
        self.history.append(entry)
        if self.log is not None:
            self.log(entry)

    def generators(self) -> dict:
        return {}

    def start_summary(self) -> str:
        return ""

    def write_samples(self, engine=None, final: bool = False) -> None:
        return None

    def export(self, path=None):
        settings = self.settings
        training = {k: v for k, v in asdict(settings).items() if k not in ("out", "device", "checkpoint", "backbone")}
        if settings.encoder_weights:
            training["encoder_weights_sha256"] = sha256_of(settings.encoder_weights)
        self.encoder.eval().save(path or settings.out, **backbone_record(self.backbone), training=training,
                                 final_losses=self.history[-1] if self.history else {},
                                 seconds=round(time.perf_counter() - self.started, 1))
        return path or settings.out


def train_encoder(settings: EncoderSettings, *, log=None, progress: bool = True) -> EncoderResult:
    """Train an encoder for the settings' backbone and write it to `settings.out`."""
    settings.validate()
    device = resolve_device(settings.device)
    backbone = load_backbone(settings.backbone, settings.checkpoint, device=device, truncation=settings.truncation)
    stats = latent_statistics(backbone)
    torch.manual_seed(stream_seed(settings.seed, 0, "encoder-init"))  # the encoder's initial weights
    encoder = LatentEncoder(settings.arch, backbone.latent_dim, backbone.resolution, latent_mean=stats.mean,
                            latent_scale=stats.scale)
    if settings.encoder_weights:
        load_pretrained(encoder.net, settings.encoder_weights, settings.arch)
    encoder = encoder.to(device).train()
    task = EncoderTask(settings, encoder, backbone, mean=stats.mean.to(device), scale=stats.scale, log=log)
    Engine(task, Cadence(log_every=settings.log_every), progress=progress).fit()
    return EncoderResult(str(settings.out), task.history)
