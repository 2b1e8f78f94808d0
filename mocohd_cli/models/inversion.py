"""GAN inversion: the latent (in the motion space) whose rendering matches an image (docs/animate.md).

The motion generator starts every video from a content code w_0 in the space `synthesize` takes
(StyleGAN2's W, BigGAN's z with the class fixed). To animate a given image, `invert` finds the
w_0 whose image matches it: Adam on the latent, from a starting guess (an encoder's prediction,
or the best of the mean latent and a few hundred samples: `invert_images`), minimising

    L = mean (clamp(G(w)) - x)^2  +  feature_weight * d_feat(clamp(G(w)), x)

with the per-layer noise fixed (the same maps at every step and in the animation), where d_feat
is an LPIPS-like distance on a feature network's maps (`feature_distance`; the encoder's own
features when there is an encoder). The latent is optimised in units of the latent space's spread
(w = mean + scale * u), so one learning rate suits every backbone.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Callable, Sequence

import torch
from torch import Tensor
import torch.nn.functional as F

from ..infra.errors import MocohdError
from .backbone import ImageGenerator
from .generation import stream_generator

# Latent samples behind the mean latent and the spread (seeded: the same statistics every run).
STATS_SAMPLES = 4096
STATS_SEED = 0
DEFAULT_STEPS = 500
DEFAULT_LR = 0.1
# Without an encoder, optimisation starts from the best of the mean latent and this many seeded
# samples: from the mean alone, half the faces backbone's own images end in a local minimum
# (docs/animate.md, "Measurements").
DEFAULT_CANDIDATES = 256
# At most this many (they are drawn and rendered a batch at a time, so memory does not grow with
# the number; time does, linearly).
MAX_CANDIDATES = 1_000_000
# Candidates are compared with the targets at this side at most (average-pooled): cheap, and enough
# to pick the right region of the latent space.
SEARCH_SIZE = 64
DEFAULT_FEATURE_WEIGHT = 0.1
# The share of steps over which the learning rate ramps up from 0, and (cosine) down to 0 at the end
# (as StyleGAN2's projector schedules it).
LR_RAMPUP, LR_RAMPDOWN = 0.05, 0.25
# PSNR of a perfect reconstruction: MSE is floored at this value ([0, 1] pixel units), so one
# identical frame gives 100 dB, not infinity, and averages stay finite.
PSNR_CAP_DB = 100.0
_MSE_FLOOR = 10 ** (-PSNR_CAP_DB / 10)


@dataclass
class LatentStatistics:
    """Mean latent [D], the spread of the latent space (root-mean-square deviation per dimension)
    and the largest root-mean-square deviation of one sample, in units of the spread (the radius
    the inversion keeps its latents within)."""

    mean: Tensor
    scale: float
    radius: float = math.inf


@torch.no_grad()
def latent_statistics(backbone: ImageGenerator, n: int = STATS_SAMPLES, seed: int = STATS_SEED) -> LatentStatistics:
    """Mean and spread of `backbone.sample_latent` (with the backbone's truncation), seeded."""
    rng = torch.Generator().manual_seed(seed)
    latents = torch.cat([backbone.sample_latent(min(1024, n - i), rng=rng).float() for i in range(0, n, 1024)])
    mean = latents.mean(0)
    scale = float((latents - mean).pow(2).mean().sqrt())
    scale = scale if scale > 0 else 1.0
    radius = float(rms_units(latents, mean, scale).max())
    return LatentStatistics(mean.cpu(), scale, radius)


def rms_units(latents: Tensor, mean: Tensor, scale: float) -> Tensor:
    """Root-mean-square deviation of each latent [N, D] from the mean, in units of the spread."""
    return ((latents - mean) / scale).pow(2).mean(-1).sqrt()


def keep_within(u: Tensor, radius: float) -> Tensor:
    """Latents in units of the spread [N, D], each scaled back onto the ball of `radius` if outside."""
    norm = u.pow(2).mean(-1, keepdim=True).sqrt()
    return u * (radius / norm.clamp_min(1e-12)).clamp(max=1.0)


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """PSNR in dB per image (over all but the first dimension) of images in [-1, 1], each clamped
    to that range first (as written to a file), capped at PSNR_CAP_DB (identical images)."""
    mse = ((a.float().clamp(-1, 1) - b.float().clamp(-1, 1)) / 2).pow(2).flatten(1).mean(1)
    return -10 * torch.log10(mse.clamp_min(_MSE_FLOOR))


def feature_distance(features_a: Sequence[Tensor], features_b: Sequence[Tensor]) -> Tensor:
    """LPIPS-like distance per image: each feature map unit-normalised over its channels at every
    position, squared differences averaged over positions and channels, averaged over maps."""
    total = 0.0
    for a, b in zip(features_a, features_b):
        a = F.normalize(a.float(), dim=1, eps=1e-6)
        b = F.normalize(b.float(), dim=1, eps=1e-6)
        total = total + (a - b).pow(2).sum(1).flatten(1).mean(1)
    return total / max(1, len(features_a))


def learning_rate(step: int, steps: int, base: float) -> float:
    """Ramp up over the first LR_RAMPUP of the steps, cosine ramp down over the last LR_RAMPDOWN."""
    t = step / max(1, steps)
    ramp = min(1.0, (1.0 - t) / LR_RAMPDOWN)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return base * ramp * min(1.0, t / LR_RAMPUP if LR_RAMPUP > 0 else 1.0)


def check_candidates(candidates: int) -> int:
    if not 0 <= candidates <= MAX_CANDIDATES:
        raise MocohdError(f"--candidates must be from 0 to {MAX_CANDIDATES:,}, got {candidates}",
                          fix=f"use 0 (start from the mean latent) or more; {DEFAULT_CANDIDATES} usually suffice")
    return candidates


@torch.no_grad()
def search_start(backbone: ImageGenerator, targets: Tensor, *, stats: LatentStatistics, candidates: int,
                 condition: Tensor | None = None, noise: str = "const", seed: int = 0,
                 batch_size: int = 64) -> Tensor:
    """For each target [N, 3, H, W], the latent [D] among the mean latent and `candidates` samples
    (drawn with `seed`'s "candidates" stream) whose rendering is closest in pixels (mean squared
    error at SEARCH_SIZE). With a condition, each target is compared with renderings of its own
    class. Candidates are rendered with the stored noise when `noise` is "random" (the search only
    picks a region). The candidates are drawn `batch_size` at a time and only the best so far is
    kept: memory does not grow with their number."""
    check_candidates(candidates)
    noise = "const" if noise == "random" else noise
    device = backbone.device
    rng = stream_generator(seed, 0, "candidates")
    size = min(SEARCH_SIZE, backbone.resolution)
    small_targets = F.adaptive_avg_pool2d(targets.to(device, torch.float32), size).flatten(1)
    groups = [(None, torch.arange(len(targets), device=device))]
    if condition is not None:
        rows, which = torch.unique(condition, dim=0, return_inverse=True)
        groups = [(rows[g:g + 1], (which == g).nonzero()[:, 0]) for g in range(len(rows))]
    mean = stats.mean[None].to(device)
    best = mean.expand(len(targets), -1).clone()
    best_distance = torch.full((len(targets),), math.inf, device=device)
    # chunk 0 is the mean latent alone; then the samples, batch_size at a time
    chunks = [min(batch_size, candidates - i) for i in range(0, candidates, batch_size)]
    for k, n in enumerate([0] + chunks):
        chunk = mean if k == 0 else backbone.sample_latent(n, rng=rng)
        for row, members in groups:
            cond = None if row is None else row.expand(len(chunk), -1)
            images = render_fixed_noise(backbone, chunk[:, None], condition=cond, noise=noise)[:, 0]
            small = F.adaptive_avg_pool2d(images.float(), size).flatten(1)
            distance, index = torch.cdist(small_targets[members], small).min(1)
            better = distance < best_distance[members]  # strictly: the earliest of equals wins
            best_distance[members] = torch.where(better, distance, best_distance[members])
            best[members[better]] = chunk[index[better]].to(best.dtype)
    return best


@dataclass
class InversionResult:
    latents: Tensor  # [N, D] the best latent found for each image
    images: Tensor  # [N, 3, H, W] their renderings, in [-1, 1], on the CPU
    psnr: Tensor  # [N] PSNR (dB) of each rendering against its target
    losses: list[float]  # mean loss per step
    start_psnr: Tensor  # [N] PSNR of the starting guess


def render_fixed_noise(backbone: ImageGenerator, latents: Tensor, *, condition: Tensor | None, noise: str,
                       seeds: Sequence[int] | None = None) -> Tensor:
    """Latents [B, T, D] -> frames [B, T, 3, H, W] with fixed per-layer noise: "const" and "none"
    in one batch; "random" video by video, video i with the noise maps of a generator seeded by
    `seeds[i]` (as mocohd_cli.models.generation.render draws them, so a video's noise does not
    depend on its batch and replays from a latents file)."""
    if noise != "random":
        return backbone.synthesize(latents, condition=condition, noise=noise)
    if seeds is None or len(seeds) != latents.shape[0]:
        raise ValueError("random noise needs one seed per video")
    return torch.cat([backbone.synthesize(latents[i:i + 1], condition=None if condition is None else condition[i:i + 1],
                                          noise=noise, rng=torch.Generator().manual_seed(int(seed)))
                      for i, seed in enumerate(seeds)])


def invert(backbone: ImageGenerator, targets: Tensor, *, init: Tensor | None = None,
           stats: LatentStatistics | None = None, condition: Tensor | None = None, steps: int = DEFAULT_STEPS,
           lr: float = DEFAULT_LR, noise: str = "const", seeds: Sequence[int] | None = None,
           features: Callable[[Tensor], Sequence[Tensor]] | None = None,
           feature_weight: float = DEFAULT_FEATURE_WEIGHT, anchor: Tensor | None = None, anchor_weight: float = 0.0,
           pixel_weights: Tensor | None = None,
           progress: Callable[[int, int], None] | None = None) -> InversionResult:
    """Latents [N, D] whose renderings match `targets` [N, 3, H, W] in [-1, 1] (H = the backbone's
    resolution). `init` [N, D] is the starting guess (default: the mean latent); `features` maps
    images [N, 3, H, W] to a list of feature maps for the feature term (None: pixels only). The
    noise stays fixed (mode `noise`; "random": image i's maps come from `seeds[i]`, see
    `render_fixed_noise`); each image's best step is kept. With `anchor` [N, D] the loss adds
    `anchor_weight` x the mean squared distance from it in units of the spread: of the latents that
    explain an image about equally well, the one nearest the anchor wins (directions the image does
    not need stay where the anchor has them). `pixel_weights` [N, 1, H, W] (>= 0) weight the pixel term
    per pixel (a weighted mean: the loss keeps its scale)."""
    backbone.check_noise_mode(noise)
    if steps < 0:
        raise MocohdError(f"--steps must be >= 0, got {steps}", fix="use 0 (the starting guess) or more steps")
    res = backbone.resolution
    if targets.dim() != 4 or targets.shape[1:] != (3, res, res):
        raise MocohdError(f"images to invert must be [N, 3, {res}, {res}] (the backbone's resolution), got "
                          f"{list(targets.shape)}", fix="resize the images to the backbone's resolution")
    device = backbone.device
    stats = stats or latent_statistics(backbone)
    mean, scale = stats.mean.to(device), stats.scale
    targets = targets.to(device, torch.float32)
    n = targets.shape[0]
    start = mean.expand(n, -1) if init is None else init.to(device, torch.float32)
    u = keep_within((start - mean) / scale, stats.radius).detach().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([u], lr=lr, betas=(0.9, 0.999))
    u_anchor = None if anchor is None or anchor_weight <= 0 else ((anchor.to(device, torch.float32) - mean) / scale)
    if pixel_weights is not None:
        pixel_weights = pixel_weights.to(device, torch.float32)
        pixel_weights = pixel_weights / pixel_weights.mean((1, 2, 3), keepdim=True).clamp_min(1e-12)
    target_features = None
    if features is not None and feature_weight > 0:
        with torch.no_grad():
            target_features = [f.detach() for f in features(targets)]

    def per_image_loss(images: Tensor, u: Tensor) -> Tensor:
        # compared as written to a file (clamped to [-1, 1]), with the gradient passed straight
        # through the clamp, so that an overshooting pixel is pulled back as well
        images = images + (images.clamp(-1, 1) - images).detach()
        error = (images - targets).pow(2)
        if pixel_weights is not None:
            error = error * pixel_weights
        loss = error.flatten(1).mean(1)
        if target_features is not None:
            loss = loss + feature_weight * feature_distance(features(images), target_features)
        if u_anchor is not None:
            loss = loss + anchor_weight * (u - u_anchor).pow(2).mean(1)
        return loss

    best_loss = torch.full((n,), math.inf, device=device)
    best_u = u.detach().clone()
    losses: list[float] = []
    start_psnr = None
    for step in range(steps + 1):  # the last pass only scores the final latents
        with torch.set_grad_enabled(step < steps):
            images = render_fixed_noise(backbone, (mean + scale * u)[:, None], condition=condition, noise=noise,
                                        seeds=seeds)[:, 0]
            loss = per_image_loss(images, u)
        with torch.no_grad():
            if start_psnr is None:
                start_psnr = psnr(images, targets).cpu()
            better = loss.detach() < best_loss
            best_loss = torch.where(better, loss.detach(), best_loss)
            best_u[better] = u.detach()[better]
        losses.append(float(loss.detach().mean()))
        if step == steps:
            break
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, steps, lr)
        optimiser.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimiser.step()
        with torch.no_grad():
            # Off the backbone's distribution an image can be matched better, but such a latent
            # falls apart as soon as the motion model moves it (docs/animate.md, "Inversion").
            u.copy_(keep_within(u, stats.radius))
        if progress is not None:
            progress(step + 1, steps)
    with torch.no_grad():
        latents = mean + scale * best_u
        images = render_fixed_noise(backbone, latents[:, None], condition=condition, noise=noise, seeds=seeds)[:, 0]
    return InversionResult(latents.detach(), images.float().cpu(), psnr(images, targets).cpu(), losses, start_psnr)


def invert_images(backbone: ImageGenerator, targets: Tensor, *, encoder=None, candidates: int = DEFAULT_CANDIDATES,
                  stats: LatentStatistics | None = None, condition: Tensor | None = None,
                  steps: int = DEFAULT_STEPS, lr: float = DEFAULT_LR, feature_weight: float = DEFAULT_FEATURE_WEIGHT,
                  noise: str = "const", seeds: Sequence[int] | None = None, seed: int = 0,
                  progress: Callable[[int, int], None] | None = None) -> InversionResult:
    """`invert` from the usual start: the encoder's prediction (and its feature maps for the
    feature term) when there is an encoder, else the best of the mean latent and `candidates`
    samples drawn with `seed` (`search_start`; 0 candidates: the mean latent), pixels only."""
    stats = stats or latent_statistics(backbone)
    check_candidates(candidates)
    if encoder is not None:
        with torch.no_grad():
            init = encoder(targets.to(backbone.device)).float()
        features = encoder.feature_maps
    else:
        init = (search_start(backbone, targets, stats=stats, candidates=candidates, condition=condition, noise=noise,
                             seed=seed) if candidates else None)
        features = None
    return invert(backbone, targets, init=init, stats=stats, condition=condition, steps=steps, lr=lr, noise=noise,
                  seeds=seeds, features=features, feature_weight=feature_weight, progress=progress)


# Video projection: the weight of the pull towards frame 0's latent. Without it (the default), the
# projection follows the frames as closely as it can, and directions that hardly change the image
# random-walk a little from frame to frame; with it those directions stay at frame 0's, at the price of
# some of the motion (the faces example, anchor 0.05: 0.41 of the real amplitude instead of 0.60, and
# identity drift 0.96x the real videos' instead of 1.37x; docs/examples.md, "What the backbone can show").
DEFAULT_VIDEO_ANCHOR_WEIGHT = 0.0
DEFAULT_VIDEO_STEPS = 40  # per frame after the first, which starts from its predecessor's latent
# Video projection: how much more the pixels that move count than the still ones. A mouth or an eye is a
# few pixels of a 64 px frame, so a plain pixel loss leaves them where the previous frame had them (the
# faces example: 0.31 of the real mouth movement survives it; docs/examples.md, "What the backbone can show").
DEFAULT_VIDEO_MOTION_WEIGHT = 0.0


def motion_pixel_weights(frame: Tensor, previous: Tensor, first: Tensor, motion_weight: float) -> Tensor:
    """Per-pixel weights [N, 1, H, W] for projecting `frame` [N, 3, H, W] in [-1, 1]: 1 + motion_weight
    where it differs most from its predecessor or from the video's first frame (grown by a pixel each
    way, normalised per image so that its most changed pixel gets the full weight)."""
    change = torch.maximum((frame - previous).abs(), (frame - first).abs()).mean(1, keepdim=True)
    change = F.max_pool2d(change, 3, stride=1, padding=1)
    change = change / change.amax((2, 3), keepdim=True).clamp_min(1e-6)
    return 1 + motion_weight * change


@dataclass
class VideoProjection:
    latents: Tensor  # [N, T, D] one latent per frame
    frames: Tensor  # [N, T, 3, H, W] their renderings, in [-1, 1], on the CPU
    psnr: Tensor  # [N, T] dB against the target frames


def project_videos(backbone: ImageGenerator, videos: Tensor, *, first_steps: int = DEFAULT_STEPS,
                   steps: int = DEFAULT_VIDEO_STEPS, anchor_weight: float = DEFAULT_VIDEO_ANCHOR_WEIGHT,
                   motion_weight: float = DEFAULT_VIDEO_MOTION_WEIGHT,
                   candidates: int = DEFAULT_CANDIDATES, stats: LatentStatistics | None = None, lr: float = DEFAULT_LR,
                   noise: str = "const", seed: int = 0,
                   progress: Callable[[int, int], None] | None = None) -> VideoProjection:
    """Each frame of `videos` [N, T, 3, H, W] in [-1, 1] inverted into the motion space: frame 0 as
    `invert_images` does it (`first_steps`, from the best of `candidates`), every later frame from its
    predecessor's latent (`steps`), pulled towards frame 0's (`anchor_weight`), with the pixels that
    moved weighted 1 + `motion_weight` (`motion_pixel_weights`). The noise maps are
    the same for every frame. The rendered projection of a real video is what the backbone can show
    of it: its motion, read off the frames, bounds what any motion model on this backbone reaches."""
    if videos.dim() != 5:
        raise MocohdError(f"videos to project must be [N, T, 3, H, W], got {list(videos.shape)}",
                          fix="stack the frames of each video")
    if motion_weight < 0:
        raise MocohdError(f"the motion weight must be >= 0, got {motion_weight}", fix="use 0 (plain pixels) or more")
    stats = stats or latent_statistics(backbone)
    n_frames = videos.shape[1]
    first = invert_images(backbone, videos[:, 0], stats=stats, candidates=candidates, steps=first_steps, lr=lr,
                          noise=noise, seed=seed)
    results = [first]
    for t in range(1, n_frames):
        weights = (motion_pixel_weights(videos[:, t], videos[:, t - 1], videos[:, 0], motion_weight)
                   if motion_weight > 0 else None)
        results.append(invert(backbone, videos[:, t], init=results[-1].latents, stats=stats, steps=steps, lr=lr,
                              noise=noise, anchor=first.latents, anchor_weight=anchor_weight, pixel_weights=weights))
        if progress is not None:
            progress(t, n_frames - 1)
    return VideoProjection(torch.stack([r.latents for r in results], 1).cpu(),
                           torch.stack([r.images for r in results], 1),
                           torch.stack([r.psnr for r in results], 1))
