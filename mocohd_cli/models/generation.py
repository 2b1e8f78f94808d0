"""Videos from a backbone and a motion model: content codes, motion trajectories, frames.
Seeded end to end (docs/method.md, "Motion generator": frames and long videos)."""
from __future__ import annotations

import torch
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


@torch.no_grad()
def generate_videos(backbone: ImageGenerator, motion: MotionGenerator, *, num_videos: int, n_frames: int,
                    seed: int = 0, noise: str = "random", interpolate: bool = False,
                    classes: list[int] | None = None, batch_size: int = 8, progress=None) -> Tensor:
    """Videos [N, T, 3, H, W] in [-1, 1] on the CPU (T = 2*n_frames - 1 with `interpolate`).

    Every random draw comes from one CPU random generator (rng) seeded by `seed`, in a fixed order, so the
    same seed gives the same videos on any device and batch size is the only other factor.
    """
    backbone.check_noise_mode(noise)
    rng = torch.Generator().manual_seed(seed)
    condition_all = backbone.sample_condition(num_videos, classes, rng=rng)
    videos = []
    for start in range(0, num_videos, batch_size):
        n = min(batch_size, num_videos - start)
        w0 = backbone.sample_latent(n, rng=rng)
        latents = motion(w0.to(motion.w.device), n_frames, rng=rng)
        if interpolate:
            latents = interpolate_midpoints(latents)
        condition = None if condition_all is None else condition_all[start:start + n]
        frames = backbone.synthesize(latents.to(backbone.device), condition=condition, noise=noise,
                                     rng=rng)
        videos.append(frames.float().cpu())
        if progress is not None:
            progress(start + n, num_videos)
    return torch.cat(videos)
