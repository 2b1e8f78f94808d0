"""The first videos of a dataset that hold a clip, for what needs its videos listed up front: the latent
phase's projections (training/projections.py) and the identity encoder (training/identity.py).

A folder or zip is indexed (data/clips.py), so its first videos are its first entries. Tar shards are
streamed (data/shards.py): their first videos are those of the shards in the order the spec lists them,
read only as far as it takes, one video's bytes at a time, so a 100,000-video dataset costs no more
than a 64-video one.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..infra.errors import MocohdError
from .clips import VideoClips, clip_start
from .decode import reason
from .pixels import frames_to_clip
from .shards import ShardReport, expand_shards, is_shard_spec, leading_videos


@dataclass
class LeadingVideos:
    """The first `count` videos of `data` long enough for a clip of `n_frames` every `time_step`-th frame."""

    data: str
    count: int
    n_frames: int
    time_step: int
    size: int
    seed: int = 0

    def __post_init__(self):
        self.data = str(self.data)
        self.span = (self.n_frames - 1) * self.time_step + 1
        self.shards = is_shard_spec(self.data)
        if self.shards:
            self.urls = expand_shards(self.data)
            self.listed = [(video.key, length) for video, length in self._shard_videos()]
            if not self.listed:
                raise MocohdError(f"no video of the shards holds {self.n_frames} frames every {self.time_step}-th",
                                  path=self.data, fix="use longer videos, fewer --frames or a smaller --time-step")
        else:
            self.clips = VideoClips(self.data, n_frames=self.n_frames, time_step=self.time_step, size=self.size,
                                    seed=self.seed)
            self.listed = [(entry.name, entry.length) for entry in self.clips.entries[:self.count]]

    def __len__(self) -> int:
        return len(self.listed)

    def _shard_videos(self):
        # a corrupt member is skipped (and logged), as in training
        return leading_videos(self.urls, span=self.span, count=self.count, report=ShardReport(spec=self.data))

    def load(self, positions: int = 1) -> Tensor:
        """Clips [N, positions * n_frames, 3, size, size] in [-1, 1]: `positions` clips of each video, one
        after the other, at starts drawn from (seed, position) as VideoClips.load draws them: the same
        videos as a folder and as shards give the same clips."""
        if not self.shards:
            return torch.stack([torch.cat([self.clips.load(i, position) for position in range(positions)])
                                for i in range(len(self.listed))])
        videos = []
        for video, length in self._shard_videos():
            clips = []
            for position in range(positions):
                start = clip_start(self.seed, position, length, self.span)
                try:
                    frames = video.read(list(range(start, start + self.span, self.time_step)))
                except ValueError as exc:
                    raise MocohdError(f"cannot decode {video.name}: {reason(exc)}", path=video.url,
                                      fix="rewrite the shard from its source (`mocohd data shard`)") from exc
                clips.append(frames_to_clip(frames, self.size))
            videos.append(torch.cat(clips))
        if len(videos) != len(self.listed):
            raise MocohdError("the shards changed while they were read", path=self.data, fix="run again")
        return torch.stack(videos)
