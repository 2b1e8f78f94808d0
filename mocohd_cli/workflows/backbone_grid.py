"""Image grids of a backbone: N samples of any image generator as one PNG (`mocohd backbone-grid`,
the docs' backbone_samples_*.png, the sample grids of a pre-training run).

`GridSettings` is every knob of `mocohd backbone-grid` (the command is built from its fields).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from ..data.video import image_grid, save_image
from ..infra.device import resolve_device
from ..infra.errors import MocohdError
from ..infra.settings import require_positive, setting
from ..models.backbone import BACKBONE_HELP, NOISE_MODES, ImageGenerator, load_backbone
from ..models.generation import seeded_content


@dataclass
class GridSettings:
    """Every knob of `mocohd backbone-grid` (the checkpoint is its argument)."""

    out: str | None = setting(None, "PNG file to write.")
    backbone: str | None = setting(None, BACKBONE_HELP, default_text="inferred from the checkpoint")
    num_images: int = setting(36, "Number of samples.", flag=("--num", "-n"))
    seed: int = setting(0, "Random seed: the same seed gives the same grid.")
    truncation: float = setting(1.0, "Truncation of the content codes.")
    noise: str = setting("const", f"Per-layer noise: {', '.join(NOISE_MODES)}.")
    classes: list[int] | None = setting(None, "Conditional backbones: class per image (index, or name with "
                                        "--labels); repeat, the images cycle over them.", flag="--class",
                                        cli_type=list[str], default_text="random")
    nrow: int | None = setting(None, "Images per row.", default_text="a square grid")
    padding: int = setting(0, "Pixels between the images.")
    scale: int = setting(1, "Enlarge the grid by this factor (nearest neighbour).")
    device: str = setting("auto", "Where it runs (auto: CUDA when there is one).")

    def validate(self) -> None:
        if not self.out:
            raise MocohdError("--out is needed", fix="pass --out FILE.png")
        require_positive(self, ("num_images", "scale", "nrow"))
        if self.padding < 0:
            raise MocohdError(f"--padding must be >= 0, got {self.padding}", fix="use 0 or more")


@torch.no_grad()
def sample_images(backbone: ImageGenerator, num_images: int, *, seed: int = 0, noise: str = "const",
                  classes: list[int] | None = None, batch_size: int = 16) -> Tensor:
    """`num_images` random images [N, 3, H, W] of `backbone`, about [-1, 1], on the CPU.

    Every draw comes from one CPU random generator (rng) seeded by `seed`, so the same seed gives
    the same images on any device (with noise "const", the images of a training run's fixed seed
    are comparable from step to step)."""
    backbone.check_noise_mode(noise)
    images = []
    for rng, latents, condition in seeded_content(backbone, num_images, seed=seed, classes=classes,
                                                  batch_size=batch_size):
        frames = backbone.synthesize(latents[:, None], condition=condition, noise=noise, rng=rng)
        images.append(frames[:, 0].float().cpu())
    return torch.cat(images)


def write_image_grid(images: Tensor, out: str | Path, *, nrow: int | None = None, padding: int = 0,
                     scale: int = 1) -> Path:
    """Images [N, 3, H, W] in [-1, 1] as one PNG grid."""
    return save_image(image_grid(images, nrow=nrow, padding=padding), out, scale=scale)


def backbone_grid(checkpoint: str | Path, settings: GridSettings | None = None, **overrides) -> Path:
    """A PNG grid of samples of the backbone in `checkpoint`; `overrides` are GridSettings fields."""
    settings = replace(settings or GridSettings(), **overrides)
    settings.validate()
    backbone = load_backbone(settings.backbone, checkpoint, device=resolve_device(settings.device),
                             truncation=settings.truncation)
    images = sample_images(backbone, settings.num_images, seed=settings.seed, noise=settings.noise,
                           classes=settings.classes)
    return write_image_grid(images, settings.out, nrow=settings.nrow, padding=settings.padding, scale=settings.scale)
