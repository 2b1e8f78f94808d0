"""Real video clips for training: folders of frames, video files, or a .zip of either.

A dataset is indexed once (which videos exist, how many frames each has; cached, see index.py);
clips are then decoded in DataLoader workers (video files in-process with PyAV, seeking to the
keyframe before a clip: decode.py). Which clip a batch holds depends only on the seed and the
position in the sample stream, never on worker count or process, so a resumed run reads
exactly the clips an uninterrupted run would have read.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import logging
from pathlib import Path
import random
from typing import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ..infra.errors import MocohdError
from ..infra.settings import torch_seed
from .decode import VideoInfo, as_rgb, decode_image, read_frames
from .decode import reason as _reason
from .index import scan
from .pixels import frames_to_clip
from .shards import ShardClips, is_shard_spec
from .storage import IMAGE_SUFFIXES, VIDEO_SUFFIXES, natural_key, open_storage

log = logging.getLogger(__name__)

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "ClipBatchSampler", "DatasetReport", "VideoClips", "VideoEntry",
           "as_rgb", "clip_loader", "clip_span", "decode_image", "decode_video_frames", "frames_to_clip",
           "index_videos", "natural_key", "open_storage"]

# How many other videos a batch slot tries when its video turns out to be unreadable.
_MAX_SUBSTITUTES = 8


def clip_span(n_frames: int, time_step: int) -> int:
    """Frames of the source video one clip covers."""
    return (n_frames - 1) * time_step + 1


# -- decoding ----------------------------------------------------------------------------------
def decode_video_frames(storage, name: str, indices: list[int], *, info: VideoInfo | None = None) -> list[np.ndarray]:
    """The frames at `indices` (sorted) of a video file as uint8 [H, W, 3].

    With the file's `info` from the index, a clip that starts late is read by seeking to the
    keyframe before it; without, the file is decoded from its start. ValueError if it cannot be read."""
    try:
        source = storage.open(name)
    except Exception as exc:
        raise ValueError(_reason(exc)) from exc
    try:
        return read_frames(source, list(indices), name=name, info=info)
    finally:
        if hasattr(source, "close"):
            source.close()


# -- the dataset -------------------------------------------------------------------------------
@dataclass(frozen=True)
class VideoEntry:
    name: str  # relative path shown in messages
    length: int  # frames
    frames: tuple[str, ...] = ()  # frame files of a frame folder
    file: str | None = None  # or one video file
    info: VideoInfo | None = None  # what the index knows about the video file (for seeking)


@dataclass
class DatasetReport:
    root: Path
    videos: int = 0
    too_short: list[str] = field(default_factory=list)
    corrupt: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.videos} videos in {self.root}"
        if self.too_short:
            text += f"; {len(self.too_short)} too short skipped"
        if self.corrupt:
            text += f"; {len(self.corrupt)} unreadable skipped ({', '.join(n for n, _ in self.corrupt[:3])}" + (
                ", ...)" if len(self.corrupt) > 3 else ")")
        return text


def index_videos(storage, span: int, report: DatasetReport, *, cache: bool = True) -> list[VideoEntry]:
    """The videos of at least `span` frames, in natural name order; the others go to `report`
    (too short, or unreadable with the reason). The index is cached (index.py)."""
    entries = []
    for record in scan(storage, cache=cache).records:
        if record.error:
            report.corrupt.append((record.name, record.error))
        elif record.frames < span:
            report.too_short.append(record.name)
        elif record.kind == "frames":
            entries.append(VideoEntry(record.name, record.frames, frames=record.files))
        else:
            entries.append(VideoEntry(record.name, record.frames, file=record.name, info=record.info))
    return entries


def clip_start(seed: int, position: int, length: int, span: int) -> int:
    """First frame of the clip at stream `position` of a video of `length` frames (a clip covers `span`)."""
    return random.Random(f"{seed}/{position}").randrange(length - span + 1)


class VideoClips(Dataset):
    """Clips [n_frames, 3, size, size] in [-1, 1].

    Items are addressed by (video index, stream position): the clip's random start is drawn
    from a generator seeded by (seed, position), so a clip never depends on the process that
    decodes it.
    """

    def __new__(cls, root: str | Path | None = None, **settings):
        """Tar shards (data/shards.py) stream instead: a ShardClips, which clip_loader also takes."""
        if cls is VideoClips and is_shard_spec(root):
            return ShardClips(root, **settings)
        return super().__new__(cls)

    def __init__(self, root: str | Path, *, n_frames: int, time_step: int, size: int, seed: int = 0):
        if n_frames < 2 or time_step < 1 or size < 1:
            raise MocohdError(f"bad clip settings: frames={n_frames}, time_step={time_step}, size={size}",
                              fix="use --frames >= 2, --time-step >= 1, --video-frame-size >= 1")
        self.root = Path(root)
        self.n_frames, self.time_step, self.size, self.seed = n_frames, time_step, size, seed
        self.span = clip_span(n_frames, time_step)
        self.storage = open_storage(self.root)
        self.report = DatasetReport(self.root)
        self.entries = index_videos(self.storage, self.span, self.report)
        self.report.videos = len(self.entries)
        if not self.entries:
            raise self._empty_error()

    def _empty_error(self) -> MocohdError:
        report = self.report
        if report.too_short or report.corrupt:
            found = len(report.too_short) + len(report.corrupt)
            parts = []
            if report.too_short:
                parts.append(f"{len(report.too_short)} shorter than the {self.span} frames a clip needs "
                             f"(--frames {self.n_frames} every --time-step {self.time_step}), e.g. "
                             f"{report.too_short[0]}")
            if report.corrupt:
                name, reason = report.corrupt[0]
                parts.append(f"{len(report.corrupt)} unreadable, e.g. {name} ({reason})")
            return MocohdError(f"none of the {found} videos found can be used: " + "; ".join(parts), path=self.root,
                               fix="use longer videos, or lower --frames / --time-step; replace broken files")
        return MocohdError("no videos found", path=self.root,
                           fix="--data takes a folder (or .zip) of frame folders (video/img_0000.png ...) or of "
                               f"video files ({', '.join(sorted(s.lstrip('.') for s in VIDEO_SUFFIXES))})")

    def __len__(self) -> int:
        return len(self.entries)

    def clip_start(self, index: int, position: int) -> int:
        return clip_start(self.seed, position, self.entries[index].length, self.span)

    def load(self, index: int, position: int) -> Tensor:
        entry = self.entries[index]
        start = self.clip_start(index, position)
        indices = list(range(start, start + self.span, self.time_step))
        if entry.file is not None:
            frames = decode_video_frames(self.storage, entry.file, indices, info=entry.info)
        else:
            frames = [decode_image(self.storage, entry.frames[i]) for i in indices]
        try:
            stacked = np.stack(frames)
        except ValueError as exc:
            raise ValueError("its frames do not all have the same size") from exc
        return frames_to_clip(stacked, self.size)

    def __getitem__(self, key: tuple[int, int]) -> Tensor:
        index, position = key
        # A file that breaks only now (the index checks first frames only) is named and replaced
        # by the next video, so one bad file does not stop a long run.
        for attempt in range(min(_MAX_SUBSTITUTES, len(self.entries))):
            current = (index + attempt) % len(self.entries)
            try:
                return self.load(current, position)
            except Exception as exc:
                log.warning("skipping unreadable video %s: %s", self.root / self.entries[current].name,
                            _reason(exc))
        raise MocohdError("several videos in a row could not be read", path=self.root,
                          fix="check the dataset files (see the warnings above)")


class ClipBatchSampler(Sampler):
    """An endless, resumable stream of batches of (video index, stream position).

    The stream walks seeded permutations of the videos, epoch after epoch. Global batch b
    holds positions [b * B * W, (b + 1) * B * W); rank r takes its own B of them.
    """

    def __init__(self, n_videos: int, batch_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1,
                 start_batch: int = 0):
        self.n_videos, self.batch_size, self.seed = n_videos, batch_size, seed
        self.rank, self.world_size, self.start_batch = rank, world_size, start_batch

    def permutation(self, epoch: int) -> Tensor:
        rng = torch.Generator().manual_seed(torch_seed(self.seed * 1_000_003 + epoch))
        return torch.randperm(self.n_videos, generator=rng)

    def batch(self, b: int, cache: dict | None = None) -> list[tuple[int, int]]:
        cache = {} if cache is None else cache
        first = (b * self.world_size + self.rank) * self.batch_size
        keys = []
        for position in range(first, first + self.batch_size):
            epoch, offset = divmod(position, self.n_videos)
            if epoch not in cache:
                cache.clear()
                cache[epoch] = self.permutation(epoch)
            keys.append((int(cache[epoch][offset]), position))
        return keys

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        cache: dict = {}
        b = self.start_batch
        while True:
            yield self.batch(b, cache)
            b += 1


def clip_loader(dataset: VideoClips, batch_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1,
                start_batch: int = 0, workers: int = 0, pin_memory: bool = False) -> Iterator[Tensor]:
    """Endless iterator of real clip batches [B, T, 3, S, S], starting at batch `start_batch`."""
    if hasattr(dataset, "stream"):  # tar shards: a stream of its own (data/shards.py)
        return dataset.stream(batch_size, rank=rank, world_size=world_size, start_batch=start_batch, workers=workers,
                              pin_memory=pin_memory)
    sampler = ClipBatchSampler(len(dataset), batch_size, seed=seed, rank=rank, world_size=world_size,
                               start_batch=start_batch)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=pin_memory,
                        persistent_workers=workers > 0, prefetch_factor=2 if workers > 0 else None)
    return iter(loader)
