"""`mocohd animate` as a library: `AnimateSettings` (every option) and `animate`.

Each image is read as the backbone sees its frames (mocohd_cli/data/images.py), inverted into the
motion space (mocohd_cli/models/inversion.py: from an encoder's guess, or from the best of the
mean latent and some samples), and the motion model unrolls a video from the latent it found.
Image i gets the random streams of video i of `mocohd sample --seed S` (its motion noise and, with
--noise random, its noise maps), and `--save-latents` writes a file `mocohd sample --latents`
replays. See docs/animate.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.images import read_images
from ..data.video import FORMATS, check_fps, check_out_dir, image_grid, output_file, save_image, save_video
from ..infra.errors import MocohdError
from ..infra.settings import require_positive, setting
from ..models.backbone import BACKBONE_HELP, NOISE_MODES
from ..models.encoder import load_encoder
from ..models.generation import latents_from_content, render, synthesis_seeds
from ..models.inversion import (DEFAULT_CANDIDATES, DEFAULT_FEATURE_WEIGHT, DEFAULT_LR, DEFAULT_STEPS,
    check_candidates, invert_images, latent_statistics)
from .sampling import LatentsWriter

LATENTS_FILE = "latents.npz"


@dataclass
class AnimateSettings:
    """Every knob of `mocohd animate` (the images are its arguments)."""

    motion: str | None = setting(None, "Motion model (.safetensors).", default_text="the latest run under ./mocohd-runs, else the faces example")
    checkpoint: str | None = setting(None, "Image-generator checkpoint.", default_text="the one the motion model records")
    backbone: str | None = setting(None, BACKBONE_HELP, default_text="inferred")
    encoder: str | None = setting(None, "Encoder from `mocohd train-encoder` for this backbone: its guess starts "
                                  "the optimisation and its features join the loss.",
                                  default_text="none: start from the best of --candidates latents, pixel loss")
    steps: int = setting(DEFAULT_STEPS, "Optimisation steps of the inversion (0: the starting guess as it is).")
    lr: float = setting(DEFAULT_LR, "Adam learning rate of the inversion, in units of the latent space's spread.")
    candidates: int = setting(DEFAULT_CANDIDATES, "Without --encoder: start from the best of the mean latent and "
                              "this many samples (0: the mean latent).")
    feature_weight: float = setting(DEFAULT_FEATURE_WEIGHT, "Weight of the encoder-feature term of the loss "
                                    "(with --encoder).")
    frames: int = setting(16, "Frames per video (frame 0 is the inverted image).")
    fps: float | None = setting(None, "Frames per second.", default_text="the motion model's, else 8")
    noise: str = setting("const", f"Per-layer noise, fixed for the inversion and the video: {', '.join(NOISE_MODES)} "
                         "(const: the checkpoint's stored maps; random: video i's draw of `mocohd sample`).")
    truncation: float = setting(1.0, "Truncation of the backbone (the mean latent and the candidates).")
    classes: list[int] | None = setting(None, "Conditional backbones (BigGAN): the class each image is inverted "
                                        "with (index, or name with --labels); repeat, the images cycle over them.",
                                        flag="--class", cli_type=list[str], default_text="required")
    seed: int = setting(0, "Random seed of the motion noise and the candidates.")
    format: str = setting("mp4", f"Video format: {', '.join(FORMATS)}.")
    out: str = setting("animations", "Output folder: a video, the inverted frame and a side-by-side comparison "
                       "per image.")
    save_latents: bool = setting(False, f"Also write {LATENTS_FILE} (replay it: mocohd sample --latents).")
    batch_size: int = setting(8, "Images inverted together.")
    device: str = setting("auto", "Where it runs (auto: CUDA when there is one).")

    def validate(self) -> None:
        require_positive(self, ("frames", "batch_size"))
        if self.steps < 0:
            raise MocohdError("--steps must be >= 0", fix="use 0 (the starting guess) or more steps")
        check_candidates(self.candidates)
        if self.format not in FORMATS:
            raise MocohdError(f"unknown --format {self.format!r}", fix=f"use one of {', '.join(FORMATS)}")
        if self.noise not in NOISE_MODES:
            raise MocohdError(f"unknown --noise {self.noise!r}", fix=f"use one of {', '.join(NOISE_MODES)}")
        if self.fps is not None:
            check_fps(self.fps, self.format)
        if not self.lr > 0 or not self.feature_weight >= 0:
            raise MocohdError("--lr must be > 0 and --feature-weight >= 0", fix="e.g. --lr 0.1 --feature-weight 0.1")


@dataclass
class Animation:
    image: Path
    video: Path
    inverted: Path
    compare: Path
    psnr: float  # dB, the inverted frame against the (converted) image
    start_psnr: float  # dB, the starting guess
    notes: list[str] = field(default_factory=list)


@dataclass
class AnimateResult:
    animations: list[Animation]
    latents: Path | None = None


def _unique_stems(paths: list[Path]) -> list[str]:
    """File stems, with _2, _3, ... added where an image's stem is taken (by an earlier image's stem,
    or by a stem made so: a.png, d/a.png, a_2.png -> a, a_2, a_2_2), so no image's files overwrite
    another's."""
    used: set[str] = set()
    stems = []
    for path in paths:
        stem, count = path.stem, 1
        while stem in used:
            count += 1
            stem = f"{path.stem}_{count}"
        used.add(stem)
        stems.append(stem)
    return stems


def animate(settings: AnimateSettings, images: list[str | Path], *, backbone, motion, fps: float,
            classes: list[int] | None = None, progress=None) -> AnimateResult:
    """Invert `images`, unroll `motion` from each latent, write the files. progress(done, total, what)."""
    settings.validate()
    fps = check_fps(fps, settings.format)
    if backbone.condition_dim and not classes:
        raise MocohdError(f"backbone {backbone.name!r} is class-conditional: the images are inverted with a fixed "
                          "class", fix="pass --class N (repeat for one class per image)")
    if classes:
        backbone.sample_condition(len(classes), classes)  # sample's error: unconditional, or a class out of range
    inputs = read_images(images, backbone.resolution)
    out = check_out_dir(settings.out)
    encoder = load_encoder(settings.encoder, backbone, device=backbone.device) if settings.encoder else None
    stats = latent_statistics(backbone)
    stems = _unique_stems([image.path for image in inputs])
    saver = None
    if settings.save_latents:
        replay = {"truncation": settings.truncation, "noise": settings.noise, "interpolate": False, "fps": fps}
        saver = LatentsWriter(out / LATENTS_FILE, replay, num_videos=len(inputs), n_frames=settings.frames,
                              latent_dim=backbone.latent_dim)
    animations: list[Animation] = []
    for start in range(0, len(inputs), settings.batch_size):
        chunk = inputs[start:start + settings.batch_size]
        index = list(range(start, start + len(chunk)))
        labels = [classes[i % len(classes)] for i in index] if backbone.condition_dim else None
        condition = None if labels is None else backbone.sample_condition(len(chunk), labels)
        seeds = synthesis_seeds(settings.seed, index)
        targets = torch.stack([image.pixels for image in chunk])
        result = invert_images(backbone, targets, encoder=encoder, candidates=settings.candidates, stats=stats,
                               condition=condition, steps=settings.steps, lr=settings.lr,
                               feature_weight=settings.feature_weight, noise=settings.noise, seeds=seeds,
                               seed=settings.seed,
                               progress=None if progress is None else
                               lambda done, total: progress(done, total, f"inverting images {start + 1}-{index[-1] + 1}"))
        batch = latents_from_content(motion, result.latents, n_frames=settings.frames, seed=settings.seed, start=start,
                                     labels=labels)
        frames = render(backbone, batch, noise=settings.noise)
        if saver is not None:
            saver.add(batch)
        for k, image in enumerate(chunk):
            stem = stems[start + k]
            video = save_video(frames[k], output_file(out, stem, settings.format), fps)
            inverted = save_image(result.images[k], out / f"{stem}_inverted.png")
            compare = save_image(image_grid(torch.stack([image.pixels, result.images[k]]), nrow=2),
                                 out / f"{stem}_compare.png")
            animations.append(Animation(image.path, video, inverted, compare, float(result.psnr[k]),
                                        float(result.start_psnr[k]), image.notes))
    return AnimateResult(animations, saver.write() if saver is not None else None)
