"""Videos from a backbone and a motion model: content codes, motion trajectories, frames.
Seeded end to end (docs/method.md, "Motion generator": frames and long videos)."""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from .backbone import ImageGenerator
from .motion import MotionGenerator


def interpolate_midpoints(latents: Tensor) -> Tensor:
    """[B, T, D] -> [B, 2T-1, D]: a midpoint between each pair of consecutive latents."""
    if latents.shape[1] < 2:
        return latents
    mids = 0.5 * (latents[:, 1:] + latents[:, :-1])
    out = torch.stack([latents[:, :-1], mids], dim=2).flatten(1, 2)
    return torch.cat([out, latents[:, -1:]], dim=1)


def pool_frames(frames: Tensor, size: int) -> Tensor:
    """[B, T, 3, H, W] at the generator's resolution -> [B, T, 3, size, size] by average pooling."""
    b, t, c, h, w = frames.shape
    if h == size and w == size:
        return frames
    flat = frames.reshape(b * t, c, h, w)
    pooled = F.avg_pool2d(flat, h // size) if h % size == 0 and w == h else F.adaptive_avg_pool2d(flat, size)
    return pooled.reshape(b, t, c, size, size)


def seeded_content(backbone: ImageGenerator, num: int, *, seed: int, classes: list[int] | None,
                   batch_size: int) -> Iterator[tuple[torch.Generator, Tensor, Tensor | None]]:
    """(rng, content codes [n, D], conditions) batch by batch. One CPU random generator seeded by
    `seed` makes every draw, in a fixed order (the caller draws with the same rng between batches),
    so the same seed gives the same samples on any device."""
    rng = torch.Generator().manual_seed(seed)
    condition_all = backbone.sample_condition(num, classes, rng=rng)
    for start in range(0, num, batch_size):
        n = min(batch_size, num - start)
        w0 = backbone.sample_latent(n, rng=rng)
        yield rng, w0, None if condition_all is None else condition_all[start:start + n]


@torch.no_grad()
def generate_videos(backbone: ImageGenerator, motion: MotionGenerator, *, num_videos: int, n_frames: int,
                    seed: int = 0, noise: str = "random", interpolate: bool = False,
                    classes: list[int] | None = None, batch_size: int = 8, progress=None) -> Tensor:
    """Videos [N, T, 3, H, W] in [-1, 1] on the CPU (T = 2*n_frames - 1 with `interpolate`).

    Seeded as `seeded_content` says: the same seed gives the same videos on any device, and batch
    size is the only other factor.
    """
    backbone.check_noise_mode(noise)
    videos = []
    for rng, w0, condition in seeded_content(backbone, num_videos, seed=seed, classes=classes, batch_size=batch_size):
        latents = motion(w0.to(motion.w.device), n_frames, rng=rng)
        if interpolate:
            latents = interpolate_midpoints(latents)
        frames = backbone.synthesize(latents.to(backbone.device), condition=condition, noise=noise, rng=rng)
        videos.append(frames.float().cpu())
        if progress is not None:
            progress(sum(len(v) for v in videos), num_videos)
    return torch.cat(videos)
