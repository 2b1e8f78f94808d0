"""The training videos projected into the backbone for the latent motion discriminator
(`--w-latent-motion`, mocohd_cli/models/latent_prior.py): made on first use, cached per backbone and dataset."""
from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path

import torch
from torch import Tensor

from ..data.clips import VideoClips
from ..data.leading import LeadingVideos
from ..data.shards import is_shard_spec
from ..infra.files import cache_dir
from ..models import inversion
from ..models.inversion import project_videos
from ..models.latent_prior import read_projections, write_projections

# Projected per video: up to PROJECTED_FRAMES frames at the run's time step (every clip of --frames
# consecutive ones among them is a real example), for the first PROJECTED_VIDEOS videos of the dataset
# (--projected-videos).
PROJECTED_FRAMES = 16
PROJECTED_VIDEOS = 64


def projection_settings(projection: dict) -> dict:
    """Every setting of `project_videos` that changes its result, its defaults filled in where `projection`
    does not give one: the cache key, so that a cache made under other defaults is not read back."""
    parameters = inspect.signature(inversion.project_videos).parameters
    settings = {name: p.default for name, p in parameters.items()
                if p.default is not inspect.Parameter.empty and name not in ("stats", "progress")}
    return settings | projection


def projections_cache_path(backbone_sha256: str, truncation: float, data: str, videos: list[tuple[str, int]],
                           n_frames: int, time_step: int, size: int, seed: int, projection: dict,
                           count: int = PROJECTED_VIDEOS) -> Path:
    """Where the projections of a dataset into a backbone are cached: keyed by both (the backbone's file and
    truncation; the dataset's folder, video names and lengths) and every setting that changes the result."""
    key = json.dumps([backbone_sha256, truncation, str(Path(data).resolve()), videos, n_frames, time_step, size,
                      seed, count, sorted(projection_settings(projection).items())])
    return cache_dir() / "projections" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.safetensors"


def project_training_videos(backbone, data: str, *, frames: int, time_step: int, size: int, seed: int = 0,
                            count: int = PROJECTED_VIDEOS, progress=None, **projection) -> Tensor:
    """Up to PROJECTED_FRAMES frames (every `time_step`-th; as many as the longest videos hold, at least a
    clip's `frames`) of the first `count` videos of `data` long enough for them, projected into
    `backbone` (latents [N, F, D]; `projection` goes to `project_videos`). Cached per backbone sha256 and
    dataset, so that a second run on the same pair starts at once."""
    if is_shard_spec(data):  # streamed: the longest of the first `count` videos, not of every video
        longest = max(length for _, length in LeadingVideos(data, count, frames, time_step, size).listed)
    else:
        longest = max(entry.length for entry in VideoClips(data, n_frames=frames, time_step=time_step,
                                                           size=size).entries)
    n_frames = max(frames, min(PROJECTED_FRAMES, (longest - 1) // time_step + 1))
    leading = LeadingVideos(data, count, n_frames, time_step, size, seed)
    videos = leading.listed
    sha = backbone.checkpoint_sha256
    cached = (projections_cache_path(sha, float(backbone.truncation), data, videos, n_frames, time_step, size, seed,
                                     projection, count) if sha else None)
    if cached is not None and cached.exists():
        return read_projections(cached, backbone_sha256=sha, time_step=time_step, frames=frames)
    frames_in = leading.load()
    result = project_videos(backbone, frames_in.to(backbone.device), progress=progress, **projection)
    if cached is not None:
        write_projections(cached, result.latents, backbone_sha256=sha, time_step=time_step, size=size,
                          data=str(data), psnr=float(result.psnr.median()))
    return result.latents.float()
