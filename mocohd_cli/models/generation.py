"""Videos from a backbone and a motion model: content codes, motion trajectories, frames.

Every video draws its randomness from its own seeded streams (`stream_seed`): a content stream
(class, content code w0 and the backbone's synthesis noise) and a motion stream (the LSTM's noise
eps_1..eps_{T-1}). So a video does not depend on the batch size or on how many videos are made,
and videos can share a content or a motion on purpose (`VideoSpec`; docs/sampling.md)."""
from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from ..infra.errors import MocohdError
from ..infra.settings import torch_seed
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
    """(rng, content codes [n, D], conditions) batch by batch, for images (`mocohd backbone-grid`).
    One CPU random generator seeded by `seed` makes every draw, in a fixed order (the caller draws
    with the same rng between batches), so the same seed gives the same samples on any device."""
    rng = torch.Generator().manual_seed(torch_seed(seed))
    condition_all = backbone.sample_condition(num, classes, rng=rng)
    for start in range(0, num, batch_size):
        n = min(batch_size, num - start)
        w0 = backbone.sample_latent(n, rng=rng)
        yield rng, w0, None if condition_all is None else condition_all[start:start + n]


# -- seeded streams ------------------------------------------------------------------------------
def stream_seed(seed: int, index: int, stream: str) -> int:
    """The seed of random stream `stream` ("content", "motion" or "synthesis" of video `index`;
    other names for other uses: "candidates", "encoder-init", ...) under `seed`. A hash rather than
    seed + index, so that nearby seeds and indices give unrelated streams, and so that any integer
    --seed (negative, or past torch's 64 bits) gives a valid one: every user seed goes through here."""
    digest = hashlib.sha256(f"mocohd/{seed}/{index}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # 63 bits: fits an int64 (saved latents)


def stream_generator(seed: int, index: int, stream: str) -> torch.Generator:
    """A CPU generator of stream `stream_seed(seed, index, stream)`."""
    # CPU generators draw the same numbers on any machine; the draws move to the model's device.
    return torch.Generator().manual_seed(stream_seed(seed, index, stream))


Source = tuple[int, int]  # (seed, index) of a content or motion stream


@dataclass(frozen=True)
class VideoSpec:
    """Where one video's randomness comes from: its content (class, content code, synthesis noise)
    is content stream `content`, its motion noise motion stream `motion`. With `content_to`, the
    content code moves from `content`'s to `content_to`'s over the video (class and synthesis
    noise stay `content`'s)."""

    content: Source
    motion: Source
    content_to: Source | None = None


def default_specs(seed: int, num_videos: int) -> Iterator[VideoSpec]:
    """Video i: content and motion streams i of `seed`."""
    return (VideoSpec((seed, i), (seed, i)) for i in range(num_videos))


@dataclass
class Content:
    code: Tensor  # [D] content code w0 in the motion space (after the backbone's mapping and truncation)
    label: int | None  # class index, conditional backbones only
    synthesis_seed: int


def draw_content(backbone: ImageGenerator, source: Source, classes: list[int] | None = None) -> Content:
    """The content of stream `source` = (seed, index); given `classes` cycle over the index."""
    seed, index = source
    rng = stream_generator(seed, index, "content")
    given = [classes[index % len(classes)]] if classes else None
    condition = backbone.sample_condition(1, given, rng=rng)  # unconditional + classes: a clear error
    code = backbone.sample_latent(1, rng=rng)[0]
    label = None if condition is None else int(condition[0].argmax())
    return Content(code, label, stream_seed(seed, index, "synthesis"))


# -- latents ------------------------------------------------------------------------------------
@dataclass
class LatentBatch:
    """Everything a batch of videos is rendered from (CPU tensors): what `--save-latents` writes."""

    start: int  # index of the batch's first video
    content: Tensor  # [n, D] content codes w0
    motion_noise: Tensor  # [n, T-1, D] motion noise eps_1..eps_{T-1}
    trajectories: Tensor  # [n, T, D] the latent trajectories w_0..w_{T-1} the frames are made from
    synthesis_seeds: Tensor  # [n] int64: seeds of the backbone's own noise (StyleGAN2's noise maps)
    labels: Tensor | None = None  # [n] int64 class indices (conditional backbones)

    def __len__(self) -> int:
        return self.content.shape[0]


def interpolate_content(start: Tensor, end: Tensor, alpha: Tensor, mode: str = "linear") -> Tensor:
    """Content codes [n, D] -> [n, T, D] moving from `start` (alpha 0) to `end` (alpha 1), with
    both ends exact. "slerp" follows the great circle (for Gaussian z spaces: see
    ImageGenerator.content_interpolation); nearly parallel codes fall back to linear."""
    a, b, t = start[:, None], end[:, None], alpha.to(start)[None, :, None]
    linear = (1 - t) * a + t * b
    if mode == "linear":
        return linear
    if mode != "slerp":
        raise ValueError(f"unknown content interpolation {mode!r} (linear or slerp)")
    omega = torch.arccos(F.cosine_similarity(start, end, dim=-1).clamp(-1, 1))[:, None, None]
    sin = torch.sin(omega)
    safe = torch.where(sin > 1e-6, sin, torch.ones_like(sin))
    slerp = torch.sin((1 - t) * omega) / safe * a + torch.sin(t * omega) / safe * b
    return torch.where(sin > 1e-6, slerp, linear)


def _moving_content(backbone: ImageGenerator, motion: MotionGenerator, start: Tensor, end: Tensor,
                    noise: Tensor, start_trajectory: Tensor) -> Tensor:
    """The trajectories of videos whose content code moves from `start` to `end`: the content
    codes interpolated over the frames, plus the motion residuals w_t - w_0 of the same motion
    noise from each end, blended with the same weights. Frame 0 is `start`'s video's and the last
    frame (up to rounding) the last frame of `end`'s video with this motion."""
    n_frames = start_trajectory.shape[1]
    alpha = torch.arange(n_frames, dtype=start.dtype, device=start.device) / max(n_frames - 1, 1)
    end_trajectory = motion(end, n_frames, noise)
    codes = interpolate_content(start, end, alpha, backbone.content_interpolation)
    t = alpha[None, :, None]
    return codes + (1 - t) * (start_trajectory - start[:, None]) + t * (end_trajectory - end[:, None])


@torch.no_grad()
def draw_latents(backbone: ImageGenerator, motion: MotionGenerator, specs: Iterable[VideoSpec], *,
                 n_frames: int, classes: list[int] | None = None, batch_size: int = 8) -> Iterator[LatentBatch]:
    """The latents of the videos `specs` describes, `batch_size` videos at a time (`specs` may be
    as long as you like: nothing is held beyond one batch)."""
    specs, start = iter(specs), 0
    device = motion.w.device
    while batch := list(itertools.islice(specs, batch_size)):
        contents: dict[Source, Content] = {}
        for source in dict.fromkeys(s for spec in batch for s in (spec.content, spec.content_to) if s is not None):
            contents[source] = draw_content(backbone, source, classes)
        first = [contents[spec.content] for spec in batch]
        w0 = torch.stack([c.code for c in first]).to(device)
        noise = torch.cat([motion.draw_noise(1, n_frames, stream_generator(*spec.motion, "motion")) for spec in batch])
        trajectories = motion(w0, n_frames, noise)
        moving = [i for i, spec in enumerate(batch) if spec.content_to is not None]
        if moving:
            end = torch.stack([contents[batch[i].content_to].code for i in moving]).to(device)
            trajectories[moving] = _moving_content(backbone, motion, w0[moving], end, noise[moving],
                                                   trajectories[moving])
        labels = None if first[0].label is None else torch.tensor([c.label for c in first])
        yield LatentBatch(start, w0.float().cpu(), noise.float().cpu(), trajectories.float().cpu(),
                          torch.tensor([c.synthesis_seed for c in first]), labels)
        start += len(batch)


# -- frames -------------------------------------------------------------------------------------
@torch.no_grad()
def render(backbone: ImageGenerator, batch: LatentBatch, *, noise: str = "random",
           interpolate: bool = False) -> Tensor:
    """The frames [n, T, 3, H, W] of a batch of latents, float32 in about [-1, 1] on the CPU
    (T doubled less one with `interpolate`). Frames that are not finite are an error, never a
    black video."""
    backbone.check_noise_mode(noise)
    latents = batch.trajectories
    if interpolate:
        latents = interpolate_midpoints(latents)
    latents = latents.to(backbone.device)
    condition = None if batch.labels is None else backbone.sample_condition(len(batch), batch.labels.tolist())
    frames = []
    for i, seed in enumerate(batch.synthesis_seeds.tolist()):
        # One synthesis-noise stream per video, so a video's frames do not depend on its batch.
        frames.append(backbone.synthesize(latents[i:i + 1], condition=None if condition is None else condition[i:i + 1],
                                          noise=noise, rng=torch.Generator().manual_seed(seed)).float().cpu())
    frames = torch.cat(frames)
    if not torch.isfinite(frames).all():
        last = batch.start + len(batch) - 1
        raise MocohdError(f"the backbone made frames that are not finite (NaN or inf) for video(s) "
                          f"{batch.start}..{last}", fix="check the backbone checkpoint's weights, --truncation "
                          "and, when replaying, the --latents file")
    return frames


@torch.no_grad()
def iter_videos(backbone: ImageGenerator, motion: MotionGenerator, specs: Iterable[VideoSpec], *, n_frames: int,
                noise: str = "random", interpolate: bool = False, classes: list[int] | None = None,
                batch_size: int = 8) -> Iterator[tuple[LatentBatch, Tensor]]:
    """(latents, frames) batch by batch for the videos `specs` describes: memory stays one batch
    however many videos there are."""
    backbone.check_noise_mode(noise)
    for batch in draw_latents(backbone, motion, specs, n_frames=n_frames, classes=classes, batch_size=batch_size):
        yield batch, render(backbone, batch, noise=noise, interpolate=interpolate)


@torch.no_grad()
def generate_videos(backbone: ImageGenerator, motion: MotionGenerator, *, num_videos: int, n_frames: int,
                    seed: int = 0, noise: str = "random", interpolate: bool = False,
                    classes: list[int] | None = None, batch_size: int = 8, progress=None) -> Tensor:
    """Videos [N, T, 3, H, W] in [-1, 1] on the CPU (T = 2*n_frames - 1 with `interpolate`), all in
    memory: `iter_videos` streams them.

    Video i is the same for any `num_videos` (and, up to float rounding of the batched LSTM, any
    `batch_size`): it comes from streams i of `seed` (`default_specs`).
    """
    videos = []
    for batch, frames in iter_videos(backbone, motion, default_specs(seed, num_videos), n_frames=n_frames,
                                     noise=noise, interpolate=interpolate, classes=classes, batch_size=batch_size):
        videos.append(frames)
        if progress is not None:
            progress(batch.start + len(batch), num_videos)
    return torch.cat(videos)


def synthesis_seeds(seed: int, indices: Iterable[int]) -> list[int]:
    """The synthesis-noise seeds of videos `indices` under `seed` (as `draw_content` gives them)."""
    return [stream_seed(seed, i, "synthesis") for i in indices]


@torch.no_grad()
def latents_from_content(motion: MotionGenerator, content: Tensor, *, n_frames: int, seed: int, start: int = 0,
                         labels: list[int] | None = None) -> LatentBatch:
    """The latents of videos start, start+1, ... whose content codes [n, D] are given (inverted
    images, for example): video i's motion noise and synthesis seed are streams i of `seed`, as
    `default_specs` gives them, so `render` makes the frames and `--latents` replays them."""
    index = range(start, start + content.shape[0])
    noise = torch.cat([motion.draw_noise(1, n_frames, stream_generator(seed, i, "motion")) for i in index])
    w0 = content.to(motion.w.device)
    return LatentBatch(start, w0.float().cpu(), noise.float().cpu(), motion(w0, n_frames, noise).float().cpu(),
                       torch.tensor(synthesis_seeds(seed, index)),
                       None if labels is None else torch.tensor(labels))
