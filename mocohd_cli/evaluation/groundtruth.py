"""Ground-truth metrics: generated videos of a procedural domain read by its factor reader and
compared with freshly rendered real videos of the same domain (see docs/evaluation_groundtruth.md).

Videos are uint8 tensors [N, T, 3, H, W] (square, any size: frames are resized to the reader's
size). Each metric function takes the reader, the real videos and the generated ("fake") videos
and returns a flat dict of floats; `read_videos` reads a set once so that several metrics can
share it (every function also accepts its `Readings` in place of a tensor).

    motion_metrics    amplitude and speed of each motion factor (fake / real ratios), and the
                      Frechet distance between real and generated motion descriptors (`ffd`)
    content_metrics   identity drift: how far the read content factors move away from frame 0's
    frames_metrics    a domain FID on the reader's penultimate features, and a per-frame factor FD

Factors the reader reads poorly (held-out R^2 below `min_r2`, default 0.5) are left out of every
value and average; every result lists the reader's held-out R^2 of all factors as
`reader_r2/<factor>`, so a number can be traced to how well its factors are read.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.domains import Domain, get_domain
from ..infra.errors import MocohdError
from .readers import MIN_R2, READER_SEED_BASE, FactorReader, render_training_set
from .statistics import frechet_distance, gaussian_stats


@dataclass
class Readings:
    """One video set read by a reader: standardised factors [N, T, K] and features [N, T, F]."""

    factors: np.ndarray
    features: np.ndarray

    @property
    def n_videos(self) -> int:
        return self.factors.shape[0]

    @property
    def n_frames(self) -> int:
        return self.factors.shape[1]


def read_videos(reader: FactorReader, videos: torch.Tensor | Readings, *, batch_size: int = 256) -> Readings:
    """Read uint8 videos [N, T, 3, H, W] once (factors in standardised units, float64)."""
    if isinstance(videos, Readings):
        return videos
    if not isinstance(videos, torch.Tensor) or videos.dim() != 5 or videos.shape[2] != 3:
        shape = tuple(videos.shape) if isinstance(videos, torch.Tensor) else type(videos).__name__
        raise MocohdError(f"videos of shape {shape} are not [N, T, 3, H, W]",
                          fix="pass uint8 RGB videos as a tensor [videos, frames, 3, height, width]")
    if videos.dtype != torch.uint8:
        raise MocohdError(f"videos are {videos.dtype}, not uint8",
                          fix="convert generated frames from [-1, 1] with ((x + 1) * 127.5).round().clamp(0, 255).byte()")
    factors, features = reader.run(videos, batch_size=batch_size)
    return Readings(factors.double().numpy(), features.double().numpy())


def render_real(domain: str | Domain, n_videos: int, n_frames: int, size: int, seed: int, *,
                workers: int = 1) -> torch.Tensor:
    """Real videos of a procedural domain as uint8 [N, T, 3, S, S]: videos 0..N-1 of the domain's
    `seed` (the videos `mocohd data make --seed SEED` writes, when frames and size agree).
    `workers` > 1 renders in that many processes (Linux), with the same result.

    Seeds must lie below readers.READER_SEED_BASE (2**30): the readers train and are scored on
    videos of seeds from 2**30 up, so real evaluation videos are never ones a reader has seen.
    """
    name = domain if isinstance(domain, str) else domain.name
    get_domain(name)
    if not 0 <= seed < READER_SEED_BASE:
        raise MocohdError(f"real-video seed {seed} is outside [0, 2**30)",
                          fix="seeds from 2**30 up are reserved for training the factor readers")
    frames, _, _, _ = render_training_set(name, seed=seed, n_videos=n_videos, n_frames=n_frames, size=size,
                                          workers=workers, label=f"rendering real {name} videos")
    return frames


# ------------------------------------------------------------------------------------ statistics

def frechet_between(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two sample sets [N, D] and [M, D]."""
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))


def motion_descriptors(trajectories: np.ndarray) -> np.ndarray:
    """Per-video summary of factor trajectories [N, T, K] -> [N, 4 K]: for each factor its level
    (mean over time), amplitude (std over time), speed (mean |x_t+1 - x_t|) and jerkiness
    (mean |x_t+2 - 2 x_t+1 + x_t|). Differences that the video is too short for are 0."""
    x = np.asarray(trajectories, np.float64)
    n, t, k = x.shape
    level, amplitude = x.mean(1), x.std(1)
    speed = np.abs(np.diff(x, axis=1)).mean(1) if t > 1 else np.zeros((n, k))
    jerk = np.abs(np.diff(x, n=2, axis=1)).mean(1) if t > 2 else np.zeros((n, k))
    return np.concatenate([level, amplitude, speed, jerk], axis=1)


# --------------------------------------------------------------------------------------- metrics

def _r2_entries(reader: FactorReader, min_r2: float | None) -> dict[str, float]:
    out = {f"reader_r2/{name}": float(reader.r2.get(name, float("nan"))) for name in reader.factor_names}
    out["reader_min_r2"] = float(min_r2) if min_r2 is not None else float("-inf")
    return out


def _columns(reader: FactorReader, names: list[str]) -> list[int]:
    return [reader.factor_names.index(n) for n in names]


def _ratio(fake: float, real: float) -> float:
    return float(fake / real) if real > 0 else float("nan")


def motion_metrics(reader: FactorReader, real: torch.Tensor | Readings, fake: torch.Tensor | Readings, *,
                   min_r2: float | None = MIN_R2) -> dict[str, float]:
    """Motion of generated videos against real ones, per readable motion factor.

    amplitude_{real,fake}/<f>   std over time within a video, mean over videos (factor's units)
    speed_{real,fake}/<f>       mean |change| per frame, mean over videos (factor's units)
    amplitude_ratio/<f>, speed_ratio/<f>   fake / real; amplitude_ratio and speed_ratio: their mean
    ffd                 Frechet distance between real and generated motion descriptors (level,
                        amplitude, speed and jerkiness of every readable motion factor per video,
                        standardised units; see `motion_descriptors`)
    ffd_trajectory      the same on whole trajectories [T x factors] flattened (needs N >> T K)
    Real and generated videos must have the same number of frames.
    """
    real, fake = read_videos(reader, real), read_videos(reader, fake)
    if real.n_frames != fake.n_frames:
        raise MocohdError(f"real videos have {real.n_frames} frames and generated ones {fake.n_frames}",
                          fix="render the real videos with as many frames as the generated ones")
    if real.n_frames < 2:
        raise MocohdError("motion needs videos of at least 2 frames", fix="generate longer videos")
    names = reader.usable(reader.motion_names, min_r2)
    columns = _columns(reader, names)
    std = reader.target_std.double().cpu().numpy()[columns]
    out: dict[str, float] = {}
    ratios = {"amplitude": [], "speed": []}
    for which, readings in (("real", real), ("fake", fake)):
        x = readings.factors[..., columns] * std            # the factors' own units
        amplitude = x.std(1).mean(0)
        speed = np.abs(np.diff(x, axis=1)).mean((0, 1))
        for k, name in enumerate(names):
            out[f"amplitude_{which}/{name}"] = float(amplitude[k])
            out[f"speed_{which}/{name}"] = float(speed[k])
    for name in names:
        for kind in ratios:
            ratio = _ratio(out[f"{kind}_fake/{name}"], out[f"{kind}_real/{name}"])
            out[f"{kind}_ratio/{name}"] = ratio
            ratios[kind].append(ratio)
    for kind, values in ratios.items():
        out[f"{kind}_ratio"] = float(np.nanmean(values)) if values else float("nan")
    if columns:
        real_x, fake_x = real.factors[..., columns], fake.factors[..., columns]
        out["ffd"] = frechet_between(motion_descriptors(real_x), motion_descriptors(fake_x))
        out["ffd_trajectory"] = frechet_between(real_x.reshape(len(real_x), -1), fake_x.reshape(len(fake_x), -1))
    else:
        out["ffd"] = out["ffd_trajectory"] = float("nan")
    out.update(n_real=float(real.n_videos), n_fake=float(fake.n_videos), n_frames=float(fake.n_frames),
               n_motion_factors=float(len(names)))
    out.update(_r2_entries(reader, min_r2))
    return out


def identity_drift(factors: np.ndarray) -> np.ndarray:
    """Per content factor: mean over videos and frames t >= 1 of |c_t - c_0| ([N, T, K] -> [K])."""
    if factors.shape[1] < 2:
        return np.zeros(factors.shape[-1])
    return np.abs(factors[:, 1:] - factors[:, :1]).mean((0, 1))


def content_metrics(reader: FactorReader, real: torch.Tensor | Readings, fake: torch.Tensor | Readings, *,
                    min_r2: float | None = MIN_R2) -> dict[str, float]:
    """Identity drift: how far each frame's read content factors move from frame 0's.

    drift_{real,fake}/<f>     mean over videos and frames t >= 1 of |c_t - c_0|, in standardised
                              units (1 = the spread of that factor between different videos)
    identity_drift_{real,fake}   their mean over readable content factors; the real value is the
                              reader's own error floor (content never changes in a real video)
    identity_drift_ratio      fake / real (1: as steady as the reader can tell)
    """
    real, fake = read_videos(reader, real), read_videos(reader, fake)
    names = reader.usable(reader.content_names, min_r2)
    columns = _columns(reader, names)
    out: dict[str, float] = {}
    for which, readings in (("real", real), ("fake", fake)):
        drift = identity_drift(readings.factors[..., columns])
        for k, name in enumerate(names):
            out[f"drift_{which}/{name}"] = float(drift[k])
        out[f"identity_drift_{which}"] = float(drift.mean()) if len(names) else float("nan")
    out["identity_drift_ratio"] = _ratio(out["identity_drift_fake"], out["identity_drift_real"])
    out.update(n_real=float(real.n_videos), n_fake=float(fake.n_videos), n_content_factors=float(len(names)))
    out.update(_r2_entries(reader, min_r2))
    return out


def frames_metrics(reader: FactorReader, real: torch.Tensor | Readings, fake: torch.Tensor | Readings, *,
                   min_r2: float | None = MIN_R2) -> dict[str, float]:
    """Per-frame quality in the domain's terms.

    fid          Frechet distance between real and generated frames' penultimate reader features
                 (a domain FID: the reader's features, not Inception's)
    ffd_frames   Frechet distance between real and generated frames' readable factors (all motion
                 and content factors, standardised units)
    """
    real, fake = read_videos(reader, real), read_videos(reader, fake)
    names = reader.usable(None, min_r2)
    columns = _columns(reader, names)
    feature_dim = real.features.shape[-1]
    out = {"fid": frechet_between(real.features.reshape(-1, feature_dim), fake.features.reshape(-1, feature_dim))}
    if columns:
        out["ffd_frames"] = frechet_between(real.factors[..., columns].reshape(-1, len(columns)),
                                            fake.factors[..., columns].reshape(-1, len(columns)))
    else:
        out["ffd_frames"] = float("nan")
    out.update(n_real_frames=float(real.n_videos * real.n_frames), n_fake_frames=float(fake.n_videos * fake.n_frames))
    out.update(_r2_entries(reader, min_r2))
    return out


def groundtruth_metrics(reader: FactorReader, real: torch.Tensor | Readings, fake: torch.Tensor | Readings, *,
                        min_r2: float | None = MIN_R2) -> dict[str, float]:
    """All three metric families at once, reading each video set a single time."""
    real, fake = read_videos(reader, real), read_videos(reader, fake)
    out = motion_metrics(reader, real, fake, min_r2=min_r2)
    out.update(content_metrics(reader, real, fake, min_r2=min_r2))
    out.update(frames_metrics(reader, real, fake, min_r2=min_r2))
    return out
