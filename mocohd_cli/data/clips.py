"""Real video clips for training: folders of frames, video files, or a .zip of either.

A dataset is indexed once (which videos exist, how many frames each has); clips are then
decoded in DataLoader workers. Which clip a batch holds depends only on the seed and the
position in the sample stream, never on worker count or process, so a resumed run reads
exactly the clips an uninterrupted run would have read.
"""
from __future__ import annotations

import io
import os
import random
import re
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ..infra.console import progress
from ..infra.errors import MocohdError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".webm", ".gif", ".mov", ".mkv", ".m4v"}
# How many other videos a batch slot tries when its video turns out to be unreadable.
_MAX_SUBSTITUTES = 8


def natural_key(name: str) -> list:
    """Sort key that puts img_2 before img_10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def clip_span(n_frames: int, time_step: int) -> int:
    """Frames of the source video one clip covers."""
    return (n_frames - 1) * time_step + 1


# -- storage: a folder or a zip file -----------------------------------------------------------
class _FolderStorage:
    def __init__(self, root: Path):
        self.root = root

    def files(self) -> list[str]:
        return [p.relative_to(self.root).as_posix() for p in self.root.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(self.root).parts)]

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def video_path(self, name: str) -> tuple[str, bool]:
        """A path ffmpeg can open, and whether it is a temporary copy to delete afterwards."""
        return str(self.root / name), False


class _ZipStorage:
    def __init__(self, root: Path):
        self.root = root
        self._handle: zipfile.ZipFile | None = None
        self._pid = -1
        try:
            with zipfile.ZipFile(root) as archive:
                self._names = [info.filename for info in archive.infolist() if not info.is_dir()]
        except (zipfile.BadZipFile, OSError) as exc:
            raise MocohdError(f"not a readable zip file ({exc})", path=root,
                              fix="re-create the archive, or unpack it and pass the folder to --data") from exc

    def __getstate__(self):  # open handles do not cross into worker processes
        return {"root": self.root, "_names": self._names, "_handle": None, "_pid": -1}

    def _archive(self) -> zipfile.ZipFile:
        if self._handle is None or self._pid != os.getpid():
            self._handle, self._pid = zipfile.ZipFile(self.root), os.getpid()
        return self._handle

    def files(self) -> list[str]:
        return [n for n in self._names
                if not any(part.startswith(".") or part == "__MACOSX" for part in PurePosixPath(n).parts)]

    def read(self, name: str) -> bytes:
        return self._archive().read(name)

    def video_path(self, name: str) -> tuple[str, bool]:
        handle, tmp = tempfile.mkstemp(suffix=PurePosixPath(name).suffix)
        with os.fdopen(handle, "wb") as out:
            out.write(self.read(name))
        return tmp, True


def open_storage(root: Path):
    if not root.exists():
        raise MocohdError("dataset not found", path=root, fix="check the path given to --data")
    if root.is_dir():
        return _FolderStorage(root)
    if root.suffix.lower() == ".zip":
        return _ZipStorage(root)
    raise MocohdError("a dataset must be a folder or a .zip file", path=root,
                      fix="pass a folder of frame folders or video files (or a .zip of one) to --data")


# -- decoding ----------------------------------------------------------------------------------
def decode_image(storage, name: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(storage.read(name))) as image:
            return np.asarray(image.convert("RGB"))
    except Exception as exc:
        raise ValueError(f"{name}: {_reason(exc)}") from exc


def _video_reader(path: str):
    import imageio.v2 as imageio

    if path.lower().endswith(".gif"):
        return imageio.get_reader(path, format="GIF-PIL")
    return imageio.get_reader(path, format="FFMPEG")


def _count_video_frames(storage, name: str) -> int:
    path, temporary = storage.video_path(name)
    try:
        with _video_reader(path) as reader:
            return reader.count_frames() if hasattr(reader, "count_frames") else reader.get_length()
    finally:
        if temporary:
            os.unlink(path)


def as_rgb(frame: np.ndarray) -> np.ndarray:
    """A decoded frame as [H, W, 3]: grey frames (some GIF frames decode as [H, W]) repeated,
    alpha dropped."""
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, axis=-1)
    return frame[..., :3]


def decode_video_frames(storage, name: str, indices: list[int]) -> list[np.ndarray]:
    """The frames at `indices` (sorted) of a video file, read sequentially up to the last one."""
    wanted, frames = set(indices), {}
    path, temporary = storage.video_path(name)
    try:
        with _video_reader(path) as reader:
            for index, frame in enumerate(reader):
                if index in wanted:
                    frames[index] = as_rgb(np.asarray(frame))
                if index >= indices[-1]:
                    break
    finally:
        if temporary:
            os.unlink(path)
    missing = wanted - frames.keys()
    if missing:
        raise ValueError(f"the video ended before frame {min(missing)}")
    return [frames[i] for i in indices]


def frames_to_clip(frames: np.ndarray, size: int) -> Tensor:
    """[T, H, W, 3] uint8 -> [T, 3, size, size] in [-1, 1]: centre crop to a square, then resize."""
    clip = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    h, w = clip.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    clip = clip[:, :, top:top + side, left:left + side]
    if side != size:
        clip = F.interpolate(clip, size=(size, size), mode="bilinear", align_corners=False,
                             antialias=side > size)
    return (clip / 127.5 - 1.0).clamp(-1, 1)


# -- the dataset -------------------------------------------------------------------------------
@dataclass(frozen=True)
class VideoEntry:
    name: str  # relative path shown in messages
    length: int  # frames
    frames: tuple[str, ...] = ()  # frame files of a frame folder
    file: str | None = None  # or one video file


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


def index_videos(storage, span: int, report: DatasetReport) -> list[VideoEntry]:
    frame_dirs: dict[str, list[str]] = {}
    video_files: list[str] = []
    for name in storage.files():
        suffix = PurePosixPath(name).suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            frame_dirs.setdefault(str(PurePosixPath(name).parent), []).append(name)
        elif suffix in VIDEO_SUFFIXES:
            video_files.append(name)
    candidates = [VideoEntry(d, len(f), frames=tuple(sorted(f, key=natural_key))) for d, f in frame_dirs.items()]
    with progress() as bar:  # counting frames decodes each file: minutes for a large dataset
        for name in bar.track(video_files, description="indexing videos"):
            try:
                candidates.append(VideoEntry(name, _count_video_frames(storage, name), file=name))
            except Exception as exc:
                report.corrupt.append((name, _reason(exc)))
    entries = []
    for entry in sorted(candidates, key=lambda e: natural_key(e.name)):
        if entry.length < span:
            report.too_short.append(entry.name)
            continue
        if entry.frames:  # a cheap check of the first frame catches most broken folders
            try:
                decode_image(storage, entry.frames[0])
            except Exception as exc:
                report.corrupt.append((entry.name, _reason(exc)))
                continue
        entries.append(entry)
    return entries


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class VideoClips(Dataset):
    """Clips [n_frames, 3, size, size] in [-1, 1].

    Items are addressed by (video index, stream position): the clip's random start is drawn
    from a generator seeded by (seed, position), so a clip never depends on the process that
    decodes it.
    """

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
        rng = random.Random(f"{self.seed}/{position}")
        return rng.randrange(self.entries[index].length - self.span + 1)

    def load(self, index: int, position: int) -> Tensor:
        entry = self.entries[index]
        start = self.clip_start(index, position)
        indices = list(range(start, start + self.span, self.time_step))
        if entry.file is not None:
            frames = decode_video_frames(self.storage, entry.file, indices)
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
                print(f"warning: skipping unreadable video {self.root / self.entries[current].name}: "
                      f"{_reason(exc)}", file=sys.stderr)
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
        rng = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
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
    sampler = ClipBatchSampler(len(dataset), batch_size, seed=seed, rank=rank, world_size=world_size,
                               start_batch=start_batch)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=pin_memory,
                        persistent_workers=workers > 0, prefetch_factor=2 if workers > 0 else None)
    return iter(loader)
