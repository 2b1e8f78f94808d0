"""Single frames of a dataset, for training image generators: every frame of every video (frame
folders, loose images, video files, or a .zip of them) held in memory, and random batches of them.

Reads the datasets mocohd_cli/data/clips.py reads, with the same storage, indexing and decoding.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..infra.console import progress
from ..infra.errors import MocohdError
from .clips import DatasetReport, decode_image, decode_video_frames, frames_to_clip, index_videos, open_storage

log = logging.getLogger(__name__)


def load_frames(root: str | Path, size: int, *, max_images: int = 100_000) -> Tensor:
    """Every frame of a dataset as uint8 [N, 3, size, size], centre-cropped and resized.

    Above `max_images` frames an evenly spaced subset is kept (deterministic). Unreadable video
    files are skipped and reported; a frame that fails to decode stops the load with its name."""
    root = Path(root)
    storage = open_storage(root)
    report = DatasetReport(root)
    entries = index_videos(storage, 1, report)
    if report.corrupt:
        log.warning("%s", report.summary())
    if not entries:
        raise MocohdError("no images or videos found", path=root,
                          fix="pass a folder (or .zip) of images, frame folders or video files to --data")
    items = [(e, i) for e, entry in enumerate(entries) for i in range(entry.length)]
    if len(items) > max_images:
        keep = np.linspace(0, len(items) - 1, max_images).round().astype(int)
        items = [items[i] for i in keep]
    wanted_by_entry: dict[int, list[int]] = {}
    for e, i in items:
        wanted_by_entry.setdefault(e, []).append(i)
    frames = torch.empty(len(items), 3, size, size, dtype=torch.uint8)
    position = 0
    with progress() as bar:
        task = bar.add_task("reading frames", total=len(items))
        for e, wanted in wanted_by_entry.items():
            entry = entries[e]
            try:
                if entry.file is not None:
                    decoded = decode_video_frames(storage, entry.file, wanted)
                else:
                    decoded = [decode_image(storage, entry.frames[i]) for i in wanted]
                if len({d.shape for d in decoded}) == 1:
                    clip = frames_to_clip(np.stack(decoded), size)
                else:  # loose images of different sizes in one folder
                    clip = torch.cat([frames_to_clip(d[None], size) for d in decoded])
            except ValueError as exc:
                raise MocohdError(f"cannot read {entry.name} ({exc})", path=root,
                                  fix="replace or remove the broken file") from exc
            frames[position:position + len(wanted)] = ((clip + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
            position += len(wanted)
            bar.advance(task, len(wanted))
    return frames[:position]


def frame_batch(frames: Tensor, batch_size: int, rng: torch.Generator, device: torch.device, *,
                mirror: bool = False) -> Tensor:
    """A random batch of `frames` (uint8 [N, 3, H, W]) in [-1, 1] on `device`, drawn with `rng`
    (a CPU generator); with `mirror`, each image is flipped left-right half of the time."""
    index = torch.randint(len(frames), (batch_size,), generator=rng)
    images = frames[index].to(device, non_blocking=True).float() / 127.5 - 1.0
    if mirror:
        flip = (torch.rand(batch_size, generator=rng) < 0.5).to(device)
        images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
    return images
