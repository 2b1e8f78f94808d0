"""A frames FID to watch an image generator learn (`mocohd pretrain` logs it at each sample step).

The Inception detector of `mocohd eval --metric fid` (evaluation/detectors.py) on the training frames
(up to REAL_IMAGES, evenly spaced; their statistics computed once) against FAKE_IMAGES samples of the
generator from a fixed seed, with noise "const": numbers from step to step of one run compare. With
so few samples the FID reads far higher than a 50k-sample FID would (the estimate is biased upwards),
so it is a trend to watch, not a number to publish: `mocohd eval --metric fid` on a folder of samples
gives that one.

Only "at hand": a detector file given, or the one in the cache ($MOCOHD_CACHE/detectors/); never a
download in the middle of a training run. `frames_fid_monitor` returns None (and says why) otherwise.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor

from ..infra.files import sha256_of
from ..models.generation import seeded_content
from .detectors import DETECTORS, Detector, detector_dir
from .statistics import frechet_distance, gaussian_stats

_log = logging.getLogger(__name__)

# 128 samples cost about 8 s on 2 CPU cores (an Inception-v3 pass at 299 px each; benchmarks/pretrain_cost.py):
# about a sixth of 250 steps of the example backbones' configuration there; nothing on a GPU
FAKE_IMAGES = 128
REAL_IMAGES = 512
SEED = 1_000_003  # the samples' seed: not the sample grids', so the grid and the FID show different draws


def inception_at_hand(path: str | Path | None = None) -> Path | None:
    """The Inception detector file: `path` when given, else the cached one, else None (no download)."""
    if path is not None:
        return Path(path)
    cached = detector_dir() / DETECTORS["inception"].file
    return cached if cached.is_file() else None


class FramesFID:
    """The FID of a generator's samples against `frames` (uint8 [N, 3, S, S])."""

    def __init__(self, frames: Tensor, detector_path: Path, device: torch.device, *, fake_images: int = FAKE_IMAGES,
                 real_images: int = REAL_IMAGES, batch_size: int = 32):
        self.detector = Detector("inception", Path(detector_path), sha256_of(detector_path), device)
        self.fake_images, self.batch_size = fake_images, batch_size
        chosen = torch.linspace(0, len(frames) - 1, min(real_images, len(frames))).round().long().unique()
        self.real_images = len(chosen)
        self.real = gaussian_stats(self._features(frames[chosen]))

    def _features(self, images: Tensor) -> Tensor:
        return torch.cat([self.detector(images[i:i + self.batch_size]) for i in range(0, len(images), self.batch_size)])

    def __call__(self, generator) -> float:
        was_training = getattr(generator, "training", False)
        if hasattr(generator, "eval"):
            generator.eval()
        features = []
        try:
            with torch.no_grad():  # the samples as backbone-grid draws them (one seeded CPU generator, constant noise)
                for rng, latents, condition in seeded_content(generator, self.fake_images, seed=SEED, classes=None,
                                                              batch_size=self.batch_size):
                    images = generator.synthesize(latents[:, None], condition=condition, noise="const", rng=rng)
                    uint8 = ((images[:, 0].float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
                    features.append(self.detector(uint8))
        finally:
            if was_training:
                generator.train()
        return frechet_distance(*gaussian_stats(torch.cat(features)), *self.real)


def frames_fid_monitor(frames: Tensor, device: torch.device, detector: str | Path | None = None,
                       log=_log.info) -> FramesFID | None:
    """A FramesFID on `frames` when an Inception detector is at hand, else None, said once through `log`."""
    path = inception_at_hand(detector)
    if path is None:
        log(f"no Inception detector at hand ({detector_dir() / DETECTORS['inception'].file}): no frames FID at the "
            "sample steps; `mocohd eval --metric fid` once (it downloads the detector) turns it on, or pass "
            "--detector FILE")
        return None
    monitor = FramesFID(frames, path, device)
    log(f"frames FID at each sample step: {monitor.fake_images} samples against {monitor.real_images} training "
        f"frames (Inception {path.name}; a trend to watch: lower is closer to the data)")
    return monitor


__all__ = ["FAKE_IMAGES", "REAL_IMAGES", "FramesFID", "frames_fid_monitor", "inception_at_hand"]
