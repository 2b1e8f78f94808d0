"""`mocohd sample` as a library: `SampleSettings` is every knob of the command (which is built
from its fields); `prepare_sampling` turns them into a backbone and a motion model, and
mocohd_cli.models.generation makes the videos."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.video import FORMATS
from ..infra.errors import MocohdError
from ..infra.settings import require_positive, setting
from ..models.backbone import BACKBONE_HELP, NOISE_MODES, ImageGenerator
from ..models.motion import MotionGenerator

# PCA samples of the untrained motion model `mocohd sample` uses without --motion (a preview,
# so fewer than training's; cached like training's).
PREVIEW_PCA_SAMPLES = 20_000


@dataclass
class SampleSettings:
    """Every knob of `mocohd sample`."""

    backbone: str | None = setting(None, BACKBONE_HELP, default_text="inferred from the checkpoint or motion model")
    checkpoint: str | None = setting(None, "Image-generator checkpoint.",
                                     default_text="the one the motion model records")
    motion: str | None = setting(None, "Motion model (.safetensors). Without it and without --checkpoint: the "
                                 "latest run under ./mocohd-runs; with --checkpoint only: an untrained one.")
    num_videos: int = setting(4, "How many videos.", flag=("--num-videos", "-n"))
    frames: int = setting(16, "Frames per video (the LSTM unrolls past its training length).")
    fps: float | None = setting(None, "Frames per second.", default_text="the motion model's, else 8")
    seed: int = setting(0, "Random seed: the same seed gives the same videos.")
    truncation: float = setting(1.0, "Truncation of the content codes.")
    noise: str = setting("random", f"Per-layer noise: {', '.join(NOISE_MODES)} (random: one draw per video).")
    interpolate: bool = setting(False, "Insert midpoints between consecutive latents (2T-1 frames).")
    grid: bool = setting(False, "Write one grid video instead of one file per video.")
    format: str = setting("mp4", f"Output format: {', '.join(FORMATS)}.")
    classes: list[int] | None = setting(None, "Conditional backbones: class per video (index, or name with "
                                        "--labels); repeat, the videos cycle over them.", flag="--class",
                                        cli_type=list[str], default_text="random")
    out: str = setting("samples", "Output folder.")
    device: str = setting("auto", "auto, cpu or cuda.")
    batch_size: int = setting(8, "Videos per forward pass.")

    def validate(self) -> None:
        require_positive(self, ("num_videos", "frames", "batch_size"))
        if self.format not in FORMATS:
            raise MocohdError(f"unknown --format {self.format!r}", fix=f"use one of {', '.join(FORMATS)}")


def prepare_sampling(settings: SampleSettings, *, progress=None) -> tuple[ImageGenerator, MotionGenerator, dict]:
    """The backbone (with the settings' truncation), the motion model and the motion model's
    metadata ({} for an untrained one, used when there is no --motion)."""
    from ..infra.device import resolve_device
    from ..models.backbone import load_backbone
    from ..models.motion import load_motion_and_backbone

    settings.validate()
    device = resolve_device(settings.device)
    if settings.motion is not None:
        backbone, motion, info = load_motion_and_backbone(settings.motion, checkpoint=settings.checkpoint,
                                                          backbone=settings.backbone, device=device,
                                                          truncation=settings.truncation)
        return backbone, motion, info
    backbone = load_backbone(settings.backbone, settings.checkpoint, device=device, truncation=settings.truncation)
    return backbone, untrained_motion(backbone, device, progress=progress).eval(), {}


def untrained_motion(backbone: ImageGenerator, device, *, progress=None) -> MotionGenerator:
    """A freshly initialised motion model with the backbone's real PCA statistics and the default
    sizes; its weights come from seed 0, so the same seed still gives the same bytes."""
    from ..models.motion import DEFAULT_H_DIM, default_n_pca
    from ..models.pca import motion_pca

    n_pca = default_n_pca(backbone)
    components, stdev = motion_pca(backbone, n_pca=n_pca, n_samples=PREVIEW_PCA_SAMPLES, progress=progress)
    torch.manual_seed(0)
    return MotionGenerator(backbone.latent_dim, h_dim=DEFAULT_H_DIM, n_pca=n_pca, pca_components=components,
                           pca_stdev=stdev).to(device)
