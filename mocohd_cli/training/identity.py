"""The identity encoder of a dataset for the identity loss (`--w-identity`, mocohd_cli/models/identity.py):
trained on first use from the training videos, cached per dataset."""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch

from ..data.leading import LeadingVideos
from ..infra.errors import MocohdError
from ..infra.files import cache_dir
from ..models.identity import DEFAULT_STEPS, INPUT_SIZE, IdentityEncoder, read_identity_encoder, \
    train_identity_encoder, write_identity_encoder

log = logging.getLogger(__name__)

# The encoder learns from two clips (the run's --frames every --time-step, at random starts) of each of the
# first IDENTITY_VIDEOS videos: pairs a clip apart teach it the motion a longer video holds.
IDENTITY_VIDEOS = 512
CLIPS_PER_VIDEO = 2


def identity_cache_path(data: str, videos: list[tuple[str, int]], frames: int, time_step: int, seed: int,
                        steps: int) -> Path:
    key = json.dumps([str(Path(data).resolve()), videos, frames, time_step, seed, steps, IDENTITY_VIDEOS,
                      CLIPS_PER_VIDEO, INPUT_SIZE])
    return cache_dir() / "identity" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.safetensors"


def identity_encoder_for(data: str, *, frames: int, time_step: int, seed: int = 0, steps: int = DEFAULT_STEPS,
                         progress=None) -> tuple[IdentityEncoder, float]:
    """The identity encoder of `data` and its videos' within-video distance: from the cache, else trained
    (a minute or so on a CPU) and cached."""
    leading = LeadingVideos(data, IDENTITY_VIDEOS, frames, time_step, INPUT_SIZE, seed)
    if len(leading) < 4:
        raise MocohdError(f"the identity loss learns what stays the same within a video from several videos; the "
                          f"dataset has {len(leading)} long enough for a clip", path=data,
                          fix="use --w-identity 0 for so few videos, or add videos")
    cached = identity_cache_path(data, leading.listed, frames, time_step, seed, steps)
    if cached.exists():
        return read_identity_encoder(cached)
    log.info("training the identity encoder on %d training videos (cached for later runs)", len(leading))
    videos = leading.load(CLIPS_PER_VIDEO)
    videos = ((videos + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    encoder, distance = train_identity_encoder(videos, steps=steps, seed=seed, progress=progress)
    write_identity_encoder(cached, encoder, real_distance=distance, data=str(data), videos=len(leading), steps=steps)
    return encoder, distance
