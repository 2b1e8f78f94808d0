"""Where evaluated videos come from, as batches of uint8 tensors.

Real: anything `mocohd train --data` reads. One clip of T consecutive frames per video, at a
seeded random offset (videos too short for T frames are skipped and counted), videos in the
dataset's sorted order, at most `max_videos` of them; or every frame of every video (FID).
Fake: a folder written by `mocohd sample` (one file or frame folder per video: the first T frames
of each), or videos generated on the fly from a backbone and a motion model.
Frames are centre-cropped and resized to the evaluation resolution as training reads them.
Under torchrun each rank reads only its `share` of the batches (batch k is rank k % world_size's,
infra/distributed.py): the batches are the same whatever the number of ranks.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
import random
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from ..data.clips import DatasetReport, VideoClips, decode_image, decode_video_frames, frames_to_clip
from ..data.shards import ShardReport, expand_shards, is_shard_spec, leading_videos
from ..data.video import quantize
from ..infra.distributed import Share, is_mine
from ..infra.errors import MocohdError
from ..models.generation import generate_videos, pool_frames


class VideoSource:
    """A collection of videos to evaluate: `clips(T)` yields uint8 batches [B, T, 3, S, S]."""

    # generated videos give their first 16 frames to frame metrics (StyleGAN-V's FID)
    frames_per_video = 16

    def __init__(self, description: str):
        self.description = description

    def clips(self, n_frames: int, batch_size: int, share: Share | None = None) -> Iterator[Tensor]:
        raise NotImplementedError

    def frames(self, batch_size: int, share: Share | None = None) -> Iterator[Tensor]:
        """uint8 frames [B, 3, S, S]: by default frames 0..15 of every video."""
        for batch in self.clips(self.frames_per_video, max(1, batch_size // self.frames_per_video), share):
            yield batch.flatten(0, 1)


class DatasetVideos(VideoSource):
    """Real videos: a dataset folder, video files, or a zip."""

    def __init__(self, root: str | Path, *, size: int | None, max_videos: int, seed: int = 0,
                 max_frames: int = 1_000_000):
        super().__init__(description=f"dataset {root}")
        self.root, self.size, self.max_videos, self.seed, self.max_frames = Path(root), size, max_videos, seed, max_frames
        self.report: DatasetReport | None = None
        self.used = 0

    def native_resolution(self) -> int:
        """The side of the first video's frames after centre-cropping (the videos' own size)."""
        dataset = VideoClips(self.root, n_frames=2, time_step=1, size=1, seed=self.seed)
        entry = dataset.entries[0]
        first = (decode_video_frames(dataset.storage, entry.file, [0])[0] if entry.file is not None
                 else decode_image(dataset.storage, entry.frames[0]))
        return min(first.shape[:2])

    def _dataset(self, n_frames: int) -> VideoClips:
        if self.size is None:
            self.size = self.native_resolution()
        dataset = VideoClips(self.root, n_frames=n_frames, time_step=1, size=self.size, seed=self.seed)
        self.report, self.used = dataset.report, min(len(dataset), self.max_videos)
        return dataset

    def clips(self, n_frames: int, batch_size: int, share: Share | None = None) -> Iterator[Tensor]:
        dataset = self._dataset(n_frames)
        # video i's clip starts at an offset drawn from (seed, i): the same clips every run
        for k, start in enumerate(range(0, self.used, batch_size)):
            if not is_mine(k, share):
                continue
            batch = [dataset.load(i, position=i) for i in range(start, min(start + batch_size, self.used))]
            yield quantize(torch.stack(batch))

    def frames(self, batch_size: int, share: Share | None = None) -> Iterator[Tensor]:
        """Every frame of every video (up to max_frames in all), in order, `batch_size` at a time
        (the last batch may be shorter); with a `share`, only its batches (and only the videos
        they hold are decoded)."""
        dataset = self._dataset(2)
        entries = dataset.entries[: self.used]
        ends = np.cumsum([entry.length for entry in entries])
        total = min(int(ends[-1]) if len(ends) else 0, self.max_frames)
        held: tuple[int, Tensor] | None = None  # the last decoded video: consecutive batches share it
        for k, lo in enumerate(range(0, total, batch_size)):
            if not is_mine(k, share):
                continue
            hi, parts = min(lo + batch_size, total), []
            v = int(np.searchsorted(ends, lo, side="right"))
            while v < len(entries) and (int(ends[v - 1]) if v else 0) < hi:
                first = int(ends[v - 1]) if v else 0
                if held is None or held[0] != v:
                    held = (v, self._all_frames(dataset, entries[v]))
                parts.append(held[1][max(lo - first, 0):hi - first])
                v += 1
            yield torch.cat(parts)

    def _all_frames(self, dataset: VideoClips, entry) -> Tensor:
        if entry.file is not None:
            frames = decode_video_frames(dataset.storage, entry.file, list(range(entry.length)))
        else:
            frames = [decode_image(dataset.storage, name) for name in entry.frames]
        return quantize(frames_to_clip(np.stack(frames), self.size))


class ShardVideos(VideoSource):
    """Real videos from tar shards (data/shards.py): streamed in shard order, the videos long enough
    counted as the folder reader counts them (video i's clip starts at the offset drawn from (seed, i)),
    so the same videos give the same clips as a folder or as shards. Every rank streams the shards
    but decodes only the videos of its batches."""

    def __init__(self, spec, *, size: int | None, max_videos: int, seed: int = 0, max_frames: int = 1_000_000):
        super().__init__(description=f"shards {spec}")
        self.spec, self.size, self.max_videos, self.seed, self.max_frames = str(spec), size, max_videos, seed, max_frames
        self.urls = expand_shards(spec)
        self.report = ShardReport()
        self.used = 0

    def _videos(self, span: int) -> Iterator[tuple[int, object, int]]:
        """(i, video, length) of the first max_videos usable videos of at least `span` frames."""
        for i, (video, length) in enumerate(leading_videos(self.urls, span=span, count=self.max_videos,
                                                           report=self.report)):
            yield i, video, length

    def _size(self) -> int:
        if self.size is None:
            for _, video, _ in self._videos(1):
                self.size = min(video.read([0]).shape[1:3])
                break
            else:
                raise MocohdError("no usable video in the shards", path=self.spec)
        return self.size

    def native_resolution(self) -> int:
        return self._size()

    @property
    def root(self) -> str:
        return self.spec

    def fingerprint(self) -> str:
        """sha256 of the shard URLs and, for local shards, their sizes and modification times."""
        digest = hashlib.sha256()
        for url in self.urls:
            path = Path(url.removeprefix("file:"))
            stat = path.stat() if path.is_file() else None
            digest.update(f"{url}:{stat.st_size if stat else ''}:{stat.st_mtime_ns if stat else ''}\n".encode())
        return digest.hexdigest()

    def _check(self) -> None:
        if not self.used:
            raise MocohdError(f"no usable video in the shards ({len(self.report.too_short)} too short, "
                              f"{len(self.report.corrupt)} unreadable)", path=self.spec,
                              fix="use longer videos or fewer frames")

    def clips(self, n_frames: int, batch_size: int, share: Share | None = None) -> Iterator[Tensor]:
        size, batch, k = self._size(), [], 0
        self.used = 0
        for i, video, length in self._videos(n_frames):
            self.used = i + 1
            if is_mine(i // batch_size, share):
                start = random.Random(f"{self.seed}/{i}").randrange(length - n_frames + 1)
                try:
                    batch.append(frames_to_clip(video.read(list(range(start, start + n_frames))), size))
                except ValueError as exc:
                    raise MocohdError(f"cannot decode {video.name}: {exc}", path=video.url) from exc
            if (i + 1) % batch_size == 0:
                if batch:
                    yield quantize(torch.stack(batch))
                batch, k = [], k + 1
        if batch:
            yield quantize(torch.stack(batch))
        self._check()

    def frames(self, batch_size: int, share: Share | None = None) -> Iterator[Tensor]:
        size, lo, parts, k = self._size(), 0, [], 0
        self.used = 0
        for i, video, length in self._videos(1):
            self.used = i + 1
            hi = min(lo + length, self.max_frames)
            if hi <= lo:
                break
            first_batch, last_batch = lo // batch_size, (hi - 1) // batch_size
            if any(is_mine(b, share) for b in range(first_batch, last_batch + 1)):
                clip = quantize(frames_to_clip(video.read(list(range(hi - lo))), size))
            else:
                clip = None
            for b in range(first_batch, last_batch + 1):
                a, z = max(lo, b * batch_size), min(hi, (b + 1) * batch_size)
                if is_mine(b, share):
                    parts.append(clip[a - lo:z - lo])
                if z == (b + 1) * batch_size:
                    if parts:
                        yield torch.cat(parts)
                    parts = []
            lo = hi
        if parts:
            yield torch.cat(parts)
        self._check()


def real_videos(data, **kwargs) -> VideoSource:
    """The real-video source of `data`: tar shards, or a folder, zip or video folder."""
    return ShardVideos(data, **kwargs) if is_shard_spec(data) else DatasetVideos(data, **kwargs)


class FolderVideos(DatasetVideos):
    """Generated videos written by `mocohd sample` (mp4, gif or PNG frame folders): the first T
    frames of each video, videos in sorted order."""

    def __init__(self, root: str | Path, *, size: int | None, max_videos: int):
        super().__init__(root, size=size, max_videos=max_videos)
        self.description = f"videos in {root}"

    def clips(self, n_frames: int, batch_size: int, share: Share | None = None) -> Iterator[Tensor]:
        dataset = self._dataset(n_frames)
        for k, start in enumerate(range(0, self.used, batch_size)):
            if not is_mine(k, share):
                continue
            batch = []
            for i in range(start, min(start + batch_size, self.used)):
                entry = dataset.entries[i]
                if entry.file is not None:
                    frames = decode_video_frames(dataset.storage, entry.file, list(range(n_frames)))
                else:
                    frames = [decode_image(dataset.storage, name) for name in entry.frames[:n_frames]]
                batch.append(frames_to_clip(np.stack(frames), self.size))
            yield quantize(torch.stack(batch))


SEED_CHUNK = 16


class GeneratedVideos(VideoSource):
    """Videos generated on the fly from a backbone and a motion model (seeded)."""

    def __init__(self, backbone, motion, *, num_videos: int, seed: int = 0, size: int | None = None,
                 batch_size: int = 8, classes: list[int] | None = None):
        super().__init__(description=f"{num_videos} videos generated with seed {seed}")
        self.backbone, self.motion, self.num_videos, self.seed = backbone, motion, num_videos, seed
        self.size, self.generate_batch, self.classes = size, batch_size, classes
        self.used = num_videos

    def clips(self, n_frames: int, batch_size: int, share: Share | None = None) -> Iterator[Tensor]:
        # Videos come in chunks of a fixed size, each seeded from (seed, chunk), so the videos do
        # not depend on any batch size (or number of ranks) and never all sit in memory at once.
        for chunk, start in enumerate(range(0, self.num_videos, SEED_CHUNK)):
            if not is_mine(chunk, share):
                continue
            n = min(SEED_CHUNK, self.num_videos - start)
            videos = generate_videos(self.backbone, self.motion, num_videos=n, n_frames=n_frames,
                                     seed=self.seed * 1_000_003 + chunk, classes=self.classes,
                                     batch_size=self.generate_batch)
            # pooled to the evaluation size as training pools generated frames
            yield quantize(videos if self.size is None else pool_frames(videos, self.size))


def check_length(source: VideoSource, n_frames: int) -> None:
    if isinstance(source, DatasetVideos) and source.used == 0:
        raise MocohdError(f"no video in {source.root} has {n_frames} frames", path=source.root,
                          fix="use a dataset of longer videos or a metric on shorter clips")
